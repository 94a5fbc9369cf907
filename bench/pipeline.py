"""Benchmark of the whole sending pipeline: ``sms.send`` -> outbox -> RQ -> worker -> gateway.

Run ``.venv/bin/python bench/pipeline.py [--database URL] [--redis URL] [--single N]
[--bulk N]``. Everything runs as in production: the worker (``flask sms worker`` of the demo
portal) and the gateway simulator are separate processes, so the figures include process
boundaries, Redis round trips and real HTTP on loopback. The simulator stamps every request
with ``time.time()`` on arrival, which is what both phases measure against.

Targets (from the issue): single-message p50 < 30 ms and p99 < 100 ms; bulk throughput at least
60 % of a bare ``requests.Session`` loop posting the same bodies to the same simulator.
Latency is sensitive to CPU contention (four processes share the machine): the header prints
the load average, and each phase prints the worker's own CPU time per message, which does not
depend on what else runs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import select
import shutil
import signal
import statistics
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
from sms_ext.models import Message, Status  # noqa: E402
from tests.conftest import TEST_KEY, make_app  # noqa: E402
from tests.helpers import custom_gateway, stop_worker, worker_process  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

GATEWAY = "bench"
WORKER_KEY = "test-secret-key-that-is-long-enough"
"""The SECRET_KEY ``tests.helpers.worker_process`` gives the worker: gateway secrets are sealed
with it, so the app that saves the gateway must use the same one (checked at start)."""
SETTLED = (Status.SENT, Status.DELIVERED, Status.UNDELIVERED, Status.FAILED)
WARMUP = 5
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
SETTLE_TIMEOUT = 60.0

sms = SMS()
"""The extension object the benchmark's app is built with, as an integrator holds it."""


@dataclass
class Arrival:
    """One message as the simulator saw it."""

    status: int
    received_at: float


@dataclass
class WorkerHandle:
    """The worker process, the tail of its output (for errors) and its CPU clock."""

    process: subprocess.Popen[bytes]
    output: deque[str] = field(default_factory=lambda: deque(maxlen=40))

    def check(self) -> None:
        """Fail fast with the worker's last words instead of waiting out a timeout."""
        if self.process.poll() is not None:
            tail = "\n".join(self.output)
            raise RuntimeError(f"the worker exited with {self.process.returncode}:\n{tail}")

    def cpu_seconds(self) -> float:
        """User + system CPU of the worker (Linux ``/proc``; NaN elsewhere).

        Unlike wall-clock figures it is not inflated by other processes competing for the CPU,
        so it tells what a message costs the worker itself.
        """
        try:
            stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        except OSError:
            return math.nan
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (RQ finishes its job and unregisters), then SIGKILL if it does not exit."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(STOP_TIMEOUT)


def start_simulator(stack: ExitStack) -> str:
    """``python -m tests.simulator`` in its own process, so it does not share our GIL."""
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
    return line.split()[1]


def start_worker(stack: ExitStack, database_url: str, redis_url: str, queue: str) -> WorkerHandle:
    """One ``flask sms worker`` process; its output is drained (a full pipe would stall it)."""
    os.environ["FLASK_SMS_QUEUE"] = queue  # worker_process passes our environment on
    worker = WorkerHandle(worker_process(database_url, redis_url))
    stack.callback(stop_worker, worker.process)

    def drain() -> None:
        assert worker.process.stdout is not None
        for raw in worker.process.stdout:
            worker.output.append(raw.decode(errors="replace").rstrip())

    threading.Thread(target=drain, name="worker-output", daemon=True).start()
    return worker


