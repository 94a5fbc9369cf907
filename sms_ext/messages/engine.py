"""A delivery run: many gateway requests in flight, rows settled as their answers arrive.

A worker runs one RQ job at a time, but a job keeps up to ``SMS_WORKER_CONCURRENCY``
requests in flight on a thread pool over kept-alive connections; the job's own thread does all
database work: it claims rows, settles finished ones in small groups every few tens of
milliseconds, renews the lease of the rest, and looks for guest codes to send meanwhile.

Guest codes and test sends (urgent kinds) run on a lane of their own threads, so they never
queue behind a campaign's requests; a worker busy with bulk work checks the "urgent pending"
flag between answers and claims those rows itself.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC
from queue import Empty, SimpleQueue

from sqlalchemy.exc import SQLAlchemyError

from .. import runtime
from ..gateways.http import http_session
from ..models import Gateway, Message, utcnow
from ..state import SMSState
from . import outbox
from .delivery import Claim, claim, expire, log_attempts, renew, settle
from .routing import Drivers, Round, tasks, walk

log = logging.getLogger("sms_ext")

POLL_SECONDS = 0.05
"""How long the job's thread waits for answers before settling, renewing and looking for codes."""
SETTLE_SECONDS = 0.2
SETTLE_BATCH = 50
"""Answers are recorded once this many are in, or the oldest has waited ``SETTLE_SECONDS``:
a transaction per answer would cost more than the sending, and a crash loses at most these."""
URGENT_CHECK_SECONDS = 0.1
"""How often a busy worker asks Redis whether guest codes are waiting."""


