"""How well each gateway delivers, from delivery receipts: the dashboard's delivery rate and
median time to deliver.

Delivery rate = delivered / (delivered + undelivered + failed after the gateway took it).
Messages still ``sent`` (no final receipt yet, or a gateway that sends none) are left out:
they are neither a success nor a failure yet, and counting them would make a gateway without
receipts look like one that never delivers. A message we failed ourselves (never accepted by
a gateway, ``sent_at`` empty) is not the gateway's doing and is left out too.

The median (p50) of ``delivered_at - sent_at`` is computed in the database on both backends,
without fetching rows: SQLite has no ``percentile_cont``, so both use window functions (the
rows' rank and count per gateway) and average the one or two middle values, which is what
``percentile_cont(0.5)`` gives.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Float, and_, case, cast, func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from ..models import Message, Status


@dataclass(frozen=True)
class Delivery:
    """Receipts of one gateway over a period."""

    delivered: int
    not_delivered: int
    p50_seconds: float | None

    @property
    def rate(self) -> float | None:
        """Share delivered among messages with a final receipt; None without any."""
        settled = self.delivered + self.not_delivered
        return self.delivered / settled if settled else None


def _seconds(session: Session) -> ColumnElement[float]:
    """``delivered_at - sent_at`` in seconds, in the dialect at hand."""
    if session.get_bind().dialect.name == "sqlite":
        days = func.julianday(Message.delivered_at) - func.julianday(Message.sent_at)
        return cast(days * 86400.0, Float)
    return cast(func.extract("epoch", Message.delivered_at - Message.sent_at), Float)


def delivery_by_gateway(session: Session, since: datetime) -> dict[int | None, Delivery]:
    """Per gateway id, receipts of the messages created since ``since`` (two grouped queries
    over the ``created_at`` index range)."""
    in_period = [Message.created_at >= since, Message.gateway_id.is_not(None)]
    not_delivered = and_(
        Message.status.in_([Status.UNDELIVERED, Status.FAILED]), Message.sent_at.is_not(None)
    )
    counts = session.execute(
        select(
            Message.gateway_id,
            func.count().filter(Message.status == Status.DELIVERED),
            func.count().filter(not_delivered),
        )
        .where(*in_period)
        .group_by(Message.gateway_id)
    ).all()

    seconds = _seconds(session).label("seconds")
    ranked = (
        select(
            Message.gateway_id.label("gateway_id"),
            seconds,
            func.row_number().over(partition_by=Message.gateway_id, order_by=seconds).label("n"),
            func.count().over(partition_by=Message.gateway_id).label("total"),
        )
        .where(
            *in_period,
            Message.status == Status.DELIVERED,
            Message.sent_at.is_not(None),
            Message.delivered_at.is_not(None),
        )
        .subquery()
    )
    # The middle row (odd count) or the two middle rows (even count): integer division.
    middle = case(
        (ranked.c.n == (ranked.c.total + 1) // 2, True),
        (ranked.c.n == (ranked.c.total + 2) // 2, True),
        else_=False,
    )
    medians = dict(
        session.execute(
            select(ranked.c.gateway_id, func.avg(ranked.c.seconds))
            .where(middle)
            .group_by(ranked.c.gateway_id)
        ).all()
    )
    return {
        gateway_id: Delivery(
            delivered,
            undelivered,
            float(medians[gateway_id]) if medians.get(gateway_id) is not None else None,
        )
        for gateway_id, delivered, undelivered in counts
        if delivered or undelivered
    }
