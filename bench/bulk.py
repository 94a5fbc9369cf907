"""Phase (c) of ``bench/pipeline.py``: a campaign at a real gateway's latency, codes meanwhile.

``send_bulk`` of ``--campaign`` messages (kind ``campaign``) goes through ``--workers`` fresh
worker processes, each keeping ``--concurrency`` requests in flight, to a simulator that answers
after ``--latency`` seconds. Meanwhile another thread, in an app context of its own, sends
``--codes`` guest codes (kind ``otp``, one ``sms.send`` each) spread evenly over the campaign:
code *i* goes out when (i + 1/2)/n of the campaign has settled, so the spread follows the real
duration whatever the machine does (should the campaign stall, a time schedule over its timeout
takes over).

Measured at the simulator, which stamps every request on arrival: the campaign's throughput
(first to last arrival, and ``send_bulk`` called to all settled) next to the bound
``workers * concurrency / latency``; the most requests held at once; each code from ``send``
returning to its arrival; how often every message arrived (once, twice or more, never). Each
worker's memory (``VmRSS`` of its process group: the worker and its children) is read when it
has registered, after the warm-up, at its peak during the campaign, and after it.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import astuple, dataclass, field
from typing import Any

from flask import Flask

from bench.harness import (
    SETTLE_TIMEOUT,
    Arrival,
    Setup,
    WorkerHandle,
    custom_requests,
    machine_cpu,
    offers,
    percentile,
    process_cpu,
    reset_simulator,
    send_one,
    set_latency,
    settled_count,
    simulator_stats,
    sms,
    start_worker,
    statuses,
    verdict,
    wait_for_workers,
    wait_settled,
    wait_simulator_idle,
)
from sms_ext.models import Kind

RATE_TARGETS = {0.2: 400.0, 0.0: 1000.0}
"""Latency (s) -> campaign messages/s the issue asks for (two workers, two cores)."""
CODES_P99_TARGET = 2.0
MEMORY_GROWTH_LIMIT = 0.10
""""Memory flat": a worker's group grows by less than this share from start to after."""
POLL_SECONDS = 0.2
RSS_EVERY = 1.0
CODES_JOIN_TIMEOUT = 60.0
IDLE_TIMEOUT = 30.0
STOP_WAIT = 10.0


@dataclass(frozen=True)
class Plan:
    count: int
    codes: int
    workers: int
    concurrency: int
    latency: float

    @property
    def bound(self) -> float:
        """The most messages per second the fleet can do at this latency (inf at 0)."""
        in_flight = self.workers * self.concurrency
        return in_flight / self.latency if self.latency > 0 else math.inf

    @property
    def timeout(self) -> float:
        """Past this the campaign is reported unfinished: at a fifth of the expected rate (the
        bound, at most 1,000 msg/s), and never under two minutes."""
        return max(120.0, 5 * self.count / min(self.bound, 1000.0))

    @property
    def rate_target(self) -> float | None:
        for latency, rate in RATE_TARGETS.items():
            if math.isclose(self.latency, latency, abs_tol=1e-9):
                return rate
        return None


