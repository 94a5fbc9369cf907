"""Ask a gateway's provider for the account balance: one HTTP request, one figure or a reason.

Twilio and SMSPortal drivers know their endpoint (:meth:`Driver.check_balance`); any other
gateway asks the URL of its balance check, built from its secrets and sender like a custom
gateway's send (placeholders encoded for their place, secrets masked in every error). The
same exchange as sends applies: the egress guard (``SMS_GATEWAY_DENY_PRIVATE``), the 1 MiB
answer cap and an overall deadline (the gateway's timeout).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ..models import Gateway
from ..state import SMSState
from . import DRIVERS, Driver, PreparedCall, make_driver, payload
from .balance_answer import BalanceAnswerError, from_json, from_text
from .balance_checks import BalanceCheck, body_type
from .custom import CONTENT_TYPES
from .fields import DEFAULT_TIMEOUT
from .http import exchange, http_session
from .masking import redact, storable
from .store import gateway_config

ERROR_CHARS = 500


@dataclass(frozen=True)
class Readout:
    """What one check found: a balance, or why there is none."""

    value: Decimal | None
    currency: str | None
    error: str = ""


def checkable(gateway: Gateway) -> bool:
    """Whether a balance can be asked for: the driver knows how, or a check URL is set."""
    driver = DRIVERS.get(gateway.type)
    if driver is not None and driver.check_balance is not Driver.check_balance:
        return True
    return gateway.type != "sandbox" and bool((gateway.balance_check or {}).get("url"))


def _values(config: Mapping[str, Any]) -> dict[str, str]:
    return {
        "api_key": str(config.get("api_key") or ""),
        "api_secret": str(config.get("api_secret") or ""),
        "from": str(config.get("from_number") or ""),
    }


def prepare(check: BalanceCheck, config: Mapping[str, Any]) -> PreparedCall:
    """The request of ``check`` with the gateway's secrets and sender filled in."""
    values = _values(config)
    headers = {name: payload.substitute(value, values) for name, value in check.headers}
    body: bytes | None = None
    if check.method == "POST" and check.body:
        kind = body_type(check.body)
        if kind == payload.JSON:
            body = payload.render_json(check.body, values)
        else:
            body = payload.render_form(check.body, values).encode("ascii")
        headers.setdefault("Content-Type", CONTENT_TYPES[kind])
    for name, value in headers.items():
        if any(ch in name + value for ch in "\r\n"):
            raise ValueError(f"Header {name} would contain a line break.")
    url = payload.render_url(check.url, values)
    return PreparedCall(method=check.method, url=url, headers=headers, body=body)


def read_balance(state: SMSState, gateway: Gateway) -> Readout:
    """Ask the provider now; never raises for provider or network trouble."""
    check = BalanceCheck.stored(gateway.balance_check)
    currency = check.currency or gateway.currency
    session = http_session(deny_private=state.settings.gateway_deny_private)
    config = gateway_config(gateway, state.vault)
    driver = make_driver(gateway.type, config, session)
    if not check.url or type(driver).check_balance is not Driver.check_balance:
        value = driver.check_balance()
        return Readout(value, currency, storable(driver.last_error or "")[:ERROR_CHARS])
    secrets = driver.secrets
    try:
        call = prepare(check, config)
    except (ValueError, payload.TemplateError) as exc:
        return Readout(None, currency, redact(f"request could not be built: {exc}", secrets))
    timeout = float(config.get("timeout") or DEFAULT_TIMEOUT)
    verify = bool(config.get("verify_ssl", True))
    answer = exchange(session, call, timeout=timeout, verify=verify, secrets=secrets)
    if answer.status is None or not 200 <= answer.status < 300:
        reason = answer.error or f"HTTP {answer.status}"
        return Readout(None, currency, storable(redact(reason, secrets))[:ERROR_CHARS])
    try:
        if check.pattern:
            value = from_text(answer.text, check.pattern)
        else:
            value = from_json(answer.json(), check.field)
    except BalanceAnswerError as exc:
        return Readout(None, currency, storable(redact(str(exc), secrets))[:ERROR_CHARS])
    return Readout(value, currency)
