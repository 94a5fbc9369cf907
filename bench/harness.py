"""What the pipeline benchmark's phases share: its processes, its database and its observations.

Everything started here is registered on an :class:`~contextlib.ExitStack`, so a run stops
its workers, simulator and Redis and drops its schema however it ends, and every wait is
bounded (:func:`wait_until`).
"""

from __future__ import annotations

import json
import math
import os
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a script: make sms_ext and tests importable

import requests  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from flask import Flask  # noqa: E402
from redis import Redis  # noqa: E402
from rq import Queue, Worker  # noqa: E402

from sms_ext import SMS, metadata  # noqa: E402
from sms_ext.models import Kind, Message, Status  # noqa: E402
from sms_ext.state import urgent_queue_name  # noqa: E402
from tests.conftest import make_app  # noqa: E402
from tests.helpers import custom_gateway, stop_worker, worker_process  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

GATEWAY = "bench"
WORKER_KEY = "tK3v9-Qm2xL7pR4wZ8nB6cY1dF5hJ0sA"
"""The SECRET_KEY ``tests.helpers.worker_process`` gives the worker: gateway secrets are sealed
with it, so the app that saves the gateway must use the same one (checked at start)."""
SETTLED = (Status.SENT, Status.DELIVERED, Status.UNDELIVERED, Status.FAILED)
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
SETTLE_TIMEOUT = 60.0

sms = SMS()
"""The extension object the benchmark's app is built with, as an integrator holds it."""


@dataclass(frozen=True)
class Setup:
    """Where a run's processes meet: its database, Redis, queue name and simulator."""

    database_url: str
    redis_url: str
    queue: str
    sim_url: str
    sim_pid: int


def start_services(
    stack: ExitStack, database: str | None, redis: str | None, *, gateway: str, timeout: float
) -> tuple[Flask, Setup, str, str]:
    """Everything a run needs before its workers: Redis, an empty database, the simulator in
    its own process, the app on a private queue and one custom gateway named ``gateway``.
    Returns the app, the setup and how the database and Redis were chosen (for the header)."""
    queue = f"bench_{uuid.uuid4().hex[:12]}"  # not JSON, so FLASK_SMS_QUEUE stays a string
    redis_url, redis_kind = start_redis(stack, redis)
    if redis:
        stack.callback(best_effort, forget_queue, redis_url, queue)
    database_url, database_kind = prepare_database(stack, database)
    sim_url, sim_pid = start_simulator(stack)
    app = make_app(database_url, redis_url, sms=sms, SMS_QUEUE=queue)
    stack.callback(dispose_engines, app)
    with app.app_context():
        custom_gateway(app, SimpleNamespace(url=sim_url), gateway, timeout=timeout)
    setup = Setup(database_url, redis_url, queue, sim_url, sim_pid)
    return app, setup, database_kind, redis_kind


@dataclass
class Arrival:
    """One request as the simulator saw it."""

    ref: str
    status: int
    received_at: float