class Progress:
    """How far the campaign is: written by the main thread, read by the code sender."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.settled = 0
        self.started = time.monotonic()

    @property
    def fraction(self) -> float:
        return self.settled / self.total

    @property
    def running(self) -> bool:
        return self.settled < self.total


@dataclass
class Code:
    ref: str
    returned_at: float
    during: bool
    """Sent while the campaign was still unsettled."""


class CodeSender(threading.Thread):
    """Sends the guest codes on their schedule, in an app context of its own."""

    def __init__(self, app: Flask, plan: Plan, progress: Progress, stop: threading.Event):
        super().__init__(name="codes", daemon=True)
        self.app, self.plan, self.progress, self.stop = app, plan, progress, stop
        self.sent: list[Code] = []
        self.error: BaseException | None = None

    def due(self, index: int) -> bool:
        share = (index + 0.5) / self.plan.codes
        elapsed = time.monotonic() - self.progress.started
        return self.progress.fraction >= share or elapsed >= share * self.plan.timeout

    def run(self) -> None:
        try:
            with self.app.app_context():
                for i in range(self.plan.codes):
                    while not self.due(i):
                        if self.stop.wait(0.01):
                            return
                    during = self.progress.running
                    ref, _, at = send_one(f"+2781{i:07d}", f"Your Wi-Fi code is {i:06d}", Kind.OTP)
                    self.sent.append(Code(str(ref), at, during))
        except BaseException as exc:  # reported by the main thread
            self.error = exc


@dataclass
class Memory:
    """One worker's ``VmRSS`` (kB) as (main process, children) at each moment."""

    registered: tuple[int, int] = (0, 0)
    start: tuple[int, int] = (0, 0)
    peak: int = 0
    after: tuple[int, int] = (0, 0)


@dataclass
class CpuUse:
    """CPU seconds (and the wall clock) over the campaign, by whom: what tells a slow engine
    from a busy machine."""

    workers: float
    simulator: float
    bench: float
    machine_busy: float
    machine_total: float
    wall: float

    def __sub__(self, other: CpuUse) -> CpuUse:
        return CpuUse(*(a - b for a, b in zip(astuple(self), astuple(other), strict=True)))


@dataclass
class Outcome:
    plan: Plan
    ids: list[int]
    codes: list[Code]
    called: float
    returned: float
    settled_at: float
    complete: bool
    requests: list[Arrival]
    stats: dict[str, Any]
    campaign_status: dict[str, int]
    codes_status: dict[str, int]
    cpu: CpuUse
    memory: list[Memory]
    workers: list[WorkerHandle]
    problems: list[str] = field(default_factory=list)


# -- running it ----------------------------------------------------------------------------------


def run_phase(stack: ExitStack, app: Flask, setup: Setup, plan: Plan) -> Outcome:
    """Start the fleet, warm it up, run the campaign with its codes; the stack stops the fleet."""
    workers = [
        start_worker(
            stack,
            setup.database_url,
            setup.redis_url,
            f"worker {n + 1}",
            SMS_QUEUE=setup.queue,
            SMS_WORKER_CONCURRENCY=str(plan.concurrency),
        )
        for n in range(plan.workers)
    ]
    wait_for_workers(setup.redis_url, setup.queue, workers)
    memory = [Memory(registered=w.rss_kb()) for w in workers]
    set_latency(setup.sim_url, plan.latency)
    warm_up(app, setup.sim_url, workers)
    for worker, mem in zip(workers, memory, strict=True):
        mem.start = worker.rss_kb()
        mem.peak = sum(mem.start)
    return measure(app, setup, workers, memory, plan)


def warm_up(app: Flask, sim_url: str, workers: Sequence[WorkerHandle]) -> None:
    """A batch per worker and a few codes: thread pools, connections and imports are paid for
    before memory is read and the clock starts."""
    batch = app.extensions["sms"].settings.batch_size
    with app.app_context():
        ids = sms.send_bulk(
            [(f"+2782{i:07d}", f"warm-up {i}") for i in range(batch * len(workers))],
            kind=Kind.CAMPAIGN,
        )
        ids += [
            send_one(f"+2784{i:07d}", f"warm-up code {i}", Kind.OTP)[0]
            for i in range(2 * len(workers))
        ]
    if not wait_settled(app, ids, workers, SETTLE_TIMEOUT * 2):
        raise TimeoutError(f"the campaign warm-up was not delivered in {SETTLE_TIMEOUT * 2} s")
    wait_simulator_idle(sim_url, IDLE_TIMEOUT)
    reset_simulator(sim_url)


