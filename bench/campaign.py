"""Campaign benchmark: ``python bench/campaign.py [--database URL] [--redis URL] [--sizes
20000,100000] [--latencies 0,0.2] [--workers 2] [--concurrency 32] [--codes 50]``.

For each audience size and gateway latency: a marketing campaign over a generated audience of
valid UK and Spanish mobiles (every 25th opted out by the host, every 10th without consent, one
in 50 on the opt-out list) through ``--workers`` fresh worker processes, to the simulator, with
guest codes sent meanwhile (spread over the campaign as ``bench/bulk.py`` spreads them).

Measured: the time to expand (the runner started -> every held row inserted, from the
database), messages per second delivered (first -> last arrival at the simulator), each
worker's peak memory (``VmRSS`` of its process group, read every second: compare the sizes to
see it is flat in recipients), the p99 of guest codes (``send`` returned -> arrival), and how
often each campaign message and each recipient arrived (once, twice, never).
"""

from __future__ import annotations

import argparse
import io
import math
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa
from flask import Flask

from bench import bulk
from bench.harness import (
    Setup,
    _interrupt,
    custom_requests,
    engine,
    percentile,
    reset_simulator,
    set_latency,
    sms,
    start_services,
    start_worker,
    verdict,
    wait_for_workers,
    wait_simulator_idle,
)
from sms_ext import CampaignSpec
from sms_ext.models import Campaign, Message, Status, metadata
from tests.campaign_app import ListSource, generated

EXPAND_TARGET = 10.0
"""Seconds to expand 100,000 recipients (the issue's target)."""
CODES_P99_TARGET = 1.0
LISTED_EVERY = 50
"""One recipient in this many is on the opt-out list as well."""
POLL = 0.2
APP = "tests.campaign_app:create_app()"


@dataclass
class Run:
    size: int
    latency: float
    wanted: int = 0
    expand_seconds: float = math.nan
    rate: float = math.nan
    total_seconds: float = math.nan
    peak_mb: list[float] | None = None
    start_mb: list[float] | None = None
    codes_p99: float = math.nan
    codes_arrived: int = 0
    codes: int = 0
    once: dict[str, int] | None = None
    status: str = ""
    complete: bool = False


def listed(size: int) -> list[str]:
    """The numbers also put on the opt-out list."""
    return [person.phone for i, person in enumerate(generated(size)) if i % LISTED_EVERY == 7]


def wanted_count(size: int) -> int:
    out = set(listed(size))
    return sum(
        1
        for person in generated(size)
        if not person.opted_out and person.marketing_consent and person.phone not in out
    )


def empty(app: Flask) -> None:
    with engine(app).begin() as connection:
        for table in reversed(metadata.sorted_tables):
            if table.name != "sms_gateway":
                connection.execute(table.delete())


def campaign_state(app: Flask, campaign_id: int) -> tuple[str, bool, datetime | None]:
    with engine(app).connect() as connection:
        row = connection.execute(
            sa.select(Campaign.status, Campaign.expanded, Campaign.started_at).where(
                Campaign.id == campaign_id
            )
        ).one()
    return row.status, row.expanded, row.started_at


def one_run(app: Flask, setup: Setup, run: Run, args: argparse.Namespace) -> Run:
    empty(app)
    reset_simulator(setup.sim_url)
    set_latency(setup.sim_url, run.latency)
    os.environ["CAMPAIGN_AUDIENCE"] = str(run.size)  # the workers' audience source
    sms.campaign_audience(ListSource(size=run.size))
    with app.app_context():
        sms.opt_outs.import_csv(io.StringIO("\n".join(listed(run.size))))
    run.wanted = wanted_count(run.size)
    with ExitStack() as fleet:
        workers = [
            start_worker(
                fleet,
                setup.database_url,
                setup.redis_url,
                f"worker {n + 1}",
                app=APP,
                SMS_QUEUE=setup.queue,
                SMS_WORKER_CONCURRENCY=str(args.concurrency),
            )
            for n in range(args.workers)
        ]
        wait_for_workers(setup.redis_url, setup.queue, workers)
        run.start_mb = [sum(w.rss_kb()) / 1024 for w in workers]
        peaks = list(run.start_mb)
        plan = bulk.Plan(run.wanted, args.codes, args.workers, args.concurrency, run.latency)
        progress = bulk.Progress(run.wanted)
        stop = threading.Event()
        sender = bulk.CodeSender(app, plan, progress, stop)
        with app.app_context():
            campaign = sms.campaigns.create(
                CampaignSpec(
                    name=f"Bench {run.size}",
                    purpose="marketing",
                    body="Hi {{ name }}, this week at {{ location }}: 2 for 1. {{ opt_out }}",
                )
            )
            campaign_id = campaign.id
            began = time.time()
            sms.campaigns.start(campaign_id)
        sender.start()
        deadline = time.monotonic() + plan.timeout + 60
        expanded_seen = math.nan
        try:
            while time.monotonic() < deadline:
                status, expanded, started = campaign_state(app, campaign_id)
                if expanded and math.isnan(expanded_seen):
                    expanded_seen = time.time()
                    # started_at is naive UTC, stamped by the worker's clock (the same machine)
                    run.expand_seconds = expanded_seen - started.replace(tzinfo=UTC).timestamp()
                progress.settled = settled(app, campaign_id)
                peaks = [
                    max(p, sum(w.rss_kb()) / 1024) for p, w in zip(peaks, workers, strict=True)
                ]
                if status == "done":
                    run.complete = True
                    break
                for worker in workers:
                    worker.check()
                time.sleep(POLL)
            run.total_seconds = time.time() - began
            run.status = status
            sender.join(bulk.CODES_JOIN_TIMEOUT)
        finally:
            stop.set()
            sender.join(bulk.STOP_WAIT)
        wait_simulator_idle(setup.sim_url, 60)
        run.peak_mb = peaks
        report_arrivals(app, setup, run, campaign_id, sender.sent)
    return run