@dataclass
class WorkerHandle:
    """A worker process, the tail of its output (for errors), its CPU clock and memory."""

    process: subprocess.Popen[bytes]
    name: str = "worker"
    output: deque[str] = field(default_factory=lambda: deque(maxlen=40))
    _stopped: bool = False

    def exited(self) -> bool:
        return self.process.poll() is not None

    def last_words(self) -> str:
        return f"{self.name} exited with {self.process.returncode}:\n" + "\n".join(self.output)

    def check(self) -> None:
        """Fail fast with the worker's last words instead of waiting out a timeout."""
        if self.exited():
            raise RuntimeError(self.last_words())

    def stop(self) -> None:
        """SIGTERM to its process group (RQ's scheduler child too), SIGKILL if it lingers.

        Once only: after the group is gone its id may belong to someone else.
        """
        if not self._stopped:
            self._stopped = True
            stop_worker(self.process)

    def cpu_seconds(self) -> float:
        """User + system CPU of the worker's main process, all threads (Linux ``/proc``).

        Unlike wall-clock figures it is not inflated by other processes competing for the CPU,
        so it tells what a message costs the worker itself. NaN where ``/proc`` is missing.
        """
        return process_cpu(self.process.pid)

    def rss_kb(self) -> tuple[int, int]:
        """Resident memory (``VmRSS``, kB) of the main process and of the rest of its group.

        The worker runs in a session of its own (``start_new_session``), so its group is
        exactly the processes it started: RQ's scheduler child, any sandbox helpers.
        """
        group = self.process.pid
        main = _vm_rss(group)
        children = 0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == group:
                continue
            fields = _stat_fields(int(entry.name))
            if fields is not None and int(fields[2]) == group:
                children += _vm_rss(int(entry.name))
        return main, children


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (all its threads); NaN without ``/proc``."""
    fields = _stat_fields(pid)
    if fields is None:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores (``/proc/stat``).

    Busy is everything but idle and I/O wait; two readings tell how loaded the machine was
    in between, whoever loaded it.
    """
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return math.nan, math.nan
    ticks = [int(value) for value in first[1:9]]  # user nice system idle iowait irq soft steal
    total = sum(ticks)
    tick = os.sysconf("SC_CLK_TCK")
    return (total - ticks[3] - ticks[4]) / tick, total / tick


def _stat_fields(pid: int) -> list[str] | None:
    """``/proc/PID/stat`` after the command name: [0] state, [1] ppid, [2] pgrp, ..."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()


def _vm_rss(pid: int) -> int:
    """``VmRSS`` of ``pid`` in kB; 0 for a process gone (or a zombie, which has none)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


# -- starting and stopping what the benchmark needs ---------------------------------------------


def start_redis(stack: ExitStack, url: str | None) -> tuple[str, str]:
    """The given Redis, or a private redis-server stopped with the stack."""
    if url:
        return url, f"{url} (given; private queue name)"
    server = stack.enter_context(RedisServer())
    return server.url, f"private redis-server at {server.url}"


def private_schema(stack: ExitStack, url: str, prefix: str) -> tuple[str, str]:
    """An empty PostgreSQL schema for this run (dropped with the stack) and the URL into it."""
    schema = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(url)
    stack.callback(admin.dispose)
    with admin.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    stack.callback(best_effort, _drop_schema, admin, schema)
    separator = "&" if "?" in url else "?"
    kind = f"PostgreSQL {admin.url.host}:{admin.url.port}/{admin.url.database}, schema {schema}"
    return f"{url}{separator}options={quote(f'-csearch_path={schema}')}", kind


def prepare_database(stack: ExitStack, url: str | None) -> tuple[str, str]:
    """An empty database with the extension's tables; private to this run, dropped after.

    PostgreSQL gets its own schema through ``search_path`` (as the tests do), so a run never
    touches other people's tables on a shared server.
    """
    if not url:
        directory = tempfile.mkdtemp(prefix="sms-bench-")
        stack.callback(shutil.rmtree, directory, ignore_errors=True)
        url = f"sqlite:///{directory}/bench.db"
        kind = f"SQLite file in {directory}"
    elif url.startswith("postgresql"):
        url, kind = private_schema(stack, url, "sms_bench")
    else:
        kind = url
    engine = sa.create_engine(url)
    metadata.create_all(engine)
    engine.dispose()
    return url, kind


def _drop_schema(admin: sa.Engine, schema: str) -> None:
    with admin.begin() as connection:
        connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))


def dispose_engines(app: Flask) -> None:
    """Close our pooled connections before the schema is dropped."""
    with app.app_context():
        app.extensions["sqlalchemy"].engine.dispose()


