"""Benchmark of the whole sending pipeline: ``sms.send`` -> outbox -> RQ -> worker -> gateway.

Run ``.venv/bin/python bench/pipeline.py [--database URL] [--redis URL] [--single N]
[--bulk N] [--campaign N] [--codes N] [--workers N] [--concurrency N] [--latency SECONDS]``.
Everything runs as in production: the workers (``flask sms worker`` of the demo portal) and
the gateway simulator are separate processes, so the figures include process boundaries, Redis
round trips and real HTTP on loopback. The simulator stamps every request with ``time.time()``
on arrival, which is what every phase measures against.

Three phases, each skipped with a count of 0:

(a) single-message latency, one warm worker, the gateway answering at once;
(b) bulk: ``send_bulk`` through that worker against a bare ``requests.Session`` loop posting
    the same bodies to the same simulator;
(c) a campaign through ``--workers`` fresh workers with the gateway answering after
    ``--latency`` seconds, guest codes sent meanwhile (see ``bench/bulk.py``).

Targets (from the issues): (a) p50 < 30 ms and p99 < 100 ms; (b) at least 60 % of the bare
loop; (c) >= 400 msg/s at 0.2 s latency and >= 1,000 msg/s at 0 latency (two workers, two
cores), codes p99 < 2 s, every message sent exactly once, worker memory flat.
Latency is sensitive to CPU contention (several processes share the machine): the header prints
the load average, and each phase prints the workers' own CPU time per message, which does not
depend on what else runs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import statistics
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a script: make bench, sms_ext and tests importable

import requests  # noqa: E402
from flask import Flask  # noqa: E402

from bench import bulk as campaign_phase  # noqa: E402
from bench.harness import (  # noqa: E402
    GATEWAY,
    SETTLE_TIMEOUT,
    WORKER_KEY,
    WorkerHandle,
    _interrupt,
    arrivals,
    offers,
    percentile,
    reset_simulator,
    send_one,
    sms,
    start_services,
    start_worker,
    verdict,
    wait_for_workers,
    wait_settled,
)
from tests.conftest import TEST_KEY  # noqa: E402

WARMUP = 5

# -- phases (a) and (b) --------------------------------------------------------------------------


def warm_up(app: Flask, sim_url: str, worker: WorkerHandle) -> None:
    """First jobs pay for imports, connections and the gateway lookup: keep them out."""
    with app.app_context():
        ids = [send_one(f"+2782{i:07d}", f"warm-up {i}")[0] for i in range(WARMUP)]
        if not wait_settled(app, ids, [worker], SETTLE_TIMEOUT):
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
            ident, duration, at = send_one(f"+2784{i:07d}", f"Your code is {i:06d}")
            returned[str(ident)] = at
            durations.append(duration * 1000)
        complete = wait_settled(app, [int(ref) for ref in returned], [worker], SETTLE_TIMEOUT)
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
    recipients = offers(count)
    cpu_before = worker.cpu_seconds()
    with app.app_context():
        called = time.time()
        ids = sms.send_bulk(recipients)
        returned = time.time()
        complete = wait_settled(app, ids, [worker], max(120.0, count / 20))
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


def print_header(database: str, redis: str, batch_size: int, args: argparse.Namespace) -> None:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print("sms_ext pipeline benchmark")
    print(f"  database   : {database}")
    print(f"  redis      : {redis}")
    print(
        "  workers    : flask sms worker (RQ SimpleWorker + scheduler, own process); "
        f"{args.concurrency} requests in flight each (SMS_WORKER_CONCURRENCY)"
    )
    print(f"  batch size : {batch_size} (SMS_BATCH_SIZE)")
    print(f"  gateway    : custom JSON -> simulator /custom/{GATEWAY} (own process)")
    print(f"  machine    : {os.cpu_count()} CPU(s), load average {load} before start")
    print(f"  python     : {platform.python_version()}")
    runs = []
    if args.single:
        runs.append(f"(a) {args.single} single sends {args.spacing * 1000:.0f} ms apart")
    if args.bulk:
        runs.append(f"(b) send_bulk of {args.bulk}")
    if args.single or args.bulk:
        runs[-1] += ": one worker, gateway answering at once"
    if args.campaign:
        runs.append(
            f"(c) campaign of {args.campaign} + {args.codes} codes: {args.workers} worker(s), "
            f"gateway answering after {args.latency * 1000:.0f} ms"
        )
    print(f"  runs       : {'; '.join(runs)}", end="\n\n", flush=True)


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
    print(f"    worker CPU {bulk['worker_cpu_ms']:.2f} ms per message", end="\n\n", flush=True)


# -- main ----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database", metavar="URL", help="SQLAlchemy URL (default: SQLite in a temp dir)"
    )
    parser.add_argument(
        "--redis", metavar="URL", help="Redis URL (default: a private redis-server)"
    )
    parser.add_argument(
        "--single", metavar="N", type=int, default=300, help="(a) single sends (default 300)"
    )
    parser.add_argument(
        "--spacing",
        metavar="SECONDS",
        type=float,
        default=0.02,
        help="(a) seconds between sends (default 0.02)",
    )
    parser.add_argument(
        "--bulk", metavar="N", type=int, default=5000, help="(b) bulk size (default 5000)"
    )
    parser.add_argument(
        "--campaign", metavar="N", type=int, default=10000, help="(c) campaign size (default 10000)"
    )
    parser.add_argument(
        "--codes",
        metavar="N",
        type=int,
        default=50,
        help="(c) guest codes sent during it (default 50)",
    )
    parser.add_argument(
        "--workers", metavar="N", type=int, default=2, help="(c) worker processes (default 2)"
    )
    parser.add_argument(
        "--concurrency",
        metavar="N",
        type=int,
        default=32,
        help="requests in flight per worker, SMS_WORKER_CONCURRENCY (default 32)",
    )
    parser.add_argument(
        "--latency",
        metavar="SECONDS",
        type=float,
        default=0.0,
        help="(c) seconds the simulator waits before every answer (default 0)",
    )
    args = parser.parse_args(argv)
    counts = (args.single, args.bulk, args.campaign, args.codes)
    if min(counts) < 0 or args.spacing < 0 or not 0 <= args.latency <= 30:
        parser.error("counts and --spacing must not be negative, --latency within 0..30")
    if args.workers < 1 or not 1 <= args.concurrency <= 512:
        parser.error("--workers must be positive, --concurrency within 1..512")
    if not (args.single or args.bulk or args.campaign):
        parser.error("nothing to run: --single, --bulk and --campaign are all 0")
    return args


def run(args: argparse.Namespace) -> None:
    if TEST_KEY != WORKER_KEY:
        raise RuntimeError("make_app and worker_process disagree on SECRET_KEY")
    with ExitStack() as stack:
        # A timeout well past the latency: slow answers must not count as failures.
        timeout = min(60, max(2, math.ceil(args.latency * 3 + 1)))
        app, setup, database_kind, redis_kind = start_services(
            stack, args.database, args.redis, gateway=GATEWAY, timeout=timeout
        )
        database_url, redis_url, queue, sim_url = (
            setup.database_url,
            setup.redis_url,
            setup.queue,
            setup.sim_url,
        )
        print_header(database_kind, redis_kind, app.extensions["sms"].settings.batch_size, args)
        if args.single or args.bulk:
            config = {"SMS_QUEUE": queue, "SMS_WORKER_CONCURRENCY": str(args.concurrency)}
            worker = start_worker(stack, database_url, redis_url, "worker", **config)
            wait_for_workers(redis_url, queue, [worker])
            warm_up(app, sim_url, worker)
            if args.single:
                print_latency(measure_latency(app, sim_url, worker, args.single, args.spacing))
            if args.bulk:
                bulk, bodies = measure_bulk(app, sim_url, worker, args.bulk)
                print_bulk(bulk, measure_bare(sim_url, bodies))
            worker.check()
            worker.stop()  # phase (c) starts a fleet of its own
        if args.campaign:
            plan = campaign_phase.Plan(
                args.campaign, args.codes, args.workers, args.concurrency, args.latency
            )
            outcome = campaign_phase.run_phase(stack, app, setup, plan)
            campaign_phase.print_campaign(outcome)


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
