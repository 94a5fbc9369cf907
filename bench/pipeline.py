"""Benchmark of the whole sending pipeline: ``sms.send`` -> outbox -> RQ -> worker -> gateway.

Run ``.venv/bin/python bench/pipeline.py [--database URL] [--redis URL] [--single N]
[--bulk N]``. Everything runs as in production: the worker (``flask sms worker`` of the demo
portal) and the gateway simulator are separate processes, so the figures include process
boundaries, Redis round trips and real HTTP on loopback. The simulator stamps every request
with ``time.time()`` on arrival, which is what both phases measure against.

Targets (from the issue): single-message p50 < 30 ms and p99 < 100 ms; bulk throughput at least
60 % of a bare ``requests.Session`` loop posting the same bodies to the same simulator.
"""

from __future__ import annotations

import argparse
import json
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
from contextlib import ExitStack, suppress
from dataclasses import dataclass
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

from sms_ext import metadata  # noqa: E402
from sms_ext.models import Message, Status  # noqa: E402
from tests.conftest import TEST_KEY, make_app  # noqa: E402
from tests.helpers import custom_gateway, worker_process  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

GATEWAY = "bench"
WORKER_KEY = "test-secret-key-that-is-long-enough"
"""The SECRET_KEY ``tests.helpers.worker_process`` gives the worker: gateway secrets are sealed
with it, so the app that saves the gateway must use the same one (checked at start)."""
SETTLED = (Status.SENT, Status.DELIVERED, Status.UNDELIVERED, Status.FAILED)
WARMUP = 5
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


@dataclass
class Arrival:
    """One message as the simulator saw it."""

    ref: str
    received_at: float
    status: int


# -- starting and stopping what the benchmark needs ---------------------------------------------


def start_redis(stack: ExitStack, url: str | None) -> tuple[str, str]:
    """The given Redis, or a private redis-server stopped with the stack."""
    if url:
        return url, f"{url} (given)"
    server = stack.enter_context(RedisServer())
    return server.url, f"private redis-server at {server.url}"


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
        schema = f"sms_bench_{uuid.uuid4().hex[:8]}"
        admin = sa.create_engine(url)
        stack.callback(admin.dispose)
        with admin.begin() as connection:
            connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        stack.callback(_drop_schema, admin, schema)
        separator = "&" if "?" in url else "?"
        url = f"{url}{separator}options={quote(f'-csearch_path={schema}')}"
        kind = f"PostgreSQL {admin.url.host}:{admin.url.port}/{admin.url.database}, schema {schema}"
    else:
        kind = url
    engine = sa.create_engine(url)
    metadata.create_all(engine)
    engine.dispose()
    return url, kind


def dispose_engines(app: Flask) -> None:
    """Close our pooled connections before the schema is dropped."""
    with app.app_context():
        app.extensions["sqlalchemy"].engine.dispose()


def _drop_schema(admin: Any, schema: str) -> None:
    with admin.begin() as connection:
        connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))


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


def start_worker(
    stack: ExitStack, database_url: str, redis_url: str, queue: str
) -> tuple[subprocess.Popen[bytes], deque[str]]:
    """One ``flask sms worker`` process; its output is drained (a full pipe would stall it)."""
    os.environ["FLASK_SMS_QUEUE"] = queue  # worker_process passes our environment on
    process = worker_process(database_url, redis_url)
    stack.callback(stop_process, process)
    output: deque[str] = deque(maxlen=40)

    def drain() -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            output.append(raw.decode(errors="replace").rstrip())

    threading.Thread(target=drain, name="worker-output", daemon=True).start()
    return process, output


