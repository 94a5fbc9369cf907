"""Every error the extension raises on purpose, under one base :class:`SMSError`.

A host catches what it means: ``SMSError`` for anything of ours, a leaf for one case. The
errors a person may read (a guest, an admin) carry a sentence meant for them in ``str(exc)``.
Value errors stay ``ValueError`` subclasses and the guest-facing HTTP errors stay werkzeug
exceptions, so ``@app.errorhandler`` and older ``except ValueError`` code keep working.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from werkzeug.exceptions import ServiceUnavailable, TooManyRequests

from .i18n import gettext, ngettext


class SMSError(Exception):
    """Base of every error sms_ext raises on purpose."""


class ConfigError(SMSError, RuntimeError):
    """A ``SMS_*`` value is unusable; raised by ``init_app``."""


class MessageError(SMSError, ValueError):
    """A message cannot be queued as given (empty, too long, unknown kind); the text says why."""


PhoneErrorCode = Literal[
    "empty",
    "letters",
    "too_short",
    "too_long",
    "invalid_country_code",
    "invalid",
    "not_mobile",
    "region_not_allowed",
    "unparseable",
]


class PhoneNumberError(SMSError, ValueError):
    """A number we will not text; ``str(exc)`` is meant for the guest, ``code`` for the code."""

    def __init__(self, code: PhoneErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: PhoneErrorCode = code


class GatewayConfigError(SMSError, ValueError):
    """A gateway configuration was refused; ``errors`` maps a form field to its message."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__("; ".join(f"{name}: {message}" for name, message in self.errors.items()))


class TemplateError(SMSError, ValueError):
    """A gateway payload or SMS template cannot be used; the message says what to change."""


class LuaScriptError(SMSError):
    """A script could not be compiled or run; the message is meant for the admin who wrote it."""


class VaultError(SMSError, RuntimeError):
    """Stored secrets cannot be read with the configured key."""


class CampaignError(SMSError, ValueError):
    """A campaign cannot be saved or acted on as asked (unknown campaign, a pause of a finished
    one, a spec with no text or a bad timezone); ``str(exc)`` is a sentence for the admin."""


def wait_text(seconds: int) -> str:
    """``"45 seconds"``, ``"4 minutes"``: how long to wait, in words a guest reads at a glance."""
    if seconds < 60:
        return ngettext("%(num)d second", "%(num)d seconds", seconds)
    minutes = -(-seconds // 60)
    if minutes < 90:
        return ngettext("%(num)d minute", "%(num)d minutes", minutes)
    return ngettext("%(num)d hour", "%(num)d hours", -(-minutes // 60))


class OtpRateLimited(SMSError, TooManyRequests):
    """Too many codes asked for; ``retry_after`` seconds until the next one is allowed.

    The wording is the same whichever limit refused, so it never tells whether a number was
    seen before.
    """

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(
            gettext(
                "Too many codes were requested. Please try again in %(wait)s.",
                wait=wait_text(retry_after),
            )
        )


class OtpUnavailable(SMSError, ServiceUnavailable):
    """Codes cannot be sent right now; without a ``description``, the outage's sentence (rate
    limits cannot be checked: Redis or the database is unreachable)."""

    def __init__(self, description: str | None = None) -> None:
        super().__init__(
            description
            or gettext("Text-message verification is unavailable right now. Please try again soon.")
        )