def best_effort(cleanup: Callable[..., object], *args: object) -> None:
    """Run a cleanup step; a failure (Redis already gone) is one line, not a traceback."""
    try:
        cleanup(*args)
    except Exception as exc:
        print(f"cleanup {cleanup.__name__} failed: {exc}", file=sys.stderr)


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM handler: unwind like Ctrl-C, so the exit stack stops every child process."""
    raise KeyboardInterrupt


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it does not exit."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(STOP_TIMEOUT)


def start_simulator(stack: ExitStack) -> tuple[str, int]:
    """``python -m tests.simulator`` in its own process, so it does not share our GIL; its URL
    and process id."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.simulator", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    stack.callback(stop_process, process)
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], START_TIMEOUT)
    line = process.stdout.readline().decode() if ready else ""
    if not line.startswith("SIMULATOR "):
        raise RuntimeError(f"the simulator did not start (first line: {line!r})")
    return line.split()[1], process.pid


def start_worker(
    stack: ExitStack,
    database_url: str,
    redis_url: str,
    name: str,
    *,
    app: str = "wsgi",
    **config: str,
) -> WorkerHandle:
    """One ``flask sms worker`` process of ``app`` (the demo portal by default; ``config``:
    ``SMS_...`` settings as ``FLASK_`` variables); its output is drained, as a full pipe would
    stall it."""
    worker = WorkerHandle(worker_process(database_url, redis_url, app=app, **config), name=name)
    stack.callback(worker.stop)

    def drain() -> None:
        assert worker.process.stdout is not None
        for raw in worker.process.stdout:
            worker.output.append(raw.decode(errors="replace").rstrip())

    threading.Thread(target=drain, name=f"{name}-output", daemon=True).start()
    return worker


