"""The balance history of a gateway page: an inline SVG line drawn on the server (readable
without JavaScript) and the same readings as rows for a table (screen readers, exact figures).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import BalanceReading, Gateway, utcnow

DAYS = 30
"""How far back the chart reaches."""
MAX_POINTS = 500
WIDTH, HEIGHT, PAD = 600, 140, 8
TABLE_ROWS = 10


@dataclass
class History:
    """What the gateway page draws."""

    readings: list[BalanceReading] = field(default_factory=list)
    """Oldest first, from the last :data:`DAYS` days."""
    points: str = ""
    """SVG polyline points of the readings that have a figure."""
    minimum_y: float | None = None
    """Where the minimum's line goes, when it is inside the chart."""
    low: Decimal | None = None
    high: Decimal | None = None
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def recent(self) -> list[BalanceReading]:
        """The last readings, newest first, for the table."""
        return self.readings[::-1][:TABLE_ROWS]


def history(session: Session, gateway: Gateway, *, now: datetime | None = None) -> History:
    """The chart of ``gateway``'s readings of the last :data:`DAYS` days."""
    since = (now or utcnow()) - timedelta(days=DAYS)
    newest = session.scalars(
        select(BalanceReading)
        .where(BalanceReading.gateway_id == gateway.id, BalanceReading.checked_at >= since)
        .order_by(BalanceReading.checked_at.desc(), BalanceReading.id.desc())
        .limit(MAX_POINTS)
    ).all()
    readings = list(reversed(newest))
    chart = History(readings=readings)
    figures = [r for r in readings if r.value is not None]
    if not figures:
        return chart
    minimum = (gateway.balance_check or {}).get("minimum")
    values = [r.value for r in figures if r.value is not None]
    low, high = min(values), max(values)
    if minimum not in (None, ""):
        low, high = min(low, Decimal(str(minimum))), max(high, Decimal(str(minimum)))
    low = min(low, Decimal(0))
    span = (high - low) or Decimal(1)
    first, last = figures[0].checked_at, figures[-1].checked_at
    seconds = (last - first).total_seconds() or 1.0

    def y(value: Decimal) -> float:
        return round(HEIGHT - PAD - float((value - low) / span) * (HEIGHT - 2 * PAD), 1)

    points = []
    for reading in figures:
        x = PAD + (reading.checked_at - first).total_seconds() / seconds * (WIDTH - 2 * PAD)
        if len(figures) == 1:
            x = WIDTH / 2
        points.append(f"{round(x, 1)},{y(reading.value)}")  # type: ignore[arg-type]
    chart.points = " ".join(points)
    chart.low, chart.high = low, high
    if minimum not in (None, ""):
        chart.minimum_y = y(Decimal(str(minimum)))
    return chart
