"""The transactional outbox: a message row is the truth, the RQ job only a wake-up call.

Every message enters here, whoever sends it (``sms.send``, ``sms.send_bulk``, a guest's code):
:func:`compose` checks and builds the row, :func:`queue` inserts rows in the caller's
transaction. Their delivery jobs are enqueued only after that transaction commits (a
rolled-back OTP challenge never sends), and a Redis outage merely leaves rows ``queued`` for
the sweeper. Nothing here commits: the caller owns the transaction.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from redis.exceptions import RedisError
from rq import Queue
from sqlalchemy import bindparam, event, insert, update
from sqlalchemy.orm import Session

from .. import runtime
from ..checks import text_problem
from ..errors import MessageError
from ..models import MESSAGES, Gateway, Kind, Message, Status, utcnow
from ..state import SMSState
from ..text.phone import normalize_phone
from ..text.segments import analyze

log = logging.getLogger("sms_ext")

MAX_BODY = 1600
"""Longest text we accept: the common provider limit (Twilio's) for one concatenated SMS."""
MAX_LOCATION = 80
MAX_CUSTOMER = 120
MAX_SENT_BY = 120
"""Lengths of the ``location``, ``customer_ref`` and ``sent_by`` columns."""

DELIVER_JOB = "sms_ext.messages.jobs.deliver"
"""Delivery jobs are enqueued by dotted path: the outbox never imports the delivery code."""
URGENT_JOB = "sms_ext.messages.jobs.deliver_urgent"

URGENT_KINDS = frozenset({Kind.OTP, Kind.TEST})
"""Kinds a person is waiting for: they go to the urgent queue, which every worker serves first,
and a worker busy with bulk work picks them up between two answers."""
URGENT_FLAG_SECONDS = 10
"""How long the "urgent work pending" flag outlives a lost urgent job; the sweeper covers the
rest."""

PENDING = "sms_ext.pending"
"""``Session.info`` key: what to enqueue once the transaction commits."""

INSERT_ONE = insert(MESSAGES).returning(MESSAGES.c.id)
"""One message row, as Core: built once, compiled once per set of keys."""

JOB_RESULT_TTL = 0
"""Finished delivery jobs are dropped at once: the outcome lives on the message rows."""
JOB_FAILURE_TTL = 86400
JOB_TIMEOUT = 900


def new_job_id() -> str:
    return f"sms-{uuid.uuid4().hex}"


def _check(
    to: object, body: object, kind: str, location: object, customer: object, sent_by: object
) -> None:
    """Refuse what the database could not store, naming the argument (see :mod:`..checks`)."""
    try:
        Kind(kind)
    except ValueError:
        known = ", ".join(Kind)
        raise MessageError(f"Unknown message kind {kind!r}; use one of {known}.") from None
    if not isinstance(to, str):
        raise MessageError("The recipient (to) must be text.")
    if not isinstance(body, str) or not body.strip():
        raise MessageError("The message is empty.")
    if len(body) > MAX_BODY:
        raise MessageError(f"The message is longer than {MAX_BODY} characters.")
    problem = text_problem(body, "The message", MAX_BODY, multiline=True)
    if problem is None and location is not None:
        problem = text_problem(location, "The location", MAX_LOCATION)
    if problem is None and customer is not None:
        problem = text_problem(customer, "The customer reference", MAX_CUSTOMER)
    if problem is None and sent_by is not None:
        problem = text_problem(sent_by, "The sender (sent_by)", MAX_SENT_BY)
    if problem is not None:
        raise MessageError(problem)


def expiry(state: SMSState, expires_at: datetime | None) -> datetime:
    """``expires_at`` as naive UTC; by default ``days to expire`` (admin setting) from now."""
    if expires_at is None:
        return utcnow() + timedelta(days=runtime.current(state).days_to_expire)
    if expires_at.tzinfo is not None:
        return expires_at.astimezone(UTC).replace(tzinfo=None)
    return expires_at


def compose(
    state: SMSState,
    to: str,
    body: str,
    *,
    kind: str = Kind.PERSONAL,
    location: str | None = None,
    customer: str | None = None,
    sent_by: str | None = None,
    expires_at: datetime | None = None,
    region: str | None = None,
    gateway: Gateway | None = None,
) -> dict[str, Any]:
    """A checked, ready-to-insert message row (see :meth:`sms_ext.SMS.send` for the
    parameters). Raises :class:`~sms_ext.PhoneNumberError` or :class:`~sms_ext.MessageError`.

    While sending is switched off in the settings the row is born ``failed`` with the reason,
    so the log shows what would have gone out.
    """
    _check(to, body, kind, location, customer, sent_by)
    info = analyze(body)
    now = utcnow()
    row: dict[str, Any] = {
        "kind": kind,
        "to": normalize_phone(
            to, default_region=region or state.settings.default_region, allow_fixed_line=True
        ),
        "body": body,
        "encoding": info.encoding,
        "segments": info.segments,
        "status": Status.QUEUED,
        "location": location,
        "customer_ref": customer,
        "sent_by": sent_by,
        "created_at": now,
        "next_attempt_at": now,
        "expires_at": expiry(state, expires_at),
        "attempts": 0,
        "gateway_id": gateway.id if gateway is not None else None,
        "only_gateway": gateway is not None,
    }
    if not runtime.current(state).sending_enabled:
        row.update(status=Status.FAILED, failed_at=now, last_error="SMS sending is switched off.")
    return row


def queue(state: SMSState, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert composed rows in the caller's transaction; returns their ids in order.

    Rows go in with one Core statement per ``SMS_BATCH_SIZE`` chunk. When the caller commits,
    each chunk's ordinary rows get one delivery job, and guest codes and test sends wake the
    urgent lane instead (one pending wake-up for any number of them). Nothing is enqueued on
    rollback.
    """
    ids: list[int] = []
    size = state.settings.batch_size
    for start in range(0, len(rows), size):
        ids.extend(_insert_chunk(state, rows[start : start + size]))
    return ids


def _insert_chunk(state: SMSState, rows: Sequence[dict[str, Any]]) -> list[int]:
    job_id = new_job_id()
    values = [{**row, "job_id": job_id if row["status"] == Status.QUEUED else None} for row in rows]
    if len(values) == 1:  # a guest's code or one send: Core, a quarter of the ORM bulk insert
        ids = [state.session.execute(INSERT_ONE, values[0]).scalar_one()]
    else:  # the ORM groups rows by their keys (born-failed rows carry more)
        ids = list(state.session.scalars(insert(Message).returning(Message.id), values))
    queued = [(i, row["kind"]) for i, row in zip(ids, values, strict=True) if row["job_id"]]
    ordinary = [i for i, kind in queued if kind not in URGENT_KINDS]
    if ordinary:
        after_commit(state.session, lambda: enqueue(state.queue, job_id, ordinary))
    if len(ordinary) < len(queued):
        after_commit(state.session, lambda: wake_urgent(state, job_id))
    return ids


def after_commit(session: Session, action: Callable[[], object]) -> None:
    """Run ``action`` once ``session`` commits (an enqueue); dropped on rollback."""
    session.info.setdefault(PENDING, []).append(action)


def urgent_flag(state: SMSState) -> str:
    """Redis key set while an urgent job is pending or running."""
    return f"sms_ext:{state.settings.queue}:urgent-pending"


def wake_urgent(state: SMSState, job_id: str) -> bool:
    """Make sure an urgent job will look for due guest codes and test sends.

    A burst of codes costs one job, not one each: the flag lets only the first enqueue, and the
    running job claims every due urgent row, clearing the flag before its last look (so a code
    committed after that look finds the flag gone and enqueues a new job).
    """
    try:
        if state.redis.set(urgent_flag(state), job_id, nx=True, ex=URGENT_FLAG_SECONDS):
            state.urgent_queue.enqueue(
                URGENT_JOB,
                job_id=job_id,
                result_ttl=JOB_RESULT_TTL,
                failure_ttl=JOB_FAILURE_TTL,
                job_timeout=JOB_TIMEOUT,
                description="deliver guest codes and test sends",
            )
    except RedisError as exc:
        log.warning("Redis unreachable (%s): urgent messages stay queued for the sweeper", exc)
        return False
    return True


def enqueue(job_queue: Queue, job_id: str, ids: Sequence[int], at: datetime | None = None) -> bool:
    """Put one delivery job on the queue; ``False`` (logged) when Redis is unreachable."""
    options: dict[str, Any] = {
        "job_id": job_id,
        "result_ttl": JOB_RESULT_TTL,
        "failure_ttl": JOB_FAILURE_TTL,
        "job_timeout": JOB_TIMEOUT,
        "description": f"deliver {len(ids)} SMS",
    }
    try:
        if at is None:
            job_queue.enqueue(DELIVER_JOB, list(ids), **options)
        else:
            job_queue.enqueue_at(at, DELIVER_JOB, list(ids), **options)
    except RedisError as exc:
        log.warning(
            "Redis unreachable (%s): %d message(s) stay queued for the sweeper", exc, len(ids)
        )
        return False
    return True


def assign_job(session: Session, job_id: str, ids: Sequence[int]) -> None:
    """Record on the rows which job is meant to deliver them (for the sweeper's check)."""
    statement = (
        update(MESSAGES).where(MESSAGES.c.id == bindparam("message_id")).values(job_id=job_id)
    )
    session.execute(statement, [{"message_id": message_id} for message_id in ids])


def queue_one(state: SMSState, row: dict[str, Any], *, commit: bool) -> Message:
    """Queue one composed row and return it as a :class:`Message` (``sms.send``)."""
    [message_id] = queue(state, [row])
    message = state.session.get(Message, message_id)
    assert message is not None  # just inserted in this transaction
    if commit:
        state.session.commit()
    return message


@event.listens_for(Session, "after_commit")
def _enqueue_committed(session: Session) -> None:
    for action in session.info.pop(PENDING, ()):
        action()


@event.listens_for(Session, "after_rollback")
def _forget_rolled_back(session: Session) -> None:
    session.info.pop(PENDING, None)
