"""The sweeper: the safety net that makes the database, not Redis, the source of truth.

It takes back messages stuck in ``sending`` past their lease (a worker died mid-send) and
re-enqueues ``queued`` messages whose delivery job no longer exists in Redis (Redis was down or
flushed when they were enqueued). A job that still exists is left alone, so a long campaign
backlog is not enqueued twice.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

from rq.job import Job, JobStatus
from sqlalchemy import select

from ..models import Message, Status, utcnow
from ..state import SMSState
from . import outbox
from .delivery import release

GRACE_SECONDS = 5
"""Rows younger than this may still be on their way to Redis (the after-commit enqueue)."""
SCAN_LIMIT = 100_000
ALIVE = {JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED, JobStatus.STARTED}


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


def _alive_jobs(state: SMSState, job_ids: list[str]) -> set[str]:
    alive = set()
    for start in range(0, len(job_ids), 500):
        chunk = job_ids[start : start + 500]
        for job in Job.fetch_many(chunk, connection=state.redis):
            if job is not None and job.get_status(refresh=False) in ALIVE:
                alive.add(job.id)
    return alive


def sweep(state: SMSState) -> dict[str, int]:
    """One pass; returns how many rows were recovered and re-enqueued."""
    recovered = recover_stale_sends(state)
    due = utcnow() - timedelta(seconds=GRACE_SECONDS)
    rows = state.session.execute(
        select(Message.id, Message.job_id)
        .where(Message.status == Status.QUEUED, Message.next_attempt_at <= due)
        .order_by(Message.id)
        .limit(SCAN_LIMIT)
    ).all()
    by_job: dict[str | None, list[int]] = defaultdict(list)
    for message_id, job_id in rows:
        by_job[job_id].append(message_id)
    alive = _alive_jobs(state, [job_id for job_id in by_job if job_id])
    lost = [i for job_id, ids in by_job.items() if job_id not in alive for i in ids]
    batches = []
    for start in range(0, len(lost), state.settings.batch_size):
        ids = lost[start : start + state.settings.batch_size]
        job_id = outbox.new_job_id()
        outbox.assign_job(state.session, job_id, ids)
        batches.append((job_id, ids))
    state.session.commit()
    enqueued = sum(len(ids) for job_id, ids in batches if outbox.enqueue(state.queue, job_id, ids))
    return {"recovered": recovered, "enqueued": enqueued, "lost": len(lost)}
