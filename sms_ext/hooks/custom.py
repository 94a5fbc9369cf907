"""The generic webhooks of custom gateways: receipts and inbound SMS, read by field names.

``<prefix>/custom/<gateway id>/<token>`` takes receipts and ``.../<token>/inbound`` replies, by
GET or POST, as a query string, a form or JSON: whatever the provider sends, the admin's field
names (``Gateway.hooks``) find the values in it.
"""

from __future__ import annotations

from flask import abort
from flask.typing import ResponseReturnValue

from ..gateways.hook_fields import field_names, meaning
from ..messages.receipts import Receipt
from . import bp
from .common import documents, find_gateway, inbound, record_all, text_at

TEXT = {"Content-Type": "text/plain; charset=utf-8"}


@bp.route("/custom/<gateway_id>/<token>", methods=["GET", "POST"])
def custom_receipt(gateway_id: str, token: str) -> ResponseReturnValue:
    gateway = find_gateway("custom", gateway_id, token)
    names = field_names(gateway.hooks)
    found: list[Receipt] = []
    for document in documents():
        provider_id = text_at(document, names["id"])
        raw_status = text_at(document, names["status"])
        if not provider_id or not raw_status:
            abort(400, f"Each receipt needs the fields {names['id']!r} and {names['status']!r}.")
        status = meaning(gateway.hooks, raw_status)
        if status is None:
            continue
        code = text_at(document, names["error_code"])
        found.append(
            Receipt(
                gateway.id,
                status,
                provider_id=provider_id[:120],
                error_code=code[:32] if code else None,
            )
        )
    return record_all(gateway, found) + "\n", 200, TEXT


@bp.route("/custom/<gateway_id>/<token>/inbound", methods=["GET", "POST"])
def custom_inbound(gateway_id: str, token: str) -> ResponseReturnValue:
    gateway = find_gateway("custom", gateway_id, token)
    names = field_names(gateway.hooks)
    done = []
    for document in documents():
        sender = text_at(document, names["from"])
        if not sender:
            abort(400, f"An inbound SMS needs the field {names['from']!r}.")
        text = text_at(document, names["text"]) or ""  # an empty SMS is still an SMS
        done.append(inbound(gateway, sender, text) or "nothing")
    return " ".join(done) + "\n", 200, TEXT
