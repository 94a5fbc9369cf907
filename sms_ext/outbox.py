"""The transactional outbox: a message row is the truth, the RQ job only a wake-up call.

Rows are written in the caller's transaction; their delivery jobs are enqueued only after that
transaction commits (a rolled-back OTP challenge never sends), and a Redis outage merely
leaves rows ``queued`` for the sweeper.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime

from redis.exceptions import RedisError
from rq import Queue
from sqlalchemy import bindparam, event, insert, update
from sqlalchemy.orm import Session

from .models import Message, Status

log = logging.getLogger("sms_ext")

PENDING = "sms_ext.pending"
"""``Session.info`` key: (queue, job id, message ids) to enqueue after the commit."""

JOB_RESULT_TTL = 0
"""Finished delivery jobs are dropped at once: the outcome lives on the message rows."""
JOB_FAILURE_TTL = 86400
JOB_TIMEOUT = 900


def new_job_id() -> str:
    return f"sms-{uuid.uuid4().hex}"


def enqueue_after_commit(session: Session, queue: Queue, job_id: str, ids: Sequence[int]) -> None:
    """Enqueue a delivery job for ``ids`` once ``session`` commits; dropped on rollback."""
    session.info.setdefault(PENDING, []).append((queue, job_id, list(ids)))


def enqueue(queue: Queue, job_id: str, ids: Sequence[int], at: datetime | None = None) -> bool:
    """Put one delivery job on the queue; ``False`` (logged) when Redis is unreachable."""
    from .jobs import deliver_messages  # jobs imports the pipeline, which imports this module

    options = {
        "job_id": job_id,
        "result_ttl": JOB_RESULT_TTL,
        "failure_ttl": JOB_FAILURE_TTL,
        "job_timeout": JOB_TIMEOUT,
        "description": f"deliver {len(ids)} SMS",
    }
    try:
        if at is None:
            queue.enqueue(deliver_messages, list(ids), **options)
        else:
            queue.enqueue_at(at, deliver_messages, list(ids), **options)
    except RedisError as exc:
        log.warning(
            "Redis unreachable (%s): %d message(s) stay queued for the sweeper", exc, len(ids)
        )
        return False
    return True


def add_rows(session: Session, queue: Queue, rows: list[dict]) -> list[int]:
    """Insert message rows (one Core statement) and give the queued ones one job, enqueued
    after the commit; returns the new ids in order."""
    job_id = new_job_id()
    for row in rows:
        row["job_id"] = job_id if row["status"] == Status.QUEUED else None
    ids = list(session.scalars(insert(Message).returning(Message.id), rows))
    queued = [i for i, row in zip(ids, rows, strict=True) if row["job_id"]]
    if queued:
        enqueue_after_commit(session, queue, job_id, queued)
    return ids


def assign_job(session: Session, job_id: str, ids: Sequence[int]) -> None:
    """Record on the rows which job is meant to deliver them (for the sweeper's check)."""
    statement = (
        update(Message.__table__)
        .where(Message.__table__.c.id == bindparam("message_id"))
        .values(job_id=job_id)
    )
    session.execute(statement, [{"message_id": message_id} for message_id in ids])


@event.listens_for(Session, "after_commit")
def _enqueue_committed(session: Session) -> None:
    for queue, job_id, ids in session.info.pop(PENDING, ()):
        enqueue(queue, job_id, ids)


@event.listens_for(Session, "after_rollback")
def _forget_rolled_back(session: Session) -> None:
    session.info.pop(PENDING, None)
