"""The sending window: local wall-clock hours in the campaign's timezone, DST included.

Times are minutes after local midnight; a window whose end comes before its start spans
midnight (22:00-06:00). Local times are turned into instants with :mod:`zoneinfo`, so "09:00"
stays 09:00 on both sides of a clock change.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from .spec import DAY_MINUTES, zone


def _minute(moment: datetime) -> int:
    return moment.hour * 60 + moment.minute


def is_open(window: tuple[int, int], timezone: str, now: datetime) -> bool:
    """Whether ``now`` (naive UTC) falls inside the window."""
    start, end = window
    minute = _minute(now.replace(tzinfo=UTC).astimezone(zone(timezone)))
    if start < end:
        return start <= minute < end
    return minute >= start or minute < end % DAY_MINUTES


def next_opening(window: tuple[int, int], timezone: str, now: datetime) -> datetime:
    """The next start of the window after ``now``, as naive UTC."""
    tz = zone(timezone)
    local = now.replace(tzinfo=UTC).astimezone(tz)
    hour, minute = divmod(window[0], 60)
    for days in range(3):  # today, tomorrow, or (past a DST gap) the day after
        day = local.date() + timedelta(days=days)
        opening = datetime.combine(day, time(hour, minute), tzinfo=tz)
        instant = opening.astimezone(UTC).replace(tzinfo=None)
        if instant > now:
            return instant
    raise AssertionError("a daily window opens within three days")  # pragma: no cover


def utc_offset(timezone: str, at: datetime) -> str:
    """``"+01:00"``: the zone's offset from UTC at ``at`` (naive UTC)."""
    offset = at.replace(tzinfo=UTC).astimezone(zone(timezone)).utcoffset() or timedelta()
    sign = "-" if offset < timedelta() else "+"
    minutes = abs(int(offset.total_seconds())) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"
