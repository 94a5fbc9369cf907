"""Guest verification codes: issue, resend, check.

A code is random (``secrets``), stored only as an HMAC keyed from the encryption key and salted
with the browser session's key, compared in constant time, single use, short lived, and dead
after too many wrong tries, and only accepted at the location it was sent for. Wrong tries
are counted by one conditional UPDATE, so parallel guesses cannot go past the limit; sending
is rate limited per client, location and phone, within daily budgets per location and per
country, before anything is written. The code never reaches the database in clear: the
message row holds the text masked and the real text encrypted (:mod:`..messages.secrecy`).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy import Connection, CursorResult, Row, bindparam, insert, select, update

from .. import runtime
from ..errors import OtpRateLimited, OtpUnavailable
from ..i18n import gettext, ngettext
from ..messages import outbox, secrecy, template_store
from ..models import CHALLENGES, MESSAGES, Gateway, Kind, Status, utcnow
from ..state import SMSState
from ..text import templates
from ..text.phone import calling_code
from . import budgets
from .limits import Limiter

# Core statements built once: a guest's POST runs them as they are (no ORM, no statement
# building or cache-key work per request), on the session's connection and transaction.
_c = CHALLENGES.c
LATEST = (
    select(_c.id, _c.phone, _c.created_at, _c.used_at, _c.revoked_at)
    .where(_c.session_key == bindparam("key"))
    .order_by(_c.id.desc())
    .limit(1)
)
REVOKE = (
    update(CHALLENGES)
    .where(_c.id == bindparam("challenge_id"), _c.used_at.is_(None))
    .values(revoked_at=bindparam("now"))
)
CREATE = insert(CHALLENGES).returning(_c.id)
TRY = (
    update(CHALLENGES)
    .where(
        _c.id == bindparam("challenge_id"),
        _c.session_key == bindparam("key"),
        _c.used_at.is_(None),
        _c.revoked_at.is_(None),
        _c.expires_at > bindparam("now"),
        _c.failed_attempts < bindparam("max_attempts"),
    )
    .values(failed_attempts=_c.failed_attempts + 1)
    .returning(_c.phone, _c.code_hmac, _c.failed_attempts, _c.client_mac, _c.location)
)
USE = (
    update(CHALLENGES)
    .where(_c.id == bindparam("challenge_id"), _c.used_at.is_(None))
    .values(used_at=bindparam("now"))
)
MESSAGE_STATUS = (
    select(MESSAGES.c.status)
    .join_from(CHALLENGES, MESSAGES, _c.message_id == MESSAGES.c.id)
    .where(_c.id == bindparam("challenge_id"))
)
_g = Gateway.__table__.c
ENABLED_GATEWAYS = select(_g.locations).where(_g.enabled.is_(True))


def not_available() -> str:
    """Told when no code can come (sending off, no gateway, the SMS failed); the page's heading
    says "SMS codes are not available right now"."""
    return gettext(
        "No text message can be sent right now. Please try again later, or ask the staff."
    )


@dataclass(frozen=True)
class Verdict:
    """The outcome of checking one code."""

    ok: bool
    phone: str | None = None
    message: str = ""
    """What to tell the guest when not ok."""
    dead: bool = False
    """The challenge can no longer succeed: the guest needs a new code."""


def _limiter(state: SMSState) -> Limiter:
    """The app's OTP limiter, built on first use (parsing limits costs per request otherwise)."""
    limiter = state.otp_limiter
    if limiter is None:
        otp = state.settings.otp
        groups = {
            "phone": otp.limit_phone,
            "client": otp.limit_client,
            "location": otp.limit_location,
            "location_day": otp.limit_location_day,
            "country": otp.limit_country,
        }
        prefix = f"sms_ext:{state.settings.queue}"
        limiter = state.otp_limiter = Limiter(state.redis, groups, prefix=prefix)
    return limiter


