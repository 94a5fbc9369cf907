"""The sweeper: the safety net that makes the database, not Redis, the source of truth.

It takes back messages stuck in ``sending`` past their lease (a worker died mid-send) and
re-enqueues ``queued`` messages whose delivery job is lost: gone from Redis (Redis was down or
flushed when they were enqueued), or taken by a worker that died before claiming them. A job
that will still run is left alone, so a long campaign backlog is not enqueued twice.
"""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import timedelta

from rq import Queue
from rq.job import Job, JobStatus
from rq.utils import as_text
from sqlalchemy import select

from ..campaigns import runner as campaign_runner
from ..models import Message, Status, utcnow
from ..state import SMSState
from . import outbox, receipts
from .delivery import release

GRACE_SECONDS = 5
"""Rows younger than this may still be on their way to Redis (the after-commit enqueue)."""
SCAN_LIMIT = 100_000
WAITING = {JobStatus.SCHEDULED, JobStatus.DEFERRED}
"""Job states that will run later by themselves (a queued job must also be on its queue)."""
POPPED_GRACE_SECONDS = 0.5
"""How long a queued job found on no queue may take to show as started (see _alive_jobs)."""
LIVENESS_TTL = 10
"""Seconds a worker's liveness key outlives its last refresh (its keeper refreshes it every
second): a started job whose worker's key is gone is lost."""


def recover_stale_sends(state: SMSState) -> int:
    """Put messages whose sending worker's lease ran out back in the queue.

    Delivery is at-least-once here: a worker that died after the provider accepted a message
    but before recording it cannot tell us, so such a message may be sent again.
    """
    return release(
        state.session,
        Message.claimed_until < utcnow(),
        status=Status.QUEUED,
        job_id=None,
        last_error="The worker sending it stopped; sent again.",
    )


def liveness_key(worker_name: str) -> str:
    """The Redis key a running worker refreshes under its RQ name (see ``worker.Keeper``)."""
    return f"sms_ext:worker:{worker_name}:alive"


def _alive_jobs(state: SMSState, job_ids: list[str]) -> set[str]:
    """The jobs among ``job_ids`` that will still run: on their queue, scheduled or deferred,
    or started by a worker that is alive.

    RQ's status alone would keep a message waiting for good: a worker that dies after popping
    a job off its queue and before starting it leaves it ``queued`` on no queue, and one that
    dies while running it leaves it ``started`` until RQ's cleanup notices, many minutes later
    (or never, when the job was popped by a worker whose Redis went away). A live worker starts
    a job it popped within milliseconds, so a queued job found on no queue is looked at again
    after :data:`POPPED_GRACE_SECONDS`. Judging wrongly that a job is lost costs a duplicate job
    and nothing else: rows are claimed once.
    """
    redis = state.redis
    alive: set[str] = set()
    started: list[Job] = []
    popped: list[str] = []
    for again in (False, True):
        on_queue: dict[str, set[str]] = {}
        for job in _fetch(state, popped if again else job_ids):
            status = job.get_status(refresh=False)
            if status in WAITING:
                alive.add(job.id)
            elif status == JobStatus.STARTED:
                started.append(job)
            elif status == JobStatus.QUEUED:
                if job.origin not in on_queue:
                    key = Queue(job.origin, connection=redis).key
                    on_queue[job.origin] = {as_text(i) for i in redis.lrange(key, 0, -1)}
                if job.id in on_queue[job.origin]:
                    alive.add(job.id)
                elif not again:
                    popped.append(job.id)
        if again or not popped:
            break
        time.sleep(POPPED_GRACE_SECONDS)
    names = sorted({job.worker_name for job in started if job.worker_name})
    keys = [liveness_key(name) for name in names]
    living = {
        name for name, seen in zip(names, redis.mget(keys) if keys else [], strict=True) if seen
    }
    # A started job without a worker name was not started by RQ 2: leave it to RQ's cleanup.
    alive.update(job.id for job in started if not job.worker_name or job.worker_name in living)
    return alive


def _fetch(state: SMSState, job_ids: list[str]) -> list[Job]:
    """The jobs among ``job_ids`` that still exist in Redis."""
    return [
        job
        for start in range(0, len(job_ids), 500)
        for job in Job.fetch_many(job_ids[start : start + 500], connection=state.redis)
        if job is not None
    ]


def sweep(state: SMSState) -> dict[str, int]:
    """One pass; returns how many rows were recovered and re-enqueued."""
    recovered = recover_stale_sends(state)
    pending = receipts.sweep_pending(state.session)
    due = utcnow() - timedelta(seconds=GRACE_SECONDS)
    rows = state.session.execute(
        select(Message.id, Message.job_id, Message.kind)
        .where(Message.status == Status.QUEUED, Message.next_attempt_at <= due)
        .order_by(Message.id)
        .limit(SCAN_LIMIT)
    ).all()
    by_job: dict[str | None, list[tuple[int, str]]] = defaultdict(list)
    for message_id, job_id, kind in rows:
        by_job[job_id].append((message_id, kind))
    alive = _alive_jobs(state, [job_id for job_id in by_job if job_id])
    lost = [row for job_id, members in by_job.items() if job_id not in alive for row in members]
    urgent = [i for i, kind in lost if kind in outbox.URGENT_KINDS]
    ordinary = [i for i, kind in lost if kind not in outbox.URGENT_KINDS]
    batches = []
    for job_queue, ids in ((state.urgent_queue, urgent), (state.queue, ordinary)):
        for start in range(0, len(ids), state.settings.batch_size):
            chunk = ids[start : start + state.settings.batch_size]
            job_id = outbox.new_job_id()
            outbox.assign_job(state.session, job_id, chunk)
            batches.append((job_queue, job_id, chunk))
    state.session.commit()
    enqueued = sum(len(ids) for q, job_id, ids in batches if outbox.enqueue(q, job_id, ids))
    revived = campaign_runner.revive(state)  # campaigns whose runner was lost
    return {
        "recovered": recovered,
        "enqueued": enqueued,
        "lost": len(lost),
        "campaigns_revived": revived,
        "receipts_applied": pending["applied"],
    }
