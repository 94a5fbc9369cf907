"""Twilio's webhooks: the status callback of a sent message, and inbound messages.

Twilio signs every callback with ``X-Twilio-Signature``: HMAC-SHA1, keyed with the account's
Auth Token, over the URL as Twilio called it followed by every POST parameter (names sorted,
each name's values sorted, name and value appended). A proxy may change how the URL looks to
us, so the signature is checked against each URL the call could have been made to: the one the
server saw, the one built on ``SMS_PUBLIC_URL``, each with and without the default port.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

from flask import abort, request
from flask.typing import ResponseReturnValue
from werkzeug.datastructures import MultiDict

from ..errors import VaultError
from ..gateways.store import gateway_config
from ..messages.receipts import Receipt
from ..models import Gateway, Status
from ..state import get_state
from . import bp
from .common import find_gateway, inbound, record

log = logging.getLogger("sms_ext")

STATUSES = {
    "delivered": Status.DELIVERED,
    "read": Status.DELIVERED,
    "undelivered": Status.UNDELIVERED,
    "failed": Status.FAILED,
    "canceled": Status.FAILED,
}
"""Twilio's final MessageStatus values; the rest (queued, sending, sent...) change nothing."""
DEFAULT_PORTS = {"https": 443, "http": 80}
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


def signature(token: str, url: str, params: MultiDict[str, str]) -> str:
    """Twilio's signature of a request to ``url`` carrying ``params``."""
    signed = url + "".join(
        name + value for name in sorted(params) for value in sorted(params.getlist(name))
    )
    digest = hmac.new(token.encode("utf-8"), signed.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def port_variants(url: str) -> list[str]:
    """``url`` as given, without its port, and with the scheme's default port."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    bare = urlunsplit(parts._replace(netloc=host))
    variants = [url, bare]
    default = DEFAULT_PORTS.get(parts.scheme)
    if default is not None:
        variants.append(urlunsplit(parts._replace(netloc=f"{host}:{default}")))
    return list(dict.fromkeys(variants))


def called_urls(public_url: str | None) -> list[str]:
    """The URLs Twilio may have called to reach this request."""
    seen = [request.url]
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
    if raw:
        seen.append(request.host_url.rstrip("/") + raw)
    if public_url:
        query = request.query_string.decode("latin-1")
        seen.append(public_url + request.path + (f"?{query}" if query else ""))
    return [variant for url in dict.fromkeys(seen) for variant in port_variants(url)]


def valid(token: str, urls: Iterable[str], params: MultiDict[str, str], given: str) -> bool:
    """Whether ``given`` signs ``params`` for any of ``urls`` (each compared in constant time)."""
    raw = given.encode("utf-8")  # bytes: compare_digest refuses non-ASCII text
    matches = [hmac.compare_digest(signature(token, url, params).encode(), raw) for url in urls]
    return any(matches)


def auth_token(gateway: Gateway) -> str | None:
    """The Auth Token that signs this account's callbacks: its own field, else the API
    secret when the gateway authenticates without an API key (the secret is the token)."""
    try:
        config = gateway_config(gateway, get_state().vault)
    except VaultError:
        return None
    if config.get("auth_token"):
        return str(config["auth_token"])
    if not config.get("api_key") and config.get("api_secret"):
        return str(config["api_secret"])
    return None


def _check_signature(gateway: Gateway, params: MultiDict[str, str]) -> None:
    given = request.headers.get("X-Twilio-Signature", "")
    token = auth_token(gateway)
    if token is None:
        log.warning(
            "Twilio webhook for gateway %s (%s) refused: it uses an API key, so its Auth Token "
            "must be entered on the gateway page to check Twilio's signatures",
            gateway.id,
            gateway.name,
        )
        abort(403, "This gateway has no Auth Token to check the signature with.")
    urls = called_urls(get_state().settings.public_url)
    if not given or not valid(token, urls, params, given.strip()):
        abort(403, "Missing or wrong X-Twilio-Signature.")


@bp.post("/twilio/<gateway_id>/inbound", endpoint="twilio_inbound")
@bp.post("/twilio/<gateway_id>")
def twilio(gateway_id: str) -> ResponseReturnValue:
    """A status callback, or an inbound message (it carries ``Body`` and no MessageStatus)."""
    gateway = find_gateway("twilio", gateway_id)
    params = request.form
    _check_signature(gateway, params)
    is_reply = request.path.endswith("/inbound") or (
        "Body" in params and "MessageStatus" not in params
    )
    if is_reply:
        inbound(gateway, params.get("From"), params.get("Body"))
        return EMPTY_TWIML, 200, {"Content-Type": "text/xml; charset=utf-8"}
    sid = (params.get("MessageSid") or params.get("SmsSid") or "").strip()
    raw_status = (params.get("MessageStatus") or params.get("SmsStatus") or "").strip().lower()
    if not sid or not raw_status:
        abort(400, "MessageSid and MessageStatus are required.")
    status = STATUSES.get(raw_status)
    if status is None:
        return "ignored\n", 200, {"Content-Type": "text/plain; charset=utf-8"}
    code = (params.get("ErrorCode") or "").strip()[:32] or None
    outcome = record(gateway, Receipt(gateway.id, status, provider_id=sid[:120], error_code=code))
    return f"{outcome}\n", 200, {"Content-Type": "text/plain; charset=utf-8"}
