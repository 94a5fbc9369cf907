"""One email per crossing: the level a gateway was last alerted at changes with a conditional
UPDATE, so of two workers that see the same crossing exactly one sends the email.

The level is recorded as alerted only once the email went out: the change is claimed first
(the UPDATE), and given back when SMTP fails, so the next check tries again. Nothing is lost
silently (a failure is logged), and nothing is sent twice.
"""

from __future__ import annotations

import logging

from sqlalchemy import ColumnElement, update

from ..gateways.balance_checks import BalanceCheck
from ..models import Gateway
from ..state import SMSState
from . import mail
from .levels import Level, current_level

log = logging.getLogger("sms_ext")


def _alerted_was(value: str | None) -> ColumnElement[bool]:
    return Gateway.balance_alert.is_(None) if value is None else Gateway.balance_alert == value


def _move(state: SMSState, gateway_id: int, old: str | None, new: str | None) -> bool:
    """Set the alerted level from ``old`` to ``new`` if nobody did first; commits."""
    moved = state.session.execute(
        update(Gateway)
        .where(Gateway.id == gateway_id, _alerted_was(old))
        .values(balance_alert=new)
        .execution_options(synchronize_session=False)
    )
    state.session.commit()
    return bool(moved.rowcount)  # type: ignore[attr-defined]


def settle(state: SMSState, gateway_id: int) -> Level | None:
    """Alert on the gateway's level if it changed since the last alert; returns the level
    alerted now, or ``None`` (no change, someone else did, no check, or SMTP failed)."""
    gateway = state.session.get(Gateway, gateway_id)
    if gateway is None:
        return None
    state.session.refresh(gateway)
    check = BalanceCheck.stored(gateway.balance_check)
    if not check.enabled:
        return None
    level = current_level(gateway, state.settings.balance_unknown_after)
    previous = gateway.balance_alert
    if level is None or level == (previous or Level.OK):
        return None
    if not _move(state, gateway_id, previous, level):
        return None  # another worker alerted this crossing
    if check.emails:
        state.session.refresh(gateway)
        try:
            mail.send(mail.compose(state, gateway, level, check))
        except Exception:
            log.exception(
                "balance alert for %s (%s) not emailed; will try again at the next check",
                gateway.name,
                level,
            )
            _move(state, gateway_id, level, previous)
            return None
    log.info("balance of %s: %s", gateway.name, level)
    return level