def cpu_now(workers: Sequence[WorkerHandle], setup: Setup) -> CpuUse:
    busy, total = machine_cpu()
    return CpuUse(
        workers=sum(w.cpu_seconds() for w in workers),
        simulator=process_cpu(setup.sim_pid),
        bench=time.process_time(),
        machine_busy=busy,
        machine_total=total,
        wall=time.monotonic(),
    )


def measure(
    app: Flask, setup: Setup, workers: list[WorkerHandle], memory: list[Memory], plan: Plan
) -> Outcome:
    """The campaign, from ``send_bulk`` to the last code; what the simulator saw after."""
    sim_url = setup.sim_url
    recipients = offers(plan.count)
    cpu_before = cpu_now(workers, setup)
    problems: list[str] = []
    stop = threading.Event()
    with app.app_context():
        called = time.time()
        ids = sms.send_bulk(recipients, kind=Kind.CAMPAIGN)
        returned = time.time()
    progress = Progress(plan.count)
    sender = CodeSender(app, plan, progress, stop)
    sender.start()
    try:
        complete = follow(app, ids, workers, memory, progress, plan.timeout)
        settled_at = time.time()
        cpu = cpu_now(workers, setup) - cpu_before
        sender.join(CODES_JOIN_TIMEOUT)
    finally:
        stop.set()
        sender.join(STOP_WAIT)  # a send in progress finishes; no new one starts
    if sender.error is not None:
        problems.append(f"the code sender failed: {sender.error!r}")
    if sender.is_alive():
        problems.append(f"the code sender was still sending after {CODES_JOIN_TIMEOUT:.0f} s")
    code_ids = [int(code.ref) for code in sender.sent]
    if code_ids:
        settle_codes(app, code_ids, workers)
    if not wait_simulator_idle(sim_url, IDLE_TIMEOUT):
        problems.append(f"the simulator still held requests after {IDLE_TIMEOUT:.0f} s")
    for worker, mem in zip(workers, memory, strict=True):
        mem.after = worker.rss_kb()
    for worker in workers:
        if worker.exited():
            problems.append(worker.last_words())
    return Outcome(
        plan=plan,
        ids=ids,
        codes=sender.sent,
        called=called,
        returned=returned,
        settled_at=settled_at,
        complete=complete,
        requests=custom_requests(sim_url),
        stats=simulator_stats(sim_url),
        campaign_status=statuses(app, ids),
        codes_status=statuses(app, code_ids) if code_ids else {},
        cpu=cpu,
        memory=memory,
        workers=workers,
        problems=problems,
    )


def follow(
    app: Flask,
    ids: Sequence[int],
    workers: Sequence[WorkerHandle],
    memory: Sequence[Memory],
    progress: Progress,
    timeout: float,
) -> bool:
    """Until the campaign has settled (``True``), the timeout passed or no worker is left;
    reads the workers' memory every second meanwhile."""
    deadline = time.monotonic() + timeout
    next_rss = time.monotonic()
    while True:
        progress.settled = settled_count(app, ids)
        if not progress.running:
            return True
        if time.monotonic() > deadline or all(w.exited() for w in workers):
            return False
        if time.monotonic() >= next_rss:
            next_rss += RSS_EVERY
            for worker, mem in zip(workers, memory, strict=True):
                mem.peak = max(mem.peak, sum(worker.rss_kb()))
        time.sleep(POLL_SECONDS)


