"""Voucher durations as admins write them: ``90m``, ``2h``, ``1d``, ``1h30m``."""

from __future__ import annotations

import re

from . import VoucherError

UNITS = {"m": 1, "h": 60, "d": 24 * 60}
MAX_MINUTES = 366 * 24 * 60
_PART = re.compile(r"(\d{1,6})\s*([mhd])")


def parse_duration(text: str) -> int:
    """Minutes of ``text``; :class:`~portal.vouchers.VoucherError` with a sentence otherwise."""
    compact = text.strip().lower()
    parts = _PART.findall(compact)
    if not compact or "".join(f"{n}{u}" for n, u in parts) != compact.replace(" ", ""):
        raise VoucherError(
            f"Duration {text[:20]!r} is not like 90m, 2h, 1d or 1h30m (minutes, hours, days)."
        )
    minutes = sum(int(number) * UNITS[unit] for number, unit in parts)
    if not 1 <= minutes <= MAX_MINUTES:
        raise VoucherError("Duration must be between 1 minute and 366 days.")
    return minutes


def format_duration(minutes: int) -> str:
    """``90`` -> ``1h30m``, ``1440`` -> ``1d``: the shortest text :func:`parse_duration` reads."""
    out = []
    for unit, size in (("d", UNITS["d"]), ("h", UNITS["h"]), ("m", 1)):
        count, minutes = divmod(minutes, size)
        if count:
            out.append(f"{count}{unit}")
    return "".join(out) or "0m"


def describe_duration(minutes: int) -> str:
    """``90`` -> ``1 hour 30 minutes``: for guests (SMS texts, the printed sheet)."""
    out = []
    for name, size in (("day", UNITS["d"]), ("hour", UNITS["h"]), ("minute", 1)):
        count, minutes = divmod(minutes, size)
        if count:
            out.append(f"{count} {name}{'' if count == 1 else 's'}")
    return " ".join(out) or "0 minutes"
