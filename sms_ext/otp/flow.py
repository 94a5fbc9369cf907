"""The OTP step on the host's splash blueprints (``sms.protect``).

Like Flask-WTF's ``exempt`` and Flask-Limiter's blueprint limits, ``protect`` only records the
blueprint; one app-level ``before_request`` hook handles the code page's posts for every
protected blueprint, so it works whether ``protect`` runs before or after registration. The
code page posts back to the splash page's own URL, query string included, so the captive
portal's parameters survive the whole round trip untouched.

A page refresh re-posts the last form: a wrong code posted again for the same challenge is
answered as before without counting a second try (the session remembers a fingerprint of the
last wrong code), so refreshing never uses up the guest's tries.
"""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from flask import current_app, make_response, render_template, request, session
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError, generate_csrf, validate_csrf
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import BadRequest
from wtforms.validators import ValidationError

from ..errors import OtpRateLimited, OtpUnavailable
from ..i18n import gettext, template_context
from ..state import SMSState, get_state
from ..text.phone import normalize_phone, readable
from . import codes

SESSION_KEY = "sms_otp"
"""Flask session entry: the browser's random key and the pending challenge."""
MAC_PARAMETERS = ("mac", "id", "client_mac")
"""Query parameters carrying the client MAC (MikroTik/generic ``mac``, UniFi ``id``)."""
MAX_CODE_INPUT = 32


@dataclass(frozen=True)
class Protection:
    """What the host registered for one blueprint."""

    on_verified: Callable[[str, bool], ResponseReturnValue]
    required: Callable[[], bool]
    location: Callable[[], str | None]
    region: Callable[[], str | None]
    branding: Callable[[], Mapping[str, str]] | None = None
    """The venue's look for the extension's guest pages (see :meth:`sms_ext.SMS.protect`)."""
    language: Callable[[], str | None] = lambda: None
    """The guest's language tag: picks the OTP template (see :meth:`sms_ext.SMS.protect`)."""


class SessionExpired(BadRequest):
    """The code page was posted without a pending code (the session cookie expired or is gone)."""

    def __init__(self) -> None:
        super().__init__(gettext("Your session expired. Please enter your phone number again."))


def protection(state: SMSState) -> Protection | None:
    """The registration that covers the current request's blueprint, if any."""
    protected = state.registrations.protected
    for name in request.blueprints:
        if name in protected:
            return protected[name]
    return None


def _check_csrf() -> None:
    if current_app.config.get("WTF_CSRF_ENABLED", True):
        try:
            validate_csrf(request.form.get("csrf_token"))
        except ValidationError as exc:
            raise CSRFError(exc.args[0]) from None  # a 400 with the reason


def _client_mac() -> str | None:
    for name in MAC_PARAMETERS:
        value = request.args.get(name, "").strip().lower()
        if value and len(value) <= 32:
            return value
    return None


def _browser_key() -> tuple[str, bool]:
    """This browser's random key, and whether it was made just now (it has no code yet)."""
    pending = session.setdefault(SESSION_KEY, {})
    if "key" in pending:
        return pending["key"], False
    pending["key"] = secrets.token_urlsafe(24)
    session.modified = True
    return pending["key"], True


def own_url() -> str:
    """This page's URL with its query string exactly as received (the controller's data)."""
    query = request.query_string.decode("latin-1")
    return f"{request.path}?{query}" if query else request.path


BRAND_TEXT = ("name", "title")
BRAND_COLOURS = ("accent", "background")
_COLOUR = re.compile(r"#[0-9a-fA-F]{3,8}|[a-zA-Z]{3,20}")
"""Colours go into a style sheet: only hex colours and colour names, nothing that ends a rule."""


def branding(state: SMSState) -> dict[str, str]:
    """The host's branding for this request's guest page, checked (empty without a callback)."""
    rule = protection(state)
    if rule is None or rule.branding is None:
        return {}
    given = rule.branding()
    look = {key: str(given[key])[:120] for key in BRAND_TEXT if given.get(key)}
    look.update(
        (key, given[key])
        for key in BRAND_COLOURS
        if isinstance(given.get(key), str) and _COLOUR.fullmatch(given[key])
    )
    logo = str(given.get("logo_url") or "")
    if logo.startswith(("https://", "http://", "/")) and not logo.startswith("//"):
        look["logo_url"] = logo
    return look


def code_page(
    state: SMSState,
    *,
    error: str = "",
    notice: str = "",
    status: int = 200,
    wait: int | None = None,
    dead: bool = False,
) -> ResponseReturnValue:
    """The page asking for the code, for the pending challenge of this browser.

    :param wait: seconds until a resend is allowed, when the caller knows (a code just sent);
        otherwise the page also checks that the SMS has not failed meanwhile (then the guest
        gets the "not available" page instead: no code is coming).
    :param dead: the code can no longer succeed: the page offers a new code, no code field.
    """
    pending = session.get(SESSION_KEY) or {}
    if wait is None:
        if codes.message_failed(state, pending["challenge"]):
            raise OtpUnavailable(codes.not_available())
        wait = codes.resend_wait(state, pending["key"], pending["phone"])
    page = render_template(
        "sms/otp/code.html",
        phone=readable(pending["phone"]),  # parsed already when the number was checked
        digits=state.settings.otp.digits,
        resend_wait=wait,
        action=own_url(),
        error=error,
        notice=notice,
        dead=dead,
        branding=branding(state),
        **template_context(),
    )
    return page, status