def wait_until(done: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    """Poll ``done`` until it is true; every wait in the benchmark is bounded."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not done within {timeout:.0f} s")
        time.sleep(interval)


def wait_for_workers(redis_url: str, queue: str, workers: Sequence[WorkerHandle]) -> None:
    """Until every worker has registered itself on the queue (its app is built by then)."""
    connection = Redis.from_url(redis_url)
    watched = Queue(queue, connection=connection)
    mine = {worker.process.pid for worker in workers}

    def registered() -> bool:
        for worker in workers:
            worker.check()
        found = {w.pid for w in Worker.all(connection=connection, queue=watched)}
        return mine <= found

    try:
        wait_until(registered, START_TIMEOUT, "worker start")
    finally:
        connection.close()


def forget_queue(redis_url: str, queue: str) -> None:
    """Leave no keys of our private queues behind on a shared Redis: the queues (bulk and
    urgent) with their jobs and registries, the urgent flag, the stopped workers' records."""
    connection = Redis.from_url(redis_url)
    try:
        for name in (queue, urgent_queue_name(queue)):
            Queue(name, connection=connection).delete(delete_jobs=True)
        keys = [
            key
            for pattern in (f"rq:*{queue}*", f"sms_ext:{queue}:*")
            for key in connection.scan_iter(match=pattern, count=1000)
        ]
        for key in connection.scan_iter(match="rq:worker:*", count=1000):
            listens = connection.hget(key, "queues") or b""
            if queue in listens.decode(errors="replace").split(","):
                keys.append(key)
        if keys:
            connection.delete(*keys)
    finally:
        connection.close()


# -- the simulator's control API -----------------------------------------------------------------


def custom_requests(sim_url: str) -> list[Arrival]:
    """Every answered request to the custom route since the last reset, in answer order.

    ``ref`` is the message id (the gateway's payload template puts it there).
    """
    response = requests.get(f"{sim_url}/_sim/requests", timeout=60)
    response.raise_for_status()
    return [
        Arrival(
            str(json.loads(record["body"])["ref"]),
            record["response_status"],
            record["received_at"],
        )
        for record in response.json()
        if record["target"] == "custom"
    ]


def arrivals(sim_url: str) -> dict[str, Arrival]:
    """The first arrival of each ``ref`` since the last reset."""
    found: dict[str, Arrival] = {}
    for arrival in sorted(custom_requests(sim_url), key=lambda a: a.received_at):
        found.setdefault(arrival.ref, arrival)
    return found


def reset_simulator(sim_url: str) -> None:
    """Forget requests and peaks (the latency stays)."""
    requests.post(f"{sim_url}/_sim/reset", json={}, timeout=10).raise_for_status()


def set_latency(sim_url: str, seconds: float) -> None:
    """Every gateway answer waits ``seconds`` (each request on its own thread)."""
    response = requests.post(f"{sim_url}/_sim/latency", json={"seconds": seconds}, timeout=10)
    response.raise_for_status()


def simulator_stats(sim_url: str) -> dict[str, Any]:
    """``GET /_sim/stats``: in flight now, most in flight at once, peak rate; per target too."""
    response = requests.get(f"{sim_url}/_sim/stats", timeout=30)
    response.raise_for_status()
    stats: dict[str, Any] = response.json()
    return stats


def wait_simulator_idle(sim_url: str, timeout: float) -> bool:
    """Until no request is held (so the counts are final); ``False`` on timeout."""
    try:
        wait_until(lambda: simulator_stats(sim_url)["in_flight"] == 0, timeout, "simulator idle")
    except TimeoutError:
        return False
    return True


# -- the outbox ----------------------------------------------------------------------------------


def engine(app: Flask) -> sa.Engine:
    """The app's database engine, reachable from any thread and outside an app context."""
    with app.app_context():
        found: sa.Engine = app.extensions["sqlalchemy"].engine
    return found


def settled_count(app: Flask, ids: Sequence[int]) -> int:
    """How many of ``ids`` reached a final status: one cheap COUNT, on a fresh connection.

    Waiting on the database rather than polling ``/_sim/requests`` (which serialises every
    recorded request) keeps the simulator free for the worker's requests while timing.
    """
    query = sa.select(sa.func.count()).where(_among(ids), Message.status.in_(SETTLED))
    with engine(app).connect() as connection:
        return int(connection.scalar(query) or 0)


def _among(ids: Sequence[int]) -> sa.ColumnElement[bool]:
    """``id IN (...)`` for a few ids, a range for a campaign (whose ids are contiguous)."""
    if len(ids) <= 1000:
        return Message.id.in_(ids)
    return Message.id.between(min(ids), max(ids))


def statuses(app: Flask, ids: Sequence[int]) -> dict[str, int]:
    """How many of ``ids`` are in each status."""
    query = sa.select(Message.status, sa.func.count()).where(_among(ids)).group_by(Message.status)
    with engine(app).connect() as connection:
        return {str(status): int(count) for status, count in connection.execute(query)}


def wait_settled(
    app: Flask, ids: Sequence[int], workers: Sequence[WorkerHandle], timeout: float
) -> bool:
    """Until every message in ``ids`` is settled; ``False`` (reported, not raised) on timeout."""

    def done() -> bool:
        for worker in workers:
            worker.check()
        return settled_count(app, ids) >= len(ids)

    try:
        wait_until(done, timeout, "delivery", interval=0.2)
    except TimeoutError:
        return False
    return True


def offers(count: int) -> list[tuple[str, str]]:
    """A campaign's recipients and texts."""
    return [(f"+2783{i:07d}", f"Campaign offer {i}: 10% off this week") for i in range(count)]


def send_one(to: str, body: str, kind: str = Kind.PERSONAL) -> tuple[int, float, float]:
    """Send; return the id, the call's duration and the wall clock when ``send`` returned."""
    called = time.perf_counter()
    message = sms.send(to, body, kind=kind)
    returned_at = time.time()
    duration = time.perf_counter() - called
    # The commit expired the row but not its identity: reading the id this way costs no SELECT.
    return int(sa.inspect(message).identity[0]), duration, returned_at


# -- report --------------------------------------------------------------------------------------


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile: a value that was really observed, no interpolation."""
    if not ordered:
        return math.nan
    return ordered[max(0, math.ceil(fraction * len(ordered) - 1e-9) - 1)]


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"