def settle_codes(app: Flask, ids: Sequence[int], workers: Sequence[WorkerHandle]) -> None:
    """Give the last codes time to go out (bounded); what is left shows in the counts."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while settled_count(app, ids) < len(ids) and time.monotonic() < deadline:
        if all(w.exited() for w in workers):
            return
        time.sleep(POLL_SECONDS)


# -- report --------------------------------------------------------------------------------------


def delivery_counts(refs: Sequence[str], seen: Counter[str]) -> dict[str, int]:
    """How many of ``refs`` arrived once, more than once (and the extra requests), never."""
    counts = [seen.get(ref, 0) for ref in refs]
    return {
        "once": sum(1 for c in counts if c == 1),
        "twice+": sum(1 for c in counts if c > 1),
        "extra": sum(c - 1 for c in counts if c > 1),
        "never": sum(1 for c in counts if c == 0),
    }


@dataclass
class Figures:
    """What the report says, computed from an :class:`Outcome`."""

    window: float
    """First to last arrival of the campaign (s)."""
    rate: float
    """Campaign messages per second over ``window``."""
    total: float
    """``send_bulk`` called to every campaign message settled (s)."""
    arrived: int
    non_200: int
    campaign_counts: dict[str, int]
    code_counts: dict[str, int]
    code_latencies: list[float]
    """Each code from ``send`` returning to its first arrival (s), sorted."""
    codes_during: int
    """Codes sent while the campaign was unsettled and arrived before its last message."""

    @property
    def p99(self) -> float:
        return percentile(self.code_latencies, 0.99)


def figures(outcome: Outcome) -> Figures:
    first: dict[str, float] = {}
    for arrival in outcome.requests:
        first[arrival.ref] = min(first.get(arrival.ref, math.inf), arrival.received_at)
    seen = Counter(arrival.ref for arrival in outcome.requests)
    campaign_refs = {str(i) for i in outcome.ids}
    times = sorted(first[ref] for ref in campaign_refs if ref in first)
    window = times[-1] - times[0] if len(times) > 1 else math.nan
    last_arrival = times[-1] if times else math.inf
    codes = outcome.codes
    return Figures(
        window=window,
        rate=len(times) / window if window > 0 else 0.0,
        total=outcome.settled_at - outcome.called,
        arrived=len(times),
        non_200=sum(1 for a in outcome.requests if a.ref in campaign_refs and a.status != 200),
        campaign_counts=delivery_counts(sorted(campaign_refs), seen),
        code_counts=delivery_counts([c.ref for c in codes], seen),
        code_latencies=sorted(first[c.ref] - c.returned_at for c in codes if c.ref in first),
        codes_during=sum(1 for c in codes if c.during and first.get(c.ref, 0) <= last_arrival),
    )


def print_campaign(outcome: Outcome) -> None:
    plan, fig = outcome.plan, figures(outcome)
    print(
        f"(c) campaign: send_bulk of {plan.count} (kind campaign) through {plan.workers} "
        f"worker(s), {plan.concurrency} in flight each, gateway latency "
        f"{plan.latency * 1000:.0f} ms; {plan.codes} codes (kind otp) spread over it"
    )
    overall = plan.count / fig.total if outcome.complete else math.nan
    late = "" if outcome.complete else f"  (NOT all settled in {plan.timeout:.0f} s)"
    bound = f"{plan.bound:.0f} msg/s" if math.isfinite(plan.bound) else "none at 0 latency"
    print(f"    send_bulk (insert + enqueue)    {(outcome.returned - outcome.called):7.2f} s")
    print(f"    first -> last arrival           {fig.window:7.2f} s  {fig.rate:7.0f} msg/s")
    print(f"    send_bulk called -> all settled {fig.total:7.2f} s  {overall:7.0f} msg/s{late}")
    print(f"    bound workers*concurrency/latency: {bound}")
    print(
        f"    arrived {fig.arrived}/{plan.count}, non-200 answers {fig.non_200}; "
        f"statuses {outcome.campaign_status}"
    )
    stats = outcome.stats
    print(
        f"    simulator: max in flight {stats['max_in_flight']}, "
        f"most arrivals in 1 s {stats['targets']['custom']['max_per_second']}"
    )
    print(f"    at the simulator, campaign: {format_counts(fig.campaign_counts)}")
    if plan.codes:
        print(f"    at the simulator, codes   : {format_counts(fig.code_counts)}")
    print_cpu(outcome.cpu, plan.count)
    latencies = fig.code_latencies
    if plan.codes:
        print(
            f"    codes, send() returned -> gateway: p50 {percentile(latencies, 0.5) * 1000:.0f} "
            f"ms, p99 {fig.p99 * 1000:.0f} ms, max {max(latencies, default=math.nan) * 1000:.0f} "
            f"ms; arrived {len(latencies)}/{plan.codes}, {fig.codes_during} sent and arrived "
            f"while the campaign ran; statuses {outcome.codes_status}"
        )
    flat = print_memory(outcome)
    print_targets(outcome, fig, flat)
    for problem in outcome.problems:
        print(f"    PROBLEM: {problem}")
    print(flush=True)


def print_targets(outcome: Outcome, fig: Figures, flat: bool) -> None:
    plan = outcome.plan
    print("    targets:")
    target = plan.rate_target
    if target is None:
        print(f"      campaign rate: no target at {plan.latency:g} s latency")
    else:
        fleet = "" if plan.workers == 2 else f" (set for two workers, this run {plan.workers})"
        print(
            f"      >= {target:.0f} msg/s at {plan.latency:g} s latency, first -> last arrival: "
            f"{fig.rate:.0f} msg/s  {verdict(fig.rate >= target)}{fleet}"
        )
        if plan.bound < target:
            print(
                f"      (the bound {plan.bound:.0f} msg/s is below the target: "
                "raise --concurrency or --workers)"
            )
    if plan.codes:
        print(f"      codes p99 < {CODES_P99_TARGET:g} s: {verdict(fig.p99 < CODES_P99_TARGET)}")
    once = (
        outcome.complete
        and fig.campaign_counts["once"] == plan.count
        and fig.code_counts["once"] == len(outcome.codes) == plan.codes
    )
    print(f"      every message sent exactly once: {verdict(once)}")
    print(f"      memory flat (< {MEMORY_GROWTH_LIMIT:.0%} growth from start): {verdict(flat)}")


def print_cpu(cpu: CpuUse, count: int) -> None:
    """Who used the CPU from ``send_bulk`` to the campaign settled (codes included)."""
    cores = cpu.machine_total / cpu.wall if cpu.wall > 0 else math.nan
    others = cpu.machine_busy - cpu.workers - cpu.simulator - cpu.bench
    print(
        f"    CPU over those {cpu.wall:.1f} s ({cores:.1f} cores): machine busy "
        f"{cpu.machine_busy / cpu.machine_total:.0%}; workers {cpu.workers:.1f} s "
        f"({cpu.workers * 1000 / count:.2f} ms per message), simulator {cpu.simulator:.1f} s, "
        f"this process {cpu.bench:.1f} s, the rest {others:.1f} s (database, Redis, others)"
    )


def format_counts(counts: dict[str, int]) -> str:
    return (
        f"once {counts['once']}, twice or more {counts['twice+']} "
        f"({counts['extra']} extra requests), never {counts['never']}"
    )


def print_memory(outcome: Outcome) -> bool:
    """The workers' memory table; ``True`` when every worker stayed flat."""
    print("    worker memory, VmRSS in MB (main + children):")
    print(f"      {'':24} {'registered':>13} {'start':>13} {'peak':>7} {'after':>13} {'growth':>7}")
    flat = True
    for worker, mem in zip(outcome.workers, outcome.memory, strict=True):
        start, after = sum(mem.start), sum(mem.after)
        growth = (after - start) / start if start else math.nan
        flat = flat and growth < MEMORY_GROWTH_LIMIT
        name = f"{worker.name} (pid {worker.process.pid})"
        print(
            f"      {name:24} {pair(mem.registered):>13} {pair(mem.start):>13} "
            f"{mem.peak / 1024:7.1f} {pair(mem.after):>13} {growth:+7.1%}"
        )
    return flat


def pair(kb: tuple[int, int]) -> str:
    return f"{kb[0] / 1024:.1f}+{kb[1] / 1024:.1f}"
