"""What the drivers of providers with their own API (Twilio, SMSPortal) share.

Providers document one key casing and send another (SMSPortal's docs show PascalCase, its
clients camelCase), so answers are read ignoring case. Every driver words a provider's error
alike, so the admin's SMS log reads the same whichever gateway sent a message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import Decimal, InvalidOperation
from typing import Any

from .base import Driver, PreparedCall
from .fields import DEFAULT_TIMEOUT
from .http import Exchange, exchange
from .masking import redact

MESSAGE_CHARS = 300
"""How much of a provider's error message goes into ``SendResult.error`` (the excerpt has more)."""


def lookup(document: object, *names: str) -> Any:
    """The value under the first of ``names`` present in a JSON object, ignoring key case.

    ``None`` when ``document`` is not an object or has none of the keys, so callers can chain
    lookups through answers of unknown shape without checking types at each step.
    """
    if not isinstance(document, dict):
        return None
    lowered = {str(key).lower(): value for key, value in document.items()}
    for name in names:
        if name.lower() in lowered:
            return lowered[name.lower()]
    return None


def succeeded(ex: Exchange) -> bool:
    """The provider answered with a 2xx status (which still says nothing about the body)."""
    return ex.status is not None and 200 <= ex.status < 300


def perform(driver: Driver, call: PreparedCall) -> Exchange:
    """Send ``call`` on the driver's session with its timeout, masking its secrets."""
    timeout = float(driver.config.get("timeout") or DEFAULT_TIMEOUT)
    return exchange(driver.session, call, timeout=timeout, secrets=driver.secrets)


def failure_text(provider: str, ex: Exchange, code: object, message: object) -> str:
    """``"Twilio error 21211: The 'To' number ..."``, ``"SMSPortal answered HTTP 503"``, or
    the network trouble when there was no answer at all.

    The provider's own code comes first because that is what its support pages are indexed by;
    the HTTP status stands in when the body carried no code.
    """
    if ex.response is None:
        return ex.error
    label = (
        f"{provider} error {code}"
        if code not in (None, "")
        else f"{provider} answered HTTP {ex.status}"
    )
    text = str(message).strip() if message not in (None, "") else ""
    return f"{label}: {text[:MESSAGE_CHARS]}" if text else label


def read_balance(
    ex: Exchange, describe: Callable[[Exchange], str], secrets: Iterable[str]
) -> tuple[Decimal | None, str]:
    """The ``balance`` of a balance answer, or ``None`` and why there is none.

    Checking a balance is advisory (a dashboard figure, a low-credit warning), so a failure is
    reported as a reason to show rather than raised into the page that asked.

    :param describe: the driver's wording of a failed exchange (network error or error body).
    """
    if not succeeded(ex):
        return None, redact(describe(ex), secrets)
    value = lookup(ex.json(), "balance")
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        try:
            amount = Decimal(str(value).strip())
        except InvalidOperation:
            amount = None
        if amount is not None and amount.is_finite():
            return amount, ""
    return None, f"unexpected answer (HTTP {ex.status}): no balance in it"
