"""Webhooks that gateways call: delivery receipts and inbound SMS (STOP replies).

They live on their own blueprint (``sms_hooks``, under ``SMS_HOOKS_URL_PREFIX``) because they
are the opposite of the admin pages: the callers are machines without a session, so there is
no CSRF token and no admin check; a gateway's signature (Twilio) or the random token in the URL
(SMSPortal, custom gateways) is the proof. Bodies are capped, and every bad request gets a
short plain-text 4xx: a 500 would make the gateway retry forever.
"""

from __future__ import annotations

from flask import Blueprint, Flask, abort, current_app, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from ..config import Settings

MAX_BODY = 64 * 1024
"""Receipts and replies are a few hundred bytes; anything near this is not a gateway."""

bp = Blueprint("sms_hooks", __name__)


def register(app: Flask, settings: Settings) -> None:
    """Mount the webhooks and keep CSRFProtect (when the host uses it) away from them."""
    app.register_blueprint(bp, url_prefix=settings.hooks_url_prefix)
    csrf = app.extensions.get("csrf")
    if csrf is not None:
        csrf.exempt(bp)


@bp.before_app_request
def _exempt_from_csrf() -> None:
    """For a host that sets up CSRFProtect after ``sms.init_app``: its check runs after this."""
    if request.blueprint == bp.name and (csrf := current_app.extensions.get("csrf")):
        csrf.exempt(bp)


@bp.before_request
def _cap_body() -> None:
    request.max_content_length = MAX_BODY
    request.max_form_memory_size = MAX_BODY
    if (request.content_length or 0) > MAX_BODY:
        abort(413)


@bp.errorhandler(HTTPException)
def _short_answer(exc: HTTPException) -> ResponseReturnValue:
    """Plain text for machines: the status and one sentence."""
    text = exc.description if exc.code in (400, 403) else exc.name
    return f"{text}\n", exc.code or 500, {"Content-Type": "text/plain; charset=utf-8"}


# Each gateway type registers its routes on import.
from . import custom, smsportal, twilio  # noqa: E402,F401
