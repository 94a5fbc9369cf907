"""Guests refused because a daily budget of codes ran out, counted for the admin dashboard.

A reached budget (``SMS_OTP_LIMIT_LOCATION_DAY``, ``SMS_OTP_LIMIT_COUNTRY``) is either an
attack being held off or a budget set too low for the venue; either way the admin must see it.
Each refusal adds one to a Redis hash per UTC day (field ``location:<key>`` or
``country:<calling code>``), so the dashboard reads a whole day in one call.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date

from redis.exceptions import RedisError

from ..models import utcnow
from ..state import SMSState

log = logging.getLogger("sms_ext")

KEEP_SECONDS = 3 * 86400
"""A day's counts outlive the day a little, for the admin in another time zone."""
BUDGET_GROUPS = {"location_day": "location", "country": "country"}
"""Limiter groups that are daily budgets, and the kind of place they name."""


@dataclass(frozen=True)
class BudgetRefusals:
    """Guests refused today by one budget."""

    kind: str
    """``"location"`` or ``"country"``."""
    name: str
    """The location key, or the calling code's digits."""
    refused: int

    @property
    def text(self) -> str:
        where = f"at {self.name}" if self.kind == "location" else f"for +{self.name} numbers"
        guests = f"{self.refused} guest{'s' if self.refused != 1 else ''}"
        return f"Daily budget reached {where} ({guests} refused today)."


def _key(state: SMSState, day: date) -> str:
    return f"sms_ext:{state.settings.queue}:budget-refused:{day.isoformat()}"


def record(state: SMSState, groups: frozenset[str], names: dict[str, str | None]) -> None:
    """Count one refused guest for each budget among ``groups`` (``names`` maps a limiter
    group to its identity). Best effort: a lost count must not fail the guest's page."""
    fields = [
        f"{BUDGET_GROUPS[group]}:{names[group]}"
        for group in sorted(groups)
        if group in BUDGET_GROUPS and names.get(group)
    ]
    if not fields:
        return
    key = _key(state, utcnow().date())
    try:
        pipe = state.redis.pipeline(transaction=False)
        for field in fields:
            pipe.hincrby(key, field, 1)
        pipe.expire(key, KEEP_SECONDS)
        pipe.execute()
    except RedisError as exc:
        log.warning("could not count a guest refused by a daily budget (%s)", exc)


def today(state: SMSState) -> list[BudgetRefusals]:
    """Today's (UTC) refusals by budget, most refused first; raises ``RedisError``."""
    counts = state.redis.hgetall(_key(state, utcnow().date()))
    found = []
    for field, count in counts.items():
        text = field.decode() if isinstance(field, bytes) else field
        kind, _, name = text.partition(":")
        found.append(BudgetRefusals(kind, name, int(count)))
    return sorted(found, key=lambda b: (-b.refused, b.kind, b.name))
