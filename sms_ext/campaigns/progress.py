"""Where a campaign stands: its messages counted by status, and how fast they go out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from ..models import Campaign, Message, Status, utcnow


@dataclass(frozen=True)
class Progress:
    """A campaign's counts, for the progress page and ``flask sms campaign list``."""

    status: str
    recipients: int
    """Messages created for it so far (all of them once it is expanded)."""
    excluded: int
    held: int
    queued: int
    sending: int
    sent: int
    delivered: int
    undelivered: int
    failed: int
    cancelled: int
    rate_per_minute: float
    """Messages settled (sent, delivered or failed) in the last minute."""
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def done(self) -> int:
        """Messages that reached a final state (sent, delivered, undelivered, failed or
        cancelled): the filled part of the bar."""
        return self.sent + self.delivered + self.undelivered + self.failed + self.cancelled

    @property
    def percent(self) -> int:
        """``done`` as a whole percentage of ``recipients`` (100 once the campaign is done)."""
        if self.status == "done":
            return 100
        return min(100, self.done * 100 // self.recipients) if self.recipients else 0


def of(session: Session, campaign: Campaign) -> Progress:
    rows = session.execute(
        select(Message.status, func.count())
        .where(Message.campaign_id == campaign.id)
        .group_by(Message.status)
    ).all()
    counts = {str(status): int(n) for status, n in rows}
    since = utcnow() - timedelta(minutes=1)
    rate = session.scalar(
        select(func.count()).where(
            Message.campaign_id == campaign.id,
            or_(Message.sent_at >= since, Message.failed_at >= since),
        )
    )
    return Progress(
        status=campaign.status,
        recipients=sum(counts.values()),
        excluded=sum((campaign.exclusions or {}).values()),
        held=counts.get(Status.HELD, 0),
        queued=counts.get(Status.QUEUED, 0),
        sending=counts.get(Status.SENDING, 0),
        sent=counts.get(Status.SENT, 0),
        delivered=counts.get(Status.DELIVERED, 0),
        undelivered=counts.get(Status.UNDELIVERED, 0),
        failed=counts.get(Status.FAILED, 0),
        cancelled=counts.get(Status.CANCELLED, 0),
        rate_per_minute=float(rate or 0),
        started_at=campaign.started_at,
        finished_at=campaign.finished_at,
    )