def urgent_lane_size(concurrency: int) -> int:
    """Threads reserved for guest codes and test sends, besides the bulk pool."""
    return max(4, concurrency // 4)


@dataclass
class _Pools:
    pid: int
    size: int
    bulk: ThreadPoolExecutor
    urgent: ThreadPoolExecutor


_pools: _Pools | None = None


def _process_pools(concurrency: int) -> _Pools:
    """The thread pools of this process, made once (and anew in a forked child)."""
    global _pools
    if _pools is None or _pools.pid != os.getpid() or _pools.size != concurrency:
        if _pools is not None and _pools.pid == os.getpid():
            _pools.bulk.shutdown(wait=False)
            _pools.urgent.shutdown(wait=False)
        _pools = _Pools(
            os.getpid(),
            concurrency,
            ThreadPoolExecutor(concurrency, thread_name_prefix="sms-send"),
            ThreadPoolExecutor(urgent_lane_size(concurrency), thread_name_prefix="sms-urgent"),
        )
    return _pools


@dataclass
class _Outcome:
    claimed: int = 0
    sent: int = 0
    expired: int = 0
    retry: int = 0
    failed: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


Task = tuple[list[Message], list[Gateway]]


@dataclass
class Run:
    """One job's delivery: claimed rows go in, settled rows come out."""

    state: SMSState
    poll_urgent: bool
    outcome: _Outcome = field(default_factory=_Outcome)
    _backlog: deque[tuple[str, Task]] = field(default_factory=deque)
    _running: dict[Future[list[Round]], tuple[str, bool]] = field(default_factory=dict)
    _finished: list[tuple[str, Round]] = field(default_factory=list)
    _tokens: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        settings = self.state.settings
        self._concurrency = settings.worker_concurrency
        self._pools = _process_pools(self._concurrency)
        pool_size = self._concurrency + urgent_lane_size(self._concurrency)
        http = http_session(pool_size, deny_private=settings.gateway_deny_private)
        self._drivers = Drivers(self.state.vault, http, settings.public_hooks_url)
        self._health = self.state.gateway_health
        session = self.state.session
        self._gateways = list(session.scalars(Gateway.in_order()))
        for gateway in self._gateways:
            session.expunge(gateway)  # read by pool threads: never lazily reloaded
        self._renew_every = settings.lease_seconds / 3
        self._renewed_at = time.monotonic()
        self._urgent_checked_at = 0.0
        self._failing_since: float | None = None
        self._done: SimpleQueue[Future[list[Round]]] = SimpleQueue()
        self._bulk_in_flight = 0
        self._oldest_finished = 0.0

    # -- input ------------------------------------------------------------------------------

    def add(self, taken: Claim) -> None:
        """Queue the claimed rows for sending (the expired ones fail at once)."""
        if not taken.messages:
            return
        self.outcome.claimed += len(taken.messages)
        now = utcnow()
        expired = [m for m in taken.messages if m.expires_at <= now]
        if expired:
            expire(self.state.session, expired, now)
            self.outcome.expired += len(expired)
        live = [m for m in taken.messages if m.expires_at > now]
        if not live:
            return
        self._tokens.add(taken.token)
        urgent = [m for m in live if m.kind in outbox.URGENT_KINDS]
        for task in tasks(urgent, self._gateways, self._drivers):
            self._submit(taken.token, task, urgent=True)
        ordinary = [m for m in live if m.kind not in outbox.URGENT_KINDS]
        for task in tasks(ordinary, self._gateways, self._drivers):
            self._backlog.append((taken.token, task))

    def claim_urgent(self) -> int:
        """Claim due guest codes and test sends (up to a batch); returns how many."""
        taken = claim(
            self.state.session,
            lease_seconds=self.state.settings.lease_seconds,
            kinds=outbox.URGENT_KINDS,
            limit=self.state.settings.batch_size,
        )
        self.add(taken)
        return len(taken.messages)

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> None:
        """Send everything added (and urgent work found meanwhile) and settle it."""
        while self._running or self._backlog or self._finished:
            self._fill()
            self._collect()
            if self._settle_due():
                self._settle_finished()
            self._renew_if_due()
            if self.poll_urgent:
                self._look_for_urgent()

    def _submit(self, token: str, task: Task, *, urgent: bool) -> None:
        pool = self._pools.urgent if urgent else self._pools.bulk
        future = pool.submit(walk, self._drivers, self._health, task[0], task[1])
        self._running[future] = (token, urgent)
        self._bulk_in_flight += not urgent
        future.add_done_callback(self._done.put)

    def _fill(self) -> None:
        """Keep the bulk pool busy without queueing more than it can run at once."""
        while self._backlog and self._bulk_in_flight < self._concurrency:
            token, task = self._backlog.popleft()
            self._submit(token, task, urgent=False)

    def _collect(self) -> None:
        """Take in every finished task, waiting a moment for the first."""
        if not self._running:
            return
        try:
            future = self._done.get(timeout=POLL_SECONDS)
        except Empty:
            return
        while True:
            token, urgent = self._running.pop(future)
            self._bulk_in_flight -= not urgent
            if not self._finished:
                self._oldest_finished = time.monotonic()
            self._finished.extend((token, r) for r in future.result())
            try:
                future = self._done.get_nowait()
            except Empty:
                return

    def _settle_due(self) -> bool:
        if not self._finished:
            return False
        return (
            len(self._finished) >= SETTLE_BATCH
            or not self._running
            or time.monotonic() - self._oldest_finished >= SETTLE_SECONDS
        )

    def _settle_finished(self) -> None:
        """Record what came back, one transaction per claim. A database error keeps the rounds
        for the next pass while the lease lasts; past it the job gives up (the sweeper then
        owns the rows)."""
        by_token: dict[str, list[Round]] = {}
        for token, round_ in self._finished:
            by_token.setdefault(token, []).append(round_)
        self._finished = []
        for token, rounds in by_token.items():
            try:
                self._settle(token, rounds)
            except SQLAlchemyError as exc:
                self.state.session.rollback()
                self._finished.extend((token, r) for r in rounds)
                self._database_trouble(exc)
        if not self._finished:
            self._failing_since = None

    def _database_trouble(self, exc: SQLAlchemyError) -> None:
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
            log.warning("could not record results (%s); trying again", exc)
        elif now - self._failing_since > self.state.settings.lease_seconds:
            raise exc
        time.sleep(0.5)

    def _settle(self, token: str, rounds: Sequence[Round]) -> None:
        if runtime.current(self.state).debug_logging:
            log_attempts(rounds)
        retries = settle(self.state, token, rounds, utcnow())
        kinds = {r.message.id: r.message.kind for r in rounds}
        for due, (job_id, ids) in retries.items():
            urgent = any(kinds[i] in outbox.URGENT_KINDS for i in ids)
            queue = self.state.urgent_queue if urgent else self.state.queue
            outbox.enqueue(queue, job_id, ids, at=due.replace(tzinfo=UTC))
        sent = sum(1 for r in rounds if r.success)
        retried = sum(len(ids) for _, ids in retries.values())
        self.outcome.sent += sent
        self.outcome.retry += retried
        self.outcome.failed += len(rounds) - sent - retried

    def _renew_if_due(self) -> None:
        """Keep the claims alive while requests are out: the sweeper must not take them."""
        if time.monotonic() - self._renewed_at < self._renew_every:
            return
        self._renewed_at = time.monotonic()
        live = {token for token, _ in self._running.values()}
        live |= {token for token, _ in self._backlog} | {t for t, _ in self._finished}
        try:
            for token in live:
                renew(self.state.session, token, self.state.settings.lease_seconds)
        except SQLAlchemyError as exc:
            self.state.session.rollback()
            log.warning("could not renew the lease of messages being sent (%s)", exc)

    def _look_for_urgent(self) -> None:
        if time.monotonic() - self._urgent_checked_at < URGENT_CHECK_SECONDS:
            return
        self._urgent_checked_at = time.monotonic()
        try:
            waiting = self.state.redis.exists(outbox.urgent_flag(self.state))
        except Exception:  # Redis down: urgent work waits for the sweeper, bulk goes on
            return
        if waiting:
            self.claim_urgent()


def deliver(state: SMSState, ids: Sequence[int]) -> dict[str, int]:
    """Claim the due, queued rows among ``ids`` and deliver them; counts for the job result."""
    run = Run(state, poll_urgent=True)
    run.add(claim(state.session, lease_seconds=state.settings.lease_seconds, ids=ids))
    run.run()
    return run.outcome.as_dict()


def deliver_urgent(state: SMSState) -> dict[str, int]:
    """Deliver every due guest code and test send, as long as more keep coming.

    The flag is cleared before the last look, so a code committed after that look enqueues a
    job of its own (see :func:`~sms_ext.messages.outbox.wake_urgent`).
    """
    run = Run(state, poll_urgent=True)
    run.claim_urgent()
    while True:
        run.run()
        state.redis.delete(outbox.urgent_flag(state))
        if not run.claim_urgent():
            return run.outcome.as_dict()
