"""Guest verification codes: issue, resend, check.

A code is random (``secrets``), stored only as an HMAC keyed from the encryption key and salted
with the browser session's key, compared in constant time, single use, short lived, and dead
after too many wrong tries. Wrong tries are counted by one conditional UPDATE, so parallel
guesses cannot go past the limit; sending is rate limited per phone, client and location
before anything is written.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import math
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from jinja2 import Template
from jinja2.sandbox import SandboxedEnvironment
from redis.exceptions import RedisError
from sqlalchemy import CursorResult, Row, insert, select, update

from ..errors import OtpRateLimited, OtpUnavailable
from ..messages import outbox
from ..models import CHALLENGES, Kind, OtpChallenge, utcnow
from ..state import SMSState
from .limits import Limiter

_templates = SandboxedEnvironment(autoescape=False)


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
        }
        prefix = f"sms_ext:{state.settings.queue}"
        limiter = state.otp_limiter = Limiter(state.redis, groups, prefix=prefix)
    return limiter


@functools.lru_cache(maxsize=32)
def _compiled(template: str) -> Template:
    return _templates.from_string(template)


def digest(state: SMSState, session_key: str, phone: str, code: str) -> str:
    """HMAC of a code, bound to the session and the phone: a leaked table reveals nothing."""
    key = hashlib.sha256(b"sms_ext otp\0" + state.settings.encryption_key.encode()).digest()
    return hmac.new(key, f"{session_key}\0{phone}\0{code}".encode(), hashlib.sha256).hexdigest()


def new_code(digits: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(digits))


def message_text(state: SMSState, code: str, host: str) -> str:
    """The SMS: the configured template, then the WebOTP line that lets phones autofill."""
    text = _compiled(state.settings.otp.message).render(code=code).strip()
    return f"{text}\n\n@{host} #{code}"


def latest(state: SMSState, session_key: str) -> Row | None:
    """The session's newest challenge: id, created_at, used_at, revoked_at."""
    table = CHALLENGES
    query = (
        select(table.c.id, table.c.created_at, table.c.used_at, table.c.revoked_at)
        .where(table.c.session_key == session_key)
        .order_by(table.c.id.desc())
        .limit(1)
    )
    return state.session.execute(query).first()


def _cooldown(state: SMSState, last: Row | None) -> int:
    if last is None:
        return 0
    ready = last.created_at + timedelta(seconds=state.settings.otp.resend_seconds)
    return max(0, math.ceil((ready - utcnow()).total_seconds()))


def resend_wait(state: SMSState, session_key: str) -> int:
    """Seconds before this session may ask for another code (0: now)."""
    return _cooldown(state, latest(state, session_key))


def issue(
    state: SMSState,
    phone: str,
    *,
    session_key: str,
    host: str,
    client_ip: str | None,
    client_mac: str | None,
    location: str | None,
) -> int:
    """Send a new code to ``phone`` for this session (its earlier code dies); returns the
    challenge id.

    Raises :class:`OtpRateLimited` when a limit or the resend cooldown refuses, and
    :class:`OtpUnavailable` when Redis cannot be asked (we fail closed: no limits, no SMS).
    """
    last = latest(state, session_key)
    cooldown = _cooldown(state, last)
    if cooldown:
        raise OtpRateLimited(cooldown)
    try:
        wait = _limiter(state).hit(
            [
                ("location", location),
                ("client", client_mac),
                ("client", client_ip),
                ("phone", phone),
            ]
        )
    except RedisError:
        raise OtpUnavailable() from None
    if wait:
        raise OtpRateLimited(wait)
    now = utcnow()
    session = state.session
    if last is not None and last.used_at is None and last.revoked_at is None:
        # Each issue ends the one before, so a session has at most this one open code.
        session.execute(
            update(OtpChallenge)
            .where(OtpChallenge.id == last.id, OtpChallenge.used_at.is_(None))
            .values(revoked_at=now)
        )
    code = new_code(state.settings.otp.digits)
    expires_at = now + timedelta(seconds=state.settings.otp.ttl_seconds)
    text = message_text(state, code, host)
    sms = outbox.compose(
        state, phone, text, kind=Kind.OTP, location=location, expires_at=expires_at
    )
    [message_id] = outbox.queue(state, [sms])
    table = CHALLENGES
    challenge_id = session.execute(
        insert(table)
        .values(
            phone=phone,
            code_hmac=digest(state, session_key, phone, code),
            session_key=session_key,
            client_mac=client_mac,
            client_ip=client_ip,
            location=location,
            message_id=message_id,
            created_at=now,
            expires_at=expires_at,
            failed_attempts=0,
        )
        .returning(table.c.id)
    ).scalar_one()
    session.commit()  # the challenge and its SMS together; the job is enqueued after this
    return challenge_id


def check(
    state: SMSState, challenge_id: int, code: str, *, session_key: str, client_mac: str | None
) -> Verdict:
    """Check ``code`` against the session's challenge; each call counts as one try."""
    table = CHALLENGES
    now = utcnow()
    max_attempts = state.settings.otp.max_attempts
    session = state.session
    row = session.execute(
        update(table)
        .where(
            table.c.id == challenge_id,
            table.c.session_key == session_key,
            table.c.used_at.is_(None),
            table.c.revoked_at.is_(None),
            table.c.expires_at > now,
            table.c.failed_attempts < max_attempts,
        )
        .values(failed_attempts=table.c.failed_attempts + 1)
        .returning(table.c.phone, table.c.code_hmac, table.c.failed_attempts, table.c.client_mac)
    ).first()
    session.commit()
    if row is None:
        return Verdict(
            False, message="This code is no longer valid. Ask for a new code.", dead=True
        )
    if row.client_mac and client_mac != row.client_mac:
        return Verdict(False, message="This code was sent for another device.", dead=True)
    if hmac.compare_digest(digest(state, session_key, row.phone, code), row.code_hmac):
        used: CursorResult[Any] = session.execute(  # type: ignore[assignment]  # an UPDATE
            update(table)
            .where(table.c.id == challenge_id, table.c.used_at.is_(None))
            .values(used_at=now)
        )
        session.commit()
        if used.rowcount == 1:
            return Verdict(True, phone=row.phone)
        return Verdict(False, message="This code was already used.", dead=True)
    left = max_attempts - row.failed_attempts
    if left <= 0:
        return Verdict(False, message="Too many wrong codes. Ask for a new code.", dead=True)
    return Verdict(
        False, message=f"That code is not right. {left} tr{'y' if left == 1 else 'ies'} left."
    )
