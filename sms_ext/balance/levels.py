"""What a balance means for the venue: fine, low, very low, gone, or unknown."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

from ..gateways.balance_checks import BalanceCheck
from ..models import Gateway


class Level(StrEnum):
    """Alert levels, best first; stored in ``Gateway.balance_alert`` as their value."""

    OK = "ok"
    MIN = "min"
    """Below the minimum."""
    HALF = "half"
    """Below half of the minimum."""
    ZERO = "zero"
    """Zero or less: sends will fail."""
    UNKNOWN = "unknown"
    """``SMS_BALANCE_UNKNOWN_AFTER`` checks in a row gave no figure."""


ALERTING = frozenset({Level.MIN, Level.HALF, Level.ZERO, Level.UNKNOWN})
"""Levels the dashboard banner shows."""


def level_of(value: Decimal, minimum: Decimal | None) -> Level:
    """The level of a balance figure; without a minimum only zero is a worry."""
    if value <= 0:
        return Level.ZERO
    if minimum is None:
        return Level.OK
    if value < minimum / 2:
        return Level.HALF
    if value < minimum:
        return Level.MIN
    return Level.OK


def current_level(gateway: Gateway, unknown_after: int) -> Level | None:
    """The level the gateway is at now (``None``: never read). A failed check short of
    ``unknown_after`` in a row leaves the last figure, and so the level, as it was."""
    if (gateway.balance_failures or 0) >= unknown_after:
        return Level.UNKNOWN
    if gateway.balance is None:
        return None
    return level_of(gateway.balance, BalanceCheck.stored(gateway.balance_check).minimum)
