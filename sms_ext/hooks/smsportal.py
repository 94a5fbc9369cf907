"""SMSPortal's delivery webhook (v2): JSON with ``Status``, ``EventId``, ``Msisdn`` and
``UserReference``, one object or a list of them.

SMSPortal signs nothing, so the random token in the URL is the proof. A bulk send shares one
``EventId`` among its messages, so the driver sends each message's own id as its reference
(``customerId``) and a receipt finds its message by that; without one, by event id and number.
"""

from __future__ import annotations

from flask import abort
from flask.typing import ResponseReturnValue

from ..messages.receipts import Receipt
from ..models import Status
from . import bp
from .common import documents, find_gateway, record_all, text_at

STATUSES = {
    "DELIVRD": Status.DELIVERED,
    "DELIVERED": Status.DELIVERED,
    "UNDELIV": Status.UNDELIVERED,
    "UNDELIVERED": Status.UNDELIVERED,
    "EXPIRED": Status.UNDELIVERED,
    "EXPIRD": Status.UNDELIVERED,
    "REJECTD": Status.FAILED,
    "REJECTED": Status.FAILED,
    "FAILED": Status.FAILED,
    "DELETED": Status.FAILED,
}
"""Final statuses; the others (ACCEPTD, ENROUTE, SENT...) change nothing."""


def _receipt(gateway_id: int, document: object) -> Receipt | None:
    raw = text_at(document, "Status")
    event_id, msisdn = text_at(document, "EventId"), text_at(document, "Msisdn")
    reference = text_at(document, "UserReference")
    if not raw or not (event_id or reference):
        abort(400, "Each receipt needs Status and EventId (or UserReference).")
    status = STATUSES.get(raw.upper())
    if status is None:
        return None
    code = text_at(document, "ErrorCode")
    error = code[:32] if code else (raw[:32] if status != Status.DELIVERED else None)
    if reference and reference.isascii() and reference.isdigit() and len(reference) < 19:
        return Receipt(gateway_id, status, message_id=int(reference), error_code=error)
    digits = "".join(ch for ch in msisdn or "" if ch in "0123456789")
    if not event_id or not digits:
        return None
    return Receipt(
        gateway_id, status, provider_id=event_id[:120], phone=f"+{digits[:15]}", error_code=error
    )


@bp.post("/smsportal/<gateway_id>/<token>")
def smsportal(gateway_id: str, token: str) -> ResponseReturnValue:
    gateway = find_gateway("smsportal", gateway_id, token)
    found = [r for d in documents() if (r := _receipt(gateway.id, d)) is not None]
    return record_all(gateway, found) + "\n", 200, {"Content-Type": "text/plain; charset=utf-8"}
