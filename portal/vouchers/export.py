"""Vouchers as CSV, safe to open in a spreadsheet (cells that would be formulas are quoted
with an apostrophe, as in the SMS log export)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from datetime import datetime

from sms_ext.admin.logs import neutralise

from ..models import Voucher
from .durations import format_duration

COLUMNS = (
    "code",
    "batch",
    "state",
    "duration",
    "data_limit_mb",
    "devices_allowed",
    "devices_used",
    "valid_until_utc",
    "locations",
    "created_utc",
)


def _iso(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") + "Z" if value else ""


def csv_lines(vouchers: Iterable[Voucher], now: datetime) -> Iterator[str]:
    """The header, then one line per voucher."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    for voucher in vouchers:
        writer.writerow(
            neutralise(cell)
            for cell in (
                voucher.code,
                voucher.batch,
                voucher.state_at(now),
                format_duration(voucher.duration_minutes),
                voucher.data_limit_mb or "",
                voucher.devices_allowed,
                len(voucher.devices),
                _iso(voucher.valid_until),
                " ".join(location.slug for location in voucher.locations),
                _iso(voucher.created_at),
            )
        )
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()
