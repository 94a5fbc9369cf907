"""Delivery receipts: what a gateway later tells about a message it took.

A receipt only ever moves a message forward by meaning, never by arrival: gateways retry,
reorder and repeat their callbacks, and two web processes may handle two receipts of one
message at the same moment. The order is

    sent  <  undelivered = failed  <  delivered

so a repeated or late "undelivered" never undoes "delivered", and intermediate reports
(queued, accepted, sending, sent) change nothing. Each receipt is ONE conditional UPDATE whose
WHERE lists the statuses it may replace, so the database, not the web process, settles races.

A receipt can beat the worker: the provider answers the send, calls our webhook at once, and
the worker has not yet recorded the provider's id. Such a receipt is kept in
``sms_pending_receipt`` and applied by the worker when it records the id (see
:func:`apply_pending_for`), or by the sweeper; pending receipts older than a day are dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, delete, insert, select, update
from sqlalchemy.orm import Session

from ..models import MESSAGES, PendingReceipt, Status, utcnow

log = logging.getLogger("sms_ext")

RANK = {Status.SENT: 1, Status.UNDELIVERED: 2, Status.FAILED: 2, Status.DELIVERED: 3}
"""How far along a sent message is; a receipt applies only to a message ranked lower."""
RECEIPT_STATUSES = frozenset({Status.DELIVERED, Status.UNDELIVERED, Status.FAILED})
"""The statuses a receipt can set; any other report is intermediate and changes nothing."""
NOT_YET_RECORDED = frozenset({Status.QUEUED, Status.SENDING, Status.HELD})
"""A message in these states has not been settled by its worker: its receipt waits."""
PENDING_DAYS = 1
OWN_ID = "#"
"""Prefix of a pending receipt's key when the gateway named our message id, not its own."""
SWEEP_BATCH = 1000


class Outcome(StrEnum):
    """What a receipt did."""

    APPLIED = "applied"
    KEPT = "kept"
    """The message is already as far along (a repeated or late receipt)."""
    PENDING = "pending"
    """No recorded send yet: stored until the worker records it."""
    UNKNOWN = "unknown"
    """No such message, and nothing to keep it by."""
    IGNORED = "ignored"
    """An intermediate report (queued, sent...)."""


@dataclass(frozen=True)
class Receipt:
    """One delivery report, as the webhook understood it.

    The message is found by ``message_id`` (our id, when the gateway echoes our reference)
    or by the gateway's own ``provider_id``; ``phone`` narrows a provider id that a bulk
    request shares among many messages.
    """

    gateway_id: int
    status: str
    provider_id: str | None = None
    message_id: int | None = None
    phone: str | None = None
    error_code: str | None = None
    occurred_at: datetime | None = None


def _matches(receipt: Receipt) -> list[ColumnElement[bool]] | None:
    table = MESSAGES
    criteria: list[ColumnElement[bool]] = [table.c.gateway_id == receipt.gateway_id]
    if receipt.message_id is not None:
        criteria.append(table.c.id == receipt.message_id)
    elif receipt.provider_id:
        criteria.append(table.c.provider_message_id == receipt.provider_id)
    else:
        return None
    if receipt.phone:
        criteria.append(table.c.to == receipt.phone)
    return criteria


def _pending_key(receipt: Receipt) -> str | None:
    if receipt.message_id is not None:
        return f"{OWN_ID}{receipt.message_id}"
    if receipt.phone:  # a shared bulk id: the worker could not tell which message it meant
        return None
    return receipt.provider_id or None


def _advance(session: Session, receipt: Receipt, criteria: list[ColumnElement[bool]]) -> int:
    """The conditional UPDATE: only rows ranked below the receipt's status move."""
    table = MESSAGES
    rank = RANK[Status(receipt.status)]
    lower = [status for status, r in RANK.items() if r < rank]
    now = utcnow()
    at = receipt.occurred_at or now
    values: dict[str, Any] = {
        "status": receipt.status,
        "receipt_at": now,
        "error_code": receipt.error_code,
    }
    values["delivered_at" if receipt.status == Status.DELIVERED else "failed_at"] = at
    result = session.execute(
        update(table)
        .where(*criteria, table.c.status.in_(lower), table.c.sent_at.is_not(None))
        .values(**values)
    )
    return result.rowcount or 0  # type: ignore[attr-defined]  # an UPDATE's result


