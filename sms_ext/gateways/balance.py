"""Ask a gateway's provider for the account balance and keep the answer on the gateway."""

from __future__ import annotations

from ..models import Gateway, utcnow
from ..state import SMSState
from . import make_driver
from .http import http_session
from .masking import storable
from .store import gateway_config


def refresh_balance(state: SMSState, gateway: Gateway) -> None:
    """Check and store ``gateway``'s balance (or why there is none); commits."""
    session = http_session(deny_private=state.settings.gateway_deny_private)
    driver = make_driver(gateway.type, gateway_config(gateway, state.vault), session)
    amount = driver.check_balance()
    gateway.balance = amount
    gateway.balance_error = None if amount is not None else storable(driver.last_error)[:500]
    gateway.balance_checked_at = utcnow()
    state.session.commit()