def settled(app: Flask, campaign_id: int) -> int:
    query = sa.select(sa.func.count()).where(
        Message.campaign_id == campaign_id,
        Message.status.in_((Status.SENT, Status.DELIVERED, Status.UNDELIVERED, Status.FAILED)),
    )
    with engine(app).connect() as connection:
        return int(connection.scalar(query) or 0)


def report_arrivals(
    app: Flask, setup: SimpleNamespace, run: Run, campaign_id: int, codes: Sequence[bulk.Code]
) -> None:
    with engine(app).connect() as connection:
        ids = {
            str(i): to
            for i, to in connection.execute(
                sa.select(Message.id, Message.to).where(Message.campaign_id == campaign_id)
            )
        }
    arrivals = custom_requests(setup.sim_url)
    seen = Counter(a.ref for a in arrivals)
    first: dict[str, float] = {}
    for arrival in arrivals:
        first[arrival.ref] = min(first.get(arrival.ref, math.inf), arrival.received_at)
    times = sorted(first[ref] for ref in ids if ref in first)
    if len(times) > 1:
        run.rate = len(times) / (times[-1] - times[0])
    phones = Counter(ids[ref] for ref, n in seen.items() if ref in ids for _ in range(n))
    counts = [seen.get(ref, 0) for ref in ids]
    run.once = {
        "messages": len(ids),
        "once": sum(1 for c in counts if c == 1),
        "twice+": sum(1 for c in counts if c > 1),
        "never": sum(1 for c in counts if c == 0),
        "phones twice+": sum(1 for n in phones.values() if n > 1),
    }
    latencies = sorted(first[c.ref] - c.returned_at for c in codes if c.ref in first)
    run.codes, run.codes_arrived = len(codes), len(latencies)
    run.codes_p99 = percentile(latencies, 0.99)


def print_run(run: Run) -> None:
    once = run.once or {}
    print(
        f"{run.size:>7} recipients, latency {run.latency * 1000:>3.0f} ms: "
        f"{run.wanted} to text ({run.size - run.wanted} excluded); status {run.status}"
    )
    target = verdict(run.expand_seconds < EXPAND_TARGET * run.size / 100_000)
    print(f"    expand                 {run.expand_seconds:7.2f} s   (target scaled: {target})")
    print(f"    delivered              {run.rate:7.0f} msg/s (first -> last arrival)")
    print(f"    start -> done          {run.total_seconds:7.2f} s")
    mem = ", ".join(
        f"{s:.0f} -> {p:.0f}" for s, p in zip(run.start_mb or [], run.peak_mb or [], strict=True)
    )
    print(f"    worker RSS MB (start -> peak): {mem}")
    print(
        f"    codes p99 {run.codes_p99 * 1000:.0f} ms ({run.codes_arrived}/{run.codes} arrived); "
        f"target < {CODES_P99_TARGET:g} s: {verdict(run.codes_p99 < CODES_P99_TARGET)}"
    )
    exactly = (
        run.complete
        and once.get("messages") == run.wanted
        and once.get("once") == run.wanted
        and once.get("phones twice+") == 0
    )
    print(f"    at the simulator: {once}; every message exactly once: {verdict(exactly)}")
    print(flush=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", metavar="URL", help="PostgreSQL URL (default: SQLite)")
    parser.add_argument("--redis", metavar="URL", help="Redis URL (default: a private one)")
    parser.add_argument("--sizes", default="20000,100000", help="audience sizes, comma-separated")
    parser.add_argument(
        "--latencies", default="0,0.2", help="gateway latencies (s), comma-separated"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--codes", type=int, default=50)
    args = parser.parse_args(argv)
    try:
        args.sizes = [int(v) for v in args.sizes.split(",")]
        args.latencies = [float(v) for v in args.latencies.split(",")]
    except ValueError:
        parser.error("--sizes and --latencies are comma-separated numbers")
    if min(args.sizes) < 1 or not all(0 <= v <= 30 for v in args.latencies):
        parser.error("sizes must be positive, latencies within 0..30")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with ExitStack() as stack:
            app, setup, database_kind, redis_kind = start_services(
                stack, args.database, args.redis, gateway="bench", timeout=5
            )
            print(f"Database: {database_kind}\nRedis: {redis_kind}")
            print(f"{args.workers} worker(s), {args.concurrency} requests in flight each\n")
            for latency in args.latencies:
                for size in args.sizes:
                    print_run(one_run(app, setup, Run(size, latency), args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