def digest(state: SMSState, session_key: str, phone: str, code: str) -> str:
    """HMAC of a code, bound to the session and the phone: a leaked table reveals nothing."""
    key = hashlib.sha256(b"sms_ext otp\0" + state.settings.encryption_key.encode()).digest()
    return hmac.new(key, f"{session_key}\0{phone}\0{code}".encode(), hashlib.sha256).hexdigest()


def new_code(digits: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(digits))


def otp_template(state: SMSState, language: str | None) -> str:
    """The template of the code SMS: the admin's ``otp`` template in ``language`` (else in
    English), else ``SMS_OTP_MESSAGE``."""
    body = template_store.body_for(state.session, "otp", language)
    return state.settings.otp.message if body is None else body


def message_text(state: SMSState, template: str, code: str, venue: str | None = None) -> str:
    """The SMS: ``template`` with the code, then the WebOTP line that lets phones autofill.

    The line's host is configuration (``SMS_OTP_WEBOTP_HOST`` or ``SERVER_NAME``), never the
    request's Host header, which anyone can set; without one the SMS has no such line.
    """
    minutes = max(1, state.settings.otp.ttl_seconds // 60)
    text = templates.render(template, {"code": code, "minutes": minutes, "venue": venue or ""})
    host = state.settings.otp.webotp_host
    return f"{text}\n\n@{host} #{code}" if host else text


def _connection(state: SMSState) -> Connection:
    """The session's connection (and transaction) for the challenges' table."""
    return state.session.connection(bind_arguments={"clause": CHALLENGES})


def latest(state: SMSState, session_key: str) -> Row | None:
    """The session's newest challenge: id, phone, created_at, used_at, revoked_at."""
    return _connection(state).execute(LATEST, {"key": session_key}).first()


def _cooldown(state: SMSState, last: Row | None, phone: str) -> int:
    """The resend cooldown is per phone: a guest who mistyped the number may correct it at
    once (the limits per client and location still count every code)."""
    if last is None or last.phone != phone:
        return 0
    ready = last.created_at + timedelta(seconds=state.settings.otp.resend_seconds)
    return max(0, math.ceil((ready - utcnow()).total_seconds()))


def resend_wait(state: SMSState, session_key: str, phone: str) -> int:
    """Seconds before this session may ask for another code to ``phone`` (0: now)."""
    return _cooldown(state, latest(state, session_key), phone)


def ensure_available(state: SMSState, location: str | None) -> None:
    """Raise :class:`OtpUnavailable` when no code could go out: sending is switched off in the
    settings, or no enabled gateway serves ``location``. Checked before any limit counts, so
    a guest told "not available" has used up nothing."""
    if not runtime.current(state).sending_enabled:
        raise OtpUnavailable(not_available())
    served = _connection(state).execute(ENABLED_GATEWAYS).scalars()
    if not any(not locations or location in locations for locations in served):
        raise OtpUnavailable(not_available())


def message_failed(state: SMSState, challenge_id: int) -> bool:
    """Whether the SMS of this challenge has already failed (the guest will get no code)."""
    status = _connection(state).execute(MESSAGE_STATUS, {"challenge_id": challenge_id}).scalar()
    return status == Status.FAILED


def issue(
    state: SMSState,
    phone: str,
    *,
    session_key: str,
    client_ip: str | None,
    client_mac: str | None,
    location: str | None,
    new_key: bool = False,
    language: str | None = None,
    venue: str | None = None,
) -> int:
    """Send a new code to ``phone`` for this session (its earlier code dies); returns the
    challenge id.

    ``new_key``: the session key was made in this request, so no challenge can have it and
    the cooldown lookup is skipped (a guest's first code). ``language`` picks the OTP
    template (:func:`otp_template`); ``venue`` fills its ``{{ venue }}``.

    Raises :class:`OtpRateLimited` when a limit, a daily budget or the resend cooldown
    refuses, and :class:`OtpUnavailable` when no code can be sent (sending off, no gateway for
    the location) or Redis cannot be asked (we fail closed: no limits, no SMS).
    """
    ensure_available(state, location)
    last = None if new_key else latest(state, session_key)
    cooldown = _cooldown(state, last, phone)
    if cooldown:
        raise OtpRateLimited(cooldown)
    country = calling_code(phone)
    # The client first: the cheapest key, and the one an attacker cannot spread.
    checks = [
        ("client", client_ip),
        ("client", client_mac),
        ("location", location),
        ("location_day", location),
        ("country", country),
        ("phone", phone),
    ]
    try:
        refusal = _limiter(state).hit(checks)
    except RedisError:
        raise OtpUnavailable() from None
    if refusal:
        budgets.record(state, refusal.groups, {"location_day": location, "country": country})
        raise OtpRateLimited(refusal.wait)
    now = utcnow()
    session = state.session
    if last is not None and last.used_at is None and last.revoked_at is None:
        # Each issue ends the one before, so a session has at most this one open code.
        _connection(state).execute(REVOKE, {"challenge_id": last.id, "now": now})
    code = new_code(state.settings.otp.digits)
    expires_at = now + timedelta(seconds=state.settings.otp.ttl_seconds)
    template = otp_template(state, language)
    text = message_text(state, template, code, venue)
    sms = outbox.compose(
        state, phone, text, kind=Kind.OTP, location=location, expires_at=expires_at
    )
    if sms["status"] != Status.QUEUED:  # sending was switched off a moment ago
        raise OtpUnavailable(not_available())
    # Encoding and segments are those of the real text; only the sealed copy holds the code.
    sms.update(
        body=message_text(state, template, secrecy.masked(code), venue),
        code_sealed=secrecy.seal(state.vault, text, code),
    )
    [message_id] = outbox.queue(state, [sms])
    challenge = {
        "phone": phone,
        "code_hmac": digest(state, session_key, phone, code),
        "session_key": session_key,
        "client_mac": client_mac,
        "client_ip": client_ip,
        "location": location,
        "message_id": message_id,
        "created_at": now,
        "expires_at": expires_at,
        "failed_attempts": 0,
    }
    challenge_id: int = _connection(state).execute(CREATE, challenge).scalar_one()
    session.commit()  # the challenge and its SMS together; the job is enqueued after this
    return challenge_id


def check(
    state: SMSState,
    challenge_id: int,
    code: str,
    *,
    session_key: str,
    client_mac: str | None,
    location: str | None,
) -> Verdict:
    """Check ``code`` against the session's challenge at ``location``; each call counts as one
    try. A code only works where it was sent for (another splash page may log the guest in
    elsewhere, through another controller)."""
    now = utcnow()
    max_attempts = state.settings.otp.max_attempts
    session = state.session
    row = (
        _connection(state)
        .execute(
            TRY,
            {
                "challenge_id": challenge_id,
                "key": session_key,
                "now": now,
                "max_attempts": max_attempts,
            },
        )
        .first()
    )
    session.commit()
    if row is None:
        return Verdict(
            False, message=gettext("This code is no longer valid. Ask for a new code."), dead=True
        )
    if row.client_mac and client_mac != row.client_mac:
        return Verdict(False, message=gettext("This code was sent for another device."), dead=True)
    if row.location != location:
        return Verdict(False, message=gettext("This code was sent for another place."), dead=True)
    if hmac.compare_digest(digest(state, session_key, row.phone, code), row.code_hmac):
        used: CursorResult[Any] = _connection(state).execute(
            USE, {"challenge_id": challenge_id, "now": now}
        )
        session.commit()
        if used.rowcount == 1:
            return Verdict(True, phone=row.phone)
        return Verdict(False, message=gettext("This code was already used."), dead=True)
    left = max_attempts - row.failed_attempts
    if left <= 0:
        return Verdict(
            False, message=gettext("Too many wrong codes. Ask for a new code."), dead=True
        )
    message = ngettext(
        "That code is not right. %(num)d try left.",
        "That code is not right. %(num)d tries left.",
        left,
    )
    return Verdict(False, message=message)