def wait_until(done: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    """Poll ``done`` until it is true; every wait in the benchmark is bounded."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not done within {timeout:.0f} s")
        time.sleep(interval)


def wait_for_worker(redis_url: str, queue: str, worker: WorkerHandle) -> None:
    """Until the worker has registered itself on the queue (the app is built by then)."""
    connection = Redis.from_url(redis_url)
    watched = Queue(queue, connection=connection)

    def registered() -> bool:
        worker.check()
        return bool(Worker.all(connection=connection, queue=watched))

    try:
        wait_until(registered, START_TIMEOUT, "worker start")
    finally:
        connection.close()


def forget_queue(redis_url: str, queue: str) -> None:
    """Leave no keys of our private queue behind on a shared Redis."""
    connection = Redis.from_url(redis_url)
    try:
        Queue(queue, connection=connection).empty()
        keys = list(connection.scan_iter(match=f"rq:*{queue}*", count=1000))
        if keys:
            connection.delete(*keys)
    finally:
        connection.close()


# -- observing deliveries ------------------------------------------------------------------------


def arrivals(sim_url: str) -> dict[str, Arrival]:
    """What reached the simulator's custom route since the last reset, by ``ref`` (our id)."""
    response = requests.get(f"{sim_url}/_sim/requests", timeout=30)
    response.raise_for_status()
    found: dict[str, Arrival] = {}
    for record in response.json():
        if record["target"] == "custom":
            ref = str(json.loads(record["body"])["ref"])
            found.setdefault(ref, Arrival(record["response_status"], record["received_at"]))
    return found


def reset_simulator(sim_url: str) -> None:
    requests.post(f"{sim_url}/_sim/reset", json={}, timeout=10).raise_for_status()


def settled_count(app: Flask, ids: Sequence[int]) -> int:
    """How many of ``ids`` reached a final status: one cheap COUNT, on a fresh connection.

    Waiting on the database rather than polling ``/_sim/requests`` (which serialises every
    recorded request) keeps the simulator free for the worker's requests while timing.
    """
    query = sa.select(sa.func.count()).where(
        Message.id.between(min(ids), max(ids)), Message.status.in_(SETTLED)
    )
    with app.extensions["sqlalchemy"].engine.connect() as connection:
        return int(connection.scalar(query) or 0)


def wait_settled(app: Flask, ids: Sequence[int], worker: WorkerHandle, timeout: float) -> bool:
    """Until every message in ``ids`` is settled; ``False`` (reported, not raised) on timeout."""

    def done() -> bool:
        worker.check()
        return settled_count(app, ids) >= len(ids)

    try:
        wait_until(done, timeout, "delivery", interval=0.2)
    except TimeoutError:
        return False
    return True


# -- the phases ----------------------------------------------------------------------------------


def send_one(app: Flask, to: str, body: str) -> tuple[int, float, float]:
    """Send; return the id, the call's duration and the wall clock when ``send`` returned."""
    called = time.perf_counter()
    message = sms.send(to, body)
    returned_at = time.time()
    duration = time.perf_counter() - called
    # The commit expired the row but not its identity: reading the id this way costs no SELECT.
    return int(sa.inspect(message).identity[0]), duration, returned_at


def warm_up(app: Flask, sim_url: str, worker: WorkerHandle) -> None:
    """First jobs pay for imports, connections and the gateway lookup: keep them out."""
    with app.app_context():
        ids = [send_one(app, f"+2782{i:07d}", f"warm-up {i}")[0] for i in range(WARMUP)]
        if not wait_settled(app, ids, worker, SETTLE_TIMEOUT):
            raise TimeoutError(f"the warm-up messages were not delivered in {SETTLE_TIMEOUT} s")
    reset_simulator(sim_url)


def measure_latency(
    app: Flask, sim_url: str, worker: WorkerHandle, count: int, spacing: float
) -> dict[str, Any]:
    """``count`` sends on a fixed ``spacing`` schedule; latency = arrival - return of send.

    A schedule (not a sleep after each send) keeps the offered rate fixed even when a send is
    slow, so the figures show latency, not a rate that drifts with the machine.
    """
    returned: dict[str, float] = {}
    durations: list[float] = []
    cpu_before = worker.cpu_seconds()
    with app.app_context():
        start = time.monotonic()
        for i in range(count):
            time.sleep(max(0.0, start + i * spacing - time.monotonic()))
            ident, duration, at = send_one(app, f"+2784{i:07d}", f"Your code is {i:06d}")
            returned[str(ident)] = at
            durations.append(duration * 1000)
        complete = wait_settled(app, [int(ref) for ref in returned], worker, SETTLE_TIMEOUT)
    cpu = worker.cpu_seconds() - cpu_before
    seen = arrivals(sim_url)
    reset_simulator(sim_url)
    return {
        "sent": count,
        "complete": complete,
        "ms": sorted((seen[r].received_at - at) * 1000 for r, at in returned.items() if r in seen),
        "send_ms": sorted(durations),
        "worker_cpu_ms": cpu * 1000 / count,
    }


def campaign(count: int) -> list[tuple[str, str]]:
    return [(f"+2783{i:07d}", f"Campaign offer {i}: 10% off this week") for i in range(count)]


def posted_bodies(ids: Sequence[int], recipients: Sequence[tuple[str, str]]) -> list[bytes]:
    """The bytes the custom driver posts for these messages (its template, compact JSON)."""
    return [
        json.dumps({"to": to, "text": body, "ref": str(i)}, separators=(",", ":")).encode()
        for i, (to, body) in zip(ids, recipients, strict=True)
    ]


def measure_bulk(
    app: Flask, sim_url: str, worker: WorkerHandle, count: int
) -> tuple[dict[str, Any], list[bytes]]:
    """One ``send_bulk``; throughput = messages / (last arrival - return of ``send_bulk``).

    Also returns the JSON bodies the driver posted, for the bare loop to post the same bytes.
    """
    recipients = campaign(count)
    cpu_before = worker.cpu_seconds()
    with app.app_context():
        called = time.time()
        ids = sms.send_bulk(recipients)
        returned = time.time()
        complete = wait_settled(app, ids, worker, max(120.0, count / 20))
    cpu = worker.cpu_seconds() - cpu_before
    seen = arrivals(sim_url)
    reset_simulator(sim_url)
    mine = [seen[str(i)] for i in ids if str(i) in seen]
    last = max((a.received_at for a in mine), default=returned)
    return {
        "sent": count,
        "arrived": len(mine),
        "failed_http": sum(1 for a in mine if a.status != 200),
        "complete": complete,
        "insert_enqueue_s": returned - called,
        "first_arrival_s": min((a.received_at for a in mine), default=returned) - returned,
        "window_s": last - returned,
        "rate": len(mine) / (last - returned) if last > returned else 0.0,
        "worker_cpu_ms": cpu * 1000 / count,
    }, posted_bodies(ids, recipients)


def measure_bare(sim_url: str, bodies: Sequence[bytes]) -> dict[str, Any]:
    """The ceiling: the same posts from one kept-alive session, nothing else in between."""
    url = f"{sim_url}/custom/{GATEWAY}"
    headers = {"Content-Type": "application/json; charset=utf-8"}
    failures = 0
    with requests.Session() as session:
        start = time.perf_counter()
        for body in bodies:
            response = session.post(url, data=body, headers=headers, timeout=2)
            failures += response.status_code != 200 or '"status": "ok"' not in response.text
        elapsed = time.perf_counter() - start
    reset_simulator(sim_url)
    return {"sent": len(bodies), "failed": failures, "seconds": elapsed}


# -- report --------------------------------------------------------------------------------------


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile: a value that was really observed, no interpolation."""
    if not ordered:
        return math.nan
    return ordered[max(0, math.ceil(fraction * len(ordered) - 1e-9) - 1)]


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def print_header(database: str, redis: str, batch_size: int, args: argparse.Namespace) -> None:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print("sms_ext pipeline benchmark")
    print(f"  database   : {database}")
    print(f"  redis      : {redis}")
    print("  workers    : 1 (flask sms worker: RQ SimpleWorker + scheduler, own process)")
    print(f"  batch size : {batch_size} (SMS_BATCH_SIZE)")
    print(f"  gateway    : custom JSON -> simulator /custom/{GATEWAY} (own process)")
    print(f"  machine    : {os.cpu_count()} CPU(s), load average {load} before start")
    print(f"  python     : {platform.python_version()}")
    print(
        f"  runs       : {args.single} single sends {args.spacing * 1000:.0f} ms apart, "
        f"then send_bulk of {args.bulk}",
        end="\n\n",
        flush=True,
    )


def print_latency(result: dict[str, Any]) -> None:
    ms, send_ms = result["ms"], result["send_ms"]
    p50, p90, p99 = (percentile(ms, f) for f in (0.50, 0.90, 0.99))
    late = "" if result["complete"] else " (NOT all settled in time)"
    print("(a) single-message latency: send() returned -> simulator received")
    print(f"    p50 {p50:8.1f} ms   [target < 30 ms: {verdict(p50 < 30)}]")
    print(f"    p90 {p90:8.1f} ms")
    print(f"    p99 {p99:8.1f} ms   [target < 100 ms: {verdict(p99 < 100)}]")
    mean = statistics.fmean(ms) if ms else math.nan
    print(f"    max {max(ms, default=math.nan):8.1f} ms   mean {mean:.1f} ms")
    print(f"    arrived {len(ms)}/{result['sent']}{late}")
    print(
        f"    send() itself: p50 {percentile(send_ms, 0.5):.1f} ms, "
        f"p99 {percentile(send_ms, 0.99):.1f} ms; "
        f"worker CPU {result['worker_cpu_ms']:.1f} ms per message",
        end="\n\n",
        flush=True,
    )


def print_bulk(bulk: dict[str, Any], bare: dict[str, Any]) -> None:
    bare_rate = bare["sent"] / bare["seconds"]
    ratio = bulk["rate"] / bare_rate * 100
    notes = "" if bulk["complete"] else " (NOT all settled in time)"
    if bulk["failed_http"]:
        notes += f", {bulk['failed_http']} non-200"
    insert_ms = bulk["insert_enqueue_s"] * 1000
    print(f"(b) bulk: send_bulk of {bulk['sent']} messages, one worker")
    per_message = insert_ms / bulk["sent"]
    print(f"    send_bulk (insert + enqueue)  {insert_ms:7.0f} ms ({per_message:.3f} ms/msg)")
    print(f"    first arrival after return    {bulk['first_arrival_s'] * 1000:7.0f} ms")
    print(f"    last arrival after return     {bulk['window_s'] * 1000:7.0f} ms")
    print(
        f"    pipeline  {bulk['rate']:7.0f} msg/s   arrived {bulk['arrived']}/{bulk['sent']}{notes}"
    )
    print(
        f"    bare loop {bare_rate:7.0f} msg/s   ({bare['sent']} posts in {bare['seconds']:.2f} s, "
        f"{bare['failed']} failed)"
    )
    print(f"    pipeline / bare = {ratio:.0f} %   [target >= 60 %: {verdict(ratio >= 60)}]")
    print(f"    worker CPU {bulk['worker_cpu_ms']:.2f} ms per message", flush=True)


# -- main ----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", help="SQLAlchemy URL (default: SQLite in a temp dir)")
    parser.add_argument("--redis", help="Redis URL (default: a private redis-server)")
    parser.add_argument("--single", type=int, default=300, help="single sends (default 300)")
    parser.add_argument("--bulk", type=int, default=5000, help="bulk size (default 5000)")
    parser.add_argument(
        "--spacing", type=float, default=0.02, help="seconds between single sends (default 0.02)"
    )
    args = parser.parse_args(argv)
    if args.single < 1 or args.bulk < 1 or args.spacing < 0:
        parser.error("--single and --bulk must be positive, --spacing not negative")
    return args


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C, so the exit stack stops every child process."""
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> None:
    if TEST_KEY != WORKER_KEY:
        raise RuntimeError("make_app and worker_process disagree on SECRET_KEY")
    queue = f"bench_{uuid.uuid4().hex[:12]}"  # not JSON, so FLASK_SMS_QUEUE stays a string
    with ExitStack() as stack:
        redis_url, redis_kind = start_redis(stack, args.redis)
        if args.redis:
            stack.callback(best_effort, forget_queue, redis_url, queue)
        database_url, database_kind = prepare_database(stack, args.database)
        sim_url = start_simulator(stack)
        app = make_app(database_url, redis_url, sms=sms, SMS_QUEUE=queue)
        stack.callback(dispose_engines, app)
        with app.app_context():
            custom_gateway(app, SimpleNamespace(url=sim_url), GATEWAY)
        print_header(database_kind, redis_kind, app.extensions["sms"].settings.batch_size, args)
        worker = start_worker(stack, database_url, redis_url, queue)
        wait_for_worker(redis_url, queue, worker)
        warm_up(app, sim_url, worker)
        print_latency(measure_latency(app, sim_url, worker, args.single, args.spacing))
        bulk, bodies = measure_bulk(app, sim_url, worker, args.bulk)
        print_bulk(bulk, measure_bare(sim_url, bodies))
        worker.check()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # Explicitly: a shell starting us in the background would leave SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        run(args)
    except KeyboardInterrupt:
        print("interrupted; everything this run started was stopped", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