P = ParamSpec("P")
R = TypeVar("R")


def database_or_unavailable(view: Callable[P, R]) -> Callable[P, R]:
    """A database that is down or stalled (a statement timeout) is an outage for the guest:
    the friendly "try again soon" page (503), not a server error. Nothing half-done remains:
    the transaction is rolled back, and no job is enqueued without a commit."""

    @functools.wraps(view)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return view(*args, **kwargs)
        except OperationalError:
            get_state().session.rollback()
            raise OtpUnavailable() from None

    return guarded


@database_or_unavailable
def verify_phone(raw_phone: str) -> ResponseReturnValue:
    """Start verification of ``raw_phone`` (see :meth:`sms_ext.SMS.verify_phone`)."""
    state = get_state()
    rule = protection(state)
    if rule is None:
        raise RuntimeError(
            "verify_phone() was called outside a protected blueprint: call "
            "'sms.protect(blueprint, on_verified=...)' for the splash blueprint first."
        )
    _check_csrf()
    policy = state.settings.otp
    phone = normalize_phone(
        (raw_phone or "")[:64],
        default_region=rule.region() or state.settings.default_region,
        allowed_regions=policy.allowed_regions,
        allow_fixed_line=policy.allow_fixed_line,
        allow_international_networks=policy.allow_international_networks,
    )
    if not rule.required():
        return rule.on_verified(phone, False)
    key, new_key = _browser_key()
    challenge_id = codes.issue(
        state,
        phone,
        session_key=key,
        client_ip=request.remote_addr,
        client_mac=_client_mac(),
        location=rule.location(),
        new_key=new_key,
        language=rule.language(),
        venue=branding(state).get("name"),
    )
    session[SESSION_KEY] = {"key": key, "challenge": challenge_id, "phone": phone}
    return code_page(state, wait=state.settings.otp.resend_seconds)


def _code_step(state: SMSState, rule: Protection, pending: dict[str, Any]) -> ResponseReturnValue:
    code = "".join(request.form.get("code", "")[:MAX_CODE_INPUT].split())
    digits = state.settings.otp.digits
    if not code.isdigit() or len(code) != digits:
        return code_page(
            state,
            error=gettext("Enter the %(digits)d-digit code from the text message.", digits=digits),
            status=400,
        )
    fingerprint = _fingerprint(pending, code)
    repeated = pending.get("wrong")
    if repeated and repeated[0] == fingerprint:  # a refresh re-posted the same wrong code
        return code_page(state, error=repeated[1], dead=repeated[2], status=400)
    verdict = codes.check(
        state,
        pending["challenge"],
        code,
        session_key=pending["key"],
        client_mac=_client_mac(),
        location=rule.location(),
    )
    if verdict.phone is None:
        session[SESSION_KEY] = {**pending, "wrong": [fingerprint, verdict.message, verdict.dead]}
        return code_page(state, error=verdict.message, dead=verdict.dead, status=400)
    session[SESSION_KEY] = {"key": pending["key"]}
    return rule.on_verified(verdict.phone, True)


def _fingerprint(pending: dict[str, Any], code: str) -> str:
    """Names a (challenge, typed code) pair in the session cookie without spelling the code."""
    seed = f"{pending['key']}\0{pending['challenge']}\0{code}".encode()
    return hashlib.sha256(seed).hexdigest()[:16]


def _resend_step(state: SMSState, rule: Protection, pending: dict[str, Any]) -> ResponseReturnValue:
    try:
        challenge_id = codes.issue(
            state,
            pending["phone"],
            session_key=pending["key"],
            client_ip=request.remote_addr,
            client_mac=_client_mac(),
            location=rule.location(),
            language=rule.language(),
            venue=branding(state).get("name"),
        )
    except OtpRateLimited as limited:
        return code_page(state, error=limited.description, status=429)
    session[SESSION_KEY] = {
        "key": pending["key"],
        "phone": pending["phone"],
        "challenge": challenge_id,
    }
    return code_page(
        state, notice=gettext("A new code is on its way."), wait=state.settings.otp.resend_seconds
    )


@database_or_unavailable
def handle_step() -> ResponseReturnValue | None:
    """``before_request``: answer the code page's posts on protected blueprints."""
    if request.method != "POST" or request.form.get("sms_step") not in ("code", "resend"):
        return None
    state = get_state()
    rule = protection(state)
    if rule is None:
        return None
    _check_csrf()
    pending = session.get(SESSION_KEY) or {}
    if not pending.get("challenge") or not pending.get("phone"):
        raise SessionExpired()
    step = _code_step if request.form["sms_step"] == "code" else _resend_step
    return make_response(step(state, rule, pending))


def error_page(error: OtpRateLimited | OtpUnavailable) -> ResponseReturnValue:
    """A friendly page for limits and outages raised while asking for a code."""
    state = get_state()
    try:
        look = branding(state)
    except OperationalError:  # the outage being reported may be the host's database
        state.session.rollback()
        look = {}
    page = render_template(
        "sms/otp/error.html", error=error, back=own_url(), branding=look, **template_context()
    )
    return page, error.code


def register_template_globals(app: Any) -> None:
    """``csrf_token()`` for the host's splash forms, unless Flask-WTF's CSRFProtect did it."""
    app.jinja_env.globals.setdefault("csrf_token", generate_csrf)
