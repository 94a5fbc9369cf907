"""Admin landing page: today's and the week's figures, per gateway, a 14-day chart, warnings.

One grouped query over the last 14 days of ``created_at`` (served by its index) feeds every
figure: counts by day, gateway and status, a few hundred rows at most whatever the table size.
Messages count on the day they were created, in UTC. Above them, what keeps messages or guests
from getting through right now: sending switched off, no gateway, failing gateways, and the
daily budgets of guest codes that refused guests today (one Redis read).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from flask import render_template
from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .. import runtime
from ..models import Gateway, Message, MessageAttempt, Status, utcnow
from ..otp import budgets
from ..state import SMSState, get_state
from . import bp
from .delivery_stats import delivery_by_gateway

CHART_DAYS = 14
WEEK_DAYS = 7
FAILING_STREAK = 5
"""A gateway whose last this-many attempts all failed is "failing repeatedly"."""
RECENT_ATTEMPTS = 50_000
"""How far back (in attempt ids) to look for that streak: bounds the scan on a big table."""

SENT = (Status.SENT, Status.DELIVERED, Status.UNDELIVERED)
"""Statuses of messages a gateway accepted, whatever happened after."""
PENDING = (Status.QUEUED, Status.SENDING)


@dataclass
class Tally:
    """Counts of one slice (a day, a gateway, a period)."""

    sent: int = 0
    delivered: int = 0
    failed: int = 0
    pending: int = 0

    def add(self, status: str, count: int) -> None:
        if status in SENT:
            self.sent += count
        if status == Status.DELIVERED:
            self.delivered += count
        elif status == Status.FAILED:
            self.failed += count
        elif status in PENDING:
            self.pending += count


@dataclass
class GatewayRow:
    name: str
    enabled: bool
    today: Tally
    week: Tally


def _day(value: object) -> date:
    """``date(created_at)`` as SQLite (a string) and PostgreSQL (a date) return it."""
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def failing_gateways(session: Session, gateways: list[Gateway]) -> list[str]:
    """Names of enabled gateways whose last :data:`FAILING_STREAK` attempts all failed."""
    newest = session.scalar(select(func.max(MessageAttempt.id))) or 0
    failing = []
    for gateway in gateways:
        if not gateway.enabled:
            continue
        results = session.scalars(
            select(MessageAttempt.ok)
            .where(
                MessageAttempt.gateway_id == gateway.id,
                MessageAttempt.id > newest - RECENT_ATTEMPTS,
            )
            .order_by(MessageAttempt.id.desc())
            .limit(FAILING_STREAK)
        ).all()
        if len(results) == FAILING_STREAK and not any(results):
            failing.append(gateway.name)
    return failing


def chart(days: list[date], per_day: dict[date, Tally]) -> dict[str, object]:
    """Geometry of the stacked bar chart (sent below, failed on top), in SVG user units."""
    width, height, top, bottom, left = 700, 220, 16, 28, 36
    plot = height - top - bottom
    slot = (width - left) / len(days)
    peak = max([per_day[d].sent + per_day[d].failed for d in days] + [1])
    bars = []
    for index, day in enumerate(days):
        tally = per_day[day]
        sent_h = plot * tally.sent / peak
        failed_h = plot * tally.failed / peak
        base = top + plot
        bars.append(
            {
                "day": day,
                "label": day.strftime("%d"),
                "x": round(left + index * slot + slot * 0.15, 1),
                "width": round(slot * 0.7, 1),
                "text_x": round(left + index * slot + slot / 2, 1),
                "sent": tally.sent,
                "failed": tally.failed,
                "sent_y": round(base - sent_h, 1),
                "sent_h": round(sent_h, 1),
                "failed_y": round(base - sent_h - failed_h, 1),
                "failed_h": round(failed_h, 1),
            }
        )
    return {
        "width": width,
        "height": height,
        "left": left,
        "top": top,
        "base": top + plot,
        "peak": peak,
        "bars": bars,
    }


def budget_warnings(state: SMSState) -> list[str]:
    """One line per daily budget of codes that refused guests today."""
    try:
        return [refusals.text for refusals in budgets.today(state)]
    except RedisError:
        return ["Daily budgets of guest codes cannot be read: Redis is unreachable."]


@bp.get("/")
def dashboard() -> str:
    """Figures an admin looks at first."""
    state = get_state()
    session = state.session
    today = utcnow().date()
    days = [today - timedelta(days=n) for n in range(CHART_DAYS - 1, -1, -1)]
    week_start = today - timedelta(days=WEEK_DAYS - 1)
    day = func.date(Message.created_at)
    counts = session.execute(
        select(day, Message.gateway_id, Message.status, func.count())
        .where(Message.created_at >= datetime.combine(days[0], time()))
        .group_by(day, Message.gateway_id, Message.status)
    ).all()

    gateways = list(session.scalars(Gateway.in_order()))
    per_day: dict[date, Tally] = defaultdict(Tally)
    today_total, week_total = Tally(), Tally()
    per_gateway: dict[int | None, GatewayRow] = {
        g.id: GatewayRow(g.name, g.enabled, Tally(), Tally()) for g in gateways
    }
    for raw_day, gateway_id, status, count in counts:
        when = _day(raw_day)
        per_day[when].add(status, count)
        if when < week_start:
            continue
        row = per_gateway.get(gateway_id)
        if row is None:  # no gateway took it (yet), or the gateway was deleted
            row = per_gateway[gateway_id] = GatewayRow("No gateway", False, Tally(), Tally())
        week_total.add(status, count)
        row.week.add(status, count)
        if when == today:
            today_total.add(status, count)
            row.today.add(status, count)

    warnings = []
    if not runtime.current(state).sending_enabled:
        warnings.append(
            "Sending is switched off in the settings: no SMS goes out, and guests cannot get codes."
        )
    if not any(g.enabled for g in gateways):
        warnings.append("No enabled gateway: messages cannot be sent.")
    for name in failing_gateways(session, gateways):
        warnings.append(
            f"Gateway “{name}” is failing repeatedly: its last {FAILING_STREAK} attempts failed."
        )
    warnings.extend(budget_warnings(state))
    receipts = delivery_by_gateway(session, datetime.combine(week_start, time()))
    return render_template(
        "sms/admin/dashboard.html",
        today=today_total,
        week=week_total,
        gateways=list(per_gateway.values()),
        warnings=warnings,
        chart=chart(days, per_day),
        days=days,
        delivery=[(g.name, stats) for g in gateways if (stats := receipts.get(g.id)) is not None],
    )