def apply(session: Session, receipt: Receipt) -> Outcome:
    """Apply ``receipt`` in the caller's transaction (the caller commits)."""
    if receipt.status not in RECEIPT_STATUSES:
        return Outcome.IGNORED
    criteria = _matches(receipt)
    if criteria is None:
        return Outcome.UNKNOWN
    if _advance(session, receipt, criteria):
        return Outcome.APPLIED
    found = session.execute(select(MESSAGES.c.status).where(*criteria).limit(1)).scalar()
    if found is not None and found not in NOT_YET_RECORDED:
        return Outcome.KEPT
    key = _pending_key(receipt)
    if key is None:
        return Outcome.UNKNOWN
    session.execute(
        insert(PendingReceipt).values(
            gateway_id=receipt.gateway_id,
            provider_message_id=key[:120],
            status=receipt.status,
            error_code=receipt.error_code,
            occurred_at=receipt.occurred_at or utcnow(),
            received_at=utcnow(),
        )
    )
    return Outcome.PENDING


def _receipt(row: PendingReceipt) -> Receipt:
    key = row.provider_message_id
    own = key.startswith(OWN_ID) and key[len(OWN_ID) :].isdigit()
    return Receipt(
        gateway_id=row.gateway_id,
        status=row.status,
        provider_id=None if own else key,
        message_id=int(key[len(OWN_ID) :]) if own else None,
        error_code=row.error_code,
        occurred_at=row.occurred_at,
    )


def _apply_rows(session: Session, rows: Iterable[PendingReceipt]) -> int:
    """Apply pending receipts whose message is now recorded and drop them; returns how many."""
    done: list[int] = []
    for row in sorted(rows, key=lambda r: RANK.get(Status(r.status), 0)):
        receipt = _receipt(row)
        criteria = _matches(receipt)
        if criteria is None:
            continue
        if _advance(session, receipt, criteria):
            done.append(row.id)
            continue
        found = session.execute(select(MESSAGES.c.status).where(*criteria).limit(1)).scalar()
        if found is not None and found not in NOT_YET_RECORDED:
            done.append(row.id)  # recorded, and already as far along
    if done:
        session.execute(delete(PendingReceipt).where(PendingReceipt.id.in_(done)))
    return len(done)


def apply_pending_for(session: Session, sent: Iterable[tuple[int, int, str | None]]) -> int:
    """Apply the pending receipts of messages just recorded as sent, in the caller's
    transaction: ``sent`` holds (message id, gateway id, provider id). One indexed SELECT,
    which finds nothing almost always."""
    keys: set[str] = set()
    gateways: set[int] = set()
    for message_id, gateway_id, provider_id in sent:
        gateways.add(gateway_id)
        keys.add(f"{OWN_ID}{message_id}")
        if provider_id:
            keys.add(provider_id)
    if not keys:
        return 0
    rows = session.scalars(
        select(PendingReceipt).where(
            PendingReceipt.gateway_id.in_(gateways),
            PendingReceipt.provider_message_id.in_(keys),
        )
    ).all()
    return _apply_rows(session, rows) if rows else 0


def sweep_pending(session: Session) -> dict[str, int]:
    """Drop pending receipts older than a day (one statement), then apply those whose message
    was recorded meanwhile (a receipt stored just as its worker settled); commits."""
    cutoff = utcnow() - timedelta(days=PENDING_DAYS)
    dropped = session.execute(delete(PendingReceipt).where(PendingReceipt.received_at < cutoff))
    rows = session.scalars(
        select(PendingReceipt).order_by(PendingReceipt.id).limit(SWEEP_BATCH)
    ).all()
    applied = _apply_rows(session, rows)
    session.commit()
    return {"dropped": dropped.rowcount or 0, "applied": applied}  # type: ignore[attr-defined]
