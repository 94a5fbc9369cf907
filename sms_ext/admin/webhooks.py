"""Where each gateway's receipts and inbound replies go, shown on its page, and a new
webhook token on demand.

The token is the only proof a SMSPortal or custom webhook call has, so the page shows it
masked; the full URL is one click away (for pasting into the provider's dashboard), and a new
token replaces a leaked one at once, breaking the old URLs.
"""

from __future__ import annotations

import secrets
from typing import Any, NamedTuple

from flask import abort, flash, redirect, request, url_for
from flask.typing import ResponseReturnValue

from ..checks import INT32_MAX, parse_id
from ..models import Gateway
from ..state import get_state
from . import bp
from .gateway_forms import check_action, mask


class HookUrl(NamedTuple):
    label: str
    url: str
    shown: str
    """The URL with its token masked."""


def hook_urls(gateway: Gateway) -> list[HookUrl]:
    """The URLs to give the provider for this gateway, public ones when ``SMS_PUBLIC_URL``
    is set (what the provider must reach), else this request's own host."""
    public = get_state().settings.public_url
    token = gateway.hook_token or ""

    def entry(label: str, endpoint: str, **values: Any) -> HookUrl:
        if public:  # SMS_PUBLIC_URL is the app's address: it stands for the script root
            full = (
                public
                + url_for(endpoint, gateway_id=gateway.id, **values)[len(request.script_root) :]
            )
        else:
            full = url_for(endpoint, gateway_id=gateway.id, _external=True, **values)
        return HookUrl(label, full, full.replace(token, mask(token)) if token else full)

    if gateway.type == "twilio":
        return [
            entry("Status callback (sent with every message)", "sms_hooks.twilio"),
            entry("Inbound messages (\u201cA message comes in\u201d)", "sms_hooks.twilio_inbound"),
        ]
    if not token:
        return []
    if gateway.type == "smsportal":
        return [entry("Delivery webhook (v2)", "sms_hooks.smsportal", token=token)]
    if gateway.type == "custom":
        return [
            entry("Delivery receipts", "sms_hooks.custom_receipt", token=token),
            entry("Inbound SMS", "sms_hooks.custom_inbound", token=token),
        ]
    return []


@bp.post("/gateways/<int:gateway_id>/hook-token")
def gateway_hook_token(gateway_id: int) -> ResponseReturnValue:
    """Give the gateway a new webhook token: the old URLs stop working at once."""
    check_action()
    known = parse_id(gateway_id, INT32_MAX)
    gateway = get_state().session.get(Gateway, known) if known is not None else None
    if gateway is None:
        abort(404)
    gateway.hook_token = secrets.token_urlsafe(32)
    get_state().session.commit()
    flash(
        f"{gateway.name}: new webhook token. Give the provider the new URLs below; "
        "the old ones no longer work.",
        "ok",
    )
    return redirect(url_for(".gateway_edit", gateway_id=gateway.id, _anchor="webhooks"), 303)