def wait_until(done: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    """Poll ``done`` until it is true; every wait in the benchmark is bounded."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not done within {timeout:.0f} s")
        time.sleep(interval)


def check_worker(process: subprocess.Popen[bytes], output: deque[str]) -> None:
    if process.poll() is not None:
        tail = "\n".join(output)
        raise RuntimeError(f"the worker exited with {process.returncode}:\n{tail}")


def wait_for_worker(
    redis_url: str, queue: str, process: subprocess.Popen[bytes], output: deque[str]
) -> None:
    """Until the worker has registered itself on the queue (the app is built by then)."""
    connection = Redis.from_url(redis_url)
    try:

        def registered() -> bool:
            check_worker(process, output)
            return bool(
                Worker.all(connection=connection, queue=Queue(queue, connection=connection))
            )

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


# -- the simulator's view ------------------------------------------------------------------------


def arrivals(sim_url: str) -> dict[str, Arrival]:
    """What reached ``/custom/bench`` since the last reset, by message reference (our id)."""
    response = requests.get(f"{sim_url}/_sim/requests", timeout=30)
    response.raise_for_status()
    found: dict[str, Arrival] = {}
    for record in response.json():
        if record["target"] != "custom":
            continue
        ref = str(json.loads(record["body"])["ref"])
        found.setdefault(ref, Arrival(ref, record["received_at"], record["response_status"]))
    return found


def reset_simulator(sim_url: str) -> None:
    requests.post(f"{sim_url}/_sim/reset", json={}, timeout=10).raise_for_status()


def settled_count(app: Flask, ids: Sequence[int]) -> int:
    """How many of ``ids`` reached a final status: one cheap COUNT, on a fresh connection.

    Waiting on the database rather than polling ``/_sim/requests`` keeps the simulator's GIL
    free for the worker's requests while a campaign is being measured.
    """
    engine = app.extensions["sqlalchemy"].engine
    query = sa.select(sa.func.count()).where(
        Message.id.between(min(ids), max(ids)), Message.status.in_(SETTLED)
    )
    with engine.connect() as connection:
        return int(connection.scalar(query) or 0)


def wait_settled(
    app: Flask, ids: Sequence[int], timeout: float, worker: Callable[[], None]
) -> bool:
    """Until every message in ``ids`` is settled; ``False`` (not raised) on timeout."""

    def done() -> bool:
        worker()
        return settled_count(app, ids) >= len(ids)

    try:
        wait_until(done, timeout, "delivery", interval=0.2)
    except TimeoutError:
        return False
    return True


# -- the phases ----------------------------------------------------------------------------------


def message_id(message: Message) -> int:
    """The id without a SELECT: the commit expired the row, not its identity."""
    return int(sa.inspect(message).identity[0])


def send_one(app: Flask, to: str, body: str) -> tuple[int, float]:
    """Send and stamp the wall clock the moment ``send`` returns (the caller's view)."""
    message = app.extensions["sms"].extension.send(to, body)
    returned_at = time.time()
    return message_id(message), returned_at


def warm_up(app: Flask, sim_url: str, worker: Callable[[], None]) -> None:
    """First jobs pay for imports, connections and the gateway lookup: keep them out."""
    with app.app_context():
        ids = [send_one(app, f"+2782{i:07d}", f"warm-up {i}")[0] for i in range(WARMUP)]
        if not wait_settled(app, ids, 60, worker):
            raise TimeoutError("the warm-up messages were not delivered within 60 s")
    reset_simulator(sim_url)


def measure_latency(
    app: Flask, sim_url: str, count: int, spacing: float, worker: Callable[[], None]
) -> dict[str, Any]:
    """``count`` sends on a fixed ``spacing`` schedule; latency = arrival - return of send."""
    returned: dict[str, float] = {}
    with app.app_context():
        start = time.monotonic()
        for i in range(count):
            delay = start + i * spacing - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            ident, returned_at = send_one(app, f"+2784{i:07d}", f"Your code is {i % 10**6:06d}")
            returned[str(ident)] = returned_at
        send_seconds = time.monotonic() - start
        ids = [int(ref) for ref in returned]
        complete = wait_settled(app, ids, 60, worker)
    seen = arrivals(sim_url)
    latencies = sorted(
        (seen[ref].received_at - at) * 1000 for ref, at in returned.items() if ref in seen
    )
    reset_simulator(sim_url)
    return {
        "sent": count,
        "arrived": len(latencies),
        "complete": complete,
        "send_seconds": send_seconds,
        "ms": latencies,
    }


def campaign(count: int) -> list[tuple[str, str]]:
    return [(f"+2783{i:07d}", f"Campaign offer {i}: 10% off this week") for i in range(count)]


def measure_bulk(
    app: Flask, sim_url: str, count: int, worker: Callable[[], None]
) -> tuple[dict[str, Any], list[bytes]]:
    """One ``send_bulk``; throughput = messages / (last arrival - return of ``send_bulk``).

    Also returns the JSON bodies the driver posted, for the bare loop to post the same bytes.
    """
    recipients = campaign(count)
    with app.app_context():
        called = time.time()
        ids = app.extensions["sms"].extension.send_bulk(recipients)
        returned = time.time()
        complete = wait_settled(app, ids, max(120.0, count / 20), worker)
    seen = arrivals(sim_url)
    mine = [seen[str(i)] for i in ids if str(i) in seen]
    last = max((a.received_at for a in mine), default=returned)
    first = min((a.received_at for a in mine), default=returned)
    reset_simulator(sim_url)
    bodies = [
        json.dumps({"to": to, "text": body, "ref": str(i)}, separators=(",", ":")).encode()
        for i, (to, body) in zip(ids, recipients, strict=True)
    ]
    return {
        "sent": count,
        "arrived": len(mine),
        "failed_http": sum(1 for a in mine if a.status != 200),
        "complete": complete,
        "insert_enqueue_s": returned - called,
        "first_arrival_s": first - returned,
        "window_s": last - returned,
        "rate": len(mine) / (last - returned) if last > returned else 0.0,
    }, bodies


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
    return {
        "sent": len(bodies),
        "failed": failures,
        "seconds": elapsed,
        "rate": len(bodies) / elapsed,
    }


# -- report --------------------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile: a real observed value, no interpolation."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), round(fraction * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def print_header(database: str, redis: str, batch_size: int, args: argparse.Namespace) -> None:
    print("sms_ext pipeline benchmark")
    print(f"  database   : {database}")
    print(f"  redis      : {redis}")
    print("  workers    : 1 (flask sms worker, RQ SimpleWorker, separate process)")
    print(f"  batch size : {batch_size} (SMS_BATCH_SIZE)")
    print(f"  gateway    : custom JSON -> simulator /custom/{GATEWAY} (separate process)")
    print(f"  machine    : {os.cpu_count()} CPU(s), Python {platform.python_version()}")
    print(
        f"  runs       : {args.single} single sends {args.spacing * 1000:.0f} ms apart, "
        f"bulk of {args.bulk}"
    )
    print(flush=True)


def print_latency(result: dict[str, Any]) -> None:
    ms = result["ms"]
    p50, p90, p99 = (percentile(ms, f) for f in (0.50, 0.90, 0.99))
    print(f"(a) single-message latency (send returned -> simulator received), {len(ms)} samples")
    print(f"    p50 {p50:7.1f} ms   [target < 30 ms: {verdict(p50 < 30)}]")
    print(f"    p90 {p90:7.1f} ms")
    print(f"    p99 {p99:7.1f} ms   [target < 100 ms: {verdict(p99 < 100)}]")
    print(
        f"    max {max(ms, default=float('nan')):7.1f} ms   mean "
        f"{statistics.fmean(ms) if ms else float('nan'):.1f} ms"
    )
    print(
        f"    arrived {result['arrived']}/{result['sent']}"
        f"{'' if result['complete'] else ' (NOT all settled in time)'}; "
        f"sending took {result['send_seconds']:.1f} s"
    )
    print(flush=True)


def print_bulk(bulk: dict[str, Any], bare: dict[str, Any]) -> None:
    ratio = bulk["rate"] / bare["rate"] * 100 if bare["rate"] else 0.0
    print(f"(b) bulk: send_bulk of {bulk['sent']} messages")
    print(
        f"    send_bulk (insert + enqueue) {bulk['insert_enqueue_s'] * 1000:8.0f} ms "
        f"({bulk['sent'] / bulk['insert_enqueue_s']:.0f} msg/s)"
    )
    print(f"    first arrival after return   {bulk['first_arrival_s'] * 1000:8.0f} ms")
    print(f"    all arrived after return     {bulk['window_s'] * 1000:8.0f} ms")
    notes = "" if bulk["complete"] else " (NOT all settled in time)"
    if bulk["failed_http"]:
        notes += f", {bulk['failed_http']} non-200"
    print(
        f"    pipeline  {bulk['rate']:8.0f} msg/s   arrived {bulk['arrived']}/{bulk['sent']}{notes}"
    )
    print(
        f"    bare loop {bare['rate']:8.0f} msg/s   ({bare['sent']} posts in "
        f"{bare['seconds']:.2f} s, {bare['failed']} failed)"
    )
    print(f"    pipeline / bare = {ratio:.0f} %   [target >= 60 %: {verdict(ratio >= 60)}]")
    print(flush=True)


# -- main ----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", help="SQLAlchemy URL (default: SQLite in a temp dir)")
    parser.add_argument("--redis", help="Redis URL (default: a private redis-server)")
    parser.add_argument("--single", type=int, default=300, help="single sends (default 300)")
    parser.add_argument("--bulk", type=int, default=5000, help="bulk size (default 5000)")
    parser.add_argument("--spacing", type=float, default=0.02, help="seconds between sends")
    return parser.parse_args(argv)


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C, so the ``finally`` stops every child process."""
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> None:
    if TEST_KEY != WORKER_KEY:
        raise RuntimeError("make_app and worker_process disagree on SECRET_KEY")
    queue = f"bench_{uuid.uuid4().hex[:12]}"  # not JSON, so FLASK_SMS_QUEUE stays a string
    with ExitStack() as stack:
        redis_url, redis_kind = start_redis(stack, args.redis)
        stack.callback(forget_queue, redis_url, queue)
        database_url, database_kind = prepare_database(stack, args.database)
        sim_url = start_simulator(stack)
        app = make_app(database_url, redis_url, SMS_QUEUE=queue)
        stack.callback(dispose_engines, app)
        with app.app_context():
            custom_gateway(app, SimpleNamespace(url=sim_url), GATEWAY)
        print_header(database_kind, redis_kind, app.extensions["sms"].settings.batch_size, args)
        process, output = start_worker(stack, database_url, redis_url, queue)
        wait_for_worker(redis_url, queue, process, output)

        def worker_alive() -> None:
            check_worker(process, output)

        warm_up(app, sim_url, worker_alive)
        print_latency(measure_latency(app, sim_url, args.single, args.spacing, worker_alive))
        bulk, bodies = measure_bulk(app, sim_url, args.bulk, worker_alive)
        print_bulk(bulk, measure_bare(sim_url, bodies))
        check_worker(process, output)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        run(args)
    except KeyboardInterrupt:
        print("interrupted; everything started was stopped", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    with suppress(BrokenPipeError):
        sys.exit(main())
