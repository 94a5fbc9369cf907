"""What every webhook needs: find its gateway, read the request, record a receipt or a reply."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping
from typing import Any

from flask import abort, request
from sqlalchemy.exc import IntegrityError

from ..admin.logs import mask_phone
from ..campaigns import optout
from ..checks import INT32_MAX, parse_id
from ..errors import PhoneNumberError
from ..messages import receipts
from ..models import Gateway
from ..state import get_state
from ..text.phone import normalize_phone

log = logging.getLogger("sms_ext")

Document = Mapping[str, Any]


def find_gateway(kind: str, gateway_id: str, token: str | None = None) -> Gateway:
    """The gateway a webhook URL names, or 404 alike for an unknown id, another type and a
    wrong token, so a caller learns nothing about which part was wrong."""
    known = parse_id(gateway_id, INT32_MAX)
    gateway = get_state().session.get(Gateway, known) if known is not None else None
    if gateway is None or gateway.type != kind:
        abort(404)
    if token is not None:
        expected = gateway.hook_token or ""
        if not expected or not hmac.compare_digest(expected.encode(), token.encode()):
            abort(404)
    return gateway


def documents() -> list[Document]:
    """The request's data: a JSON object (or a list of them, for gateways that batch), else
    the form fields and the query string together. Malformed JSON is a 400."""
    if request.is_json:
        body = request.get_json(silent=True)
        if body is None and request.get_data():
            abort(400, "The body is not valid JSON.")
        if isinstance(body, list) and all(isinstance(item, dict) for item in body):
            return body
        if isinstance(body, dict):
            return [{**request.args.to_dict(), **body}]
        if body is not None:
            abort(400, "The JSON body must be an object or a list of objects.")
    return [{**request.args.to_dict(), **request.form.to_dict()}]


def text_at(document: object, path: str) -> str | None:
    """The text at a dotted ``path`` (``data.status``) of a document, keys matched exactly and
    then ignoring case; numbers become text, anything else (objects, lists, true) is None."""
    value: object = document
    for name in path.split("."):
        if not isinstance(value, Mapping):
            return None
        if name in value:
            value = value[name]
        else:
            lowered = {str(k).lower(): v for k, v in value.items()}
            value = lowered.get(name.lower())
    if isinstance(value, bool) or value is None or isinstance(value, Mapping | list):
        return None
    text = str(value).strip()
    return text or None


def record(gateway: Gateway, receipt: receipts.Receipt) -> receipts.Outcome:
    """Apply one receipt and commit; what could not be matched is logged, never refused (a
    gateway retries a refused receipt for days)."""
    session = get_state().session
    outcome = receipts.apply(session, receipt)
    session.commit()
    if outcome in (receipts.Outcome.UNKNOWN, receipts.Outcome.PENDING):
        log.info(
            "receipt %s for %s on gateway %s (%s): %s",
            receipt.status,
            receipt.provider_id or receipt.message_id,
            gateway.id,
            gateway.name,
            "no such message" if outcome == receipts.Outcome.UNKNOWN else "kept until it is sent",
        )
    return outcome


def record_all(gateway: Gateway, found: list[receipts.Receipt]) -> str:
    """Record every receipt of a request; the body of the answer (counts by outcome)."""
    counts: dict[str, int] = {}
    for receipt in found:
        outcome = record(gateway, receipt)
        counts[outcome] = counts.get(outcome, 0) + 1
    return " ".join(f"{name}={count}" for name, count in sorted(counts.items())) or "nothing"


def inbound(gateway: Gateway, sender: str | None, text: str | None) -> str | None:
    """An SMS a guest sent to the gateway's number: STOP opts them out, START undoes a STOP.

    Returns what was done, or None (another text, an unusable sender).
    """
    if not sender or text is None:
        return None
    try:
        phone = normalize_phone(sender.strip(), allow_fixed_line=True)
    except PhoneNumberError:
        log.info("inbound SMS on gateway %s from an unusable number ignored", gateway.id)
        return None
    session = get_state().session
    try:
        done = optout.handle_reply(session, phone, text, gateway_id=gateway.id)
        session.commit()
    except IntegrityError:  # the same STOP, handled at the same moment by another process
        session.rollback()
        done = "opted_out"
    if done:
        log.info(
            "inbound %s from %s via gateway %s (%s): %s",
            optout.keyword(text),
            mask_phone(phone),
            gateway.id,
            gateway.name,
            done.replace("_", " "),
        )
    return done
