"""The campaign runner: a short RQ job that does one step and schedules the next.

Each tick expands the audience into ``held`` outbox rows (once), then releases held rows as
``queued`` with ordinary delivery jobs, keeping at most ``SMS_CAMPAIGN_IN_FLIGHT`` of them
queued or being sent, and only inside the sending window. It never occupies a worker for the
whole campaign. The delivery jobs go to the ordinary queue, so guest codes keep overtaking
them; the ticks themselves go to the urgent queue (a tick after expansion takes milliseconds),
so a tick never waits behind the very deliveries it should top up.

The database is the truth. A tick holds a Redis lock while it works, and the chain of ticks
holds a *lease* naming the job meant to run next; a job the lease does not name (a duplicate
from the sweeper) ends at once. When the lease runs out (Redis lost, a worker killed), the
sweeper starts a new chain (:func:`revive`): a campaign is delayed, never lost. Expansion
inserts with ``ON CONFLICT (campaign_id, "to") DO NOTHING``, so a repeated expansion after a
crash inserts nothing twice, and counts are taken from what was actually inserted.
"""

from __future__ import annotations

import contextlib
import logging
import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from redis.exceptions import RedisError
from rq import get_current_job
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from .. import runtime
from ..messages import outbox
from ..models import MESSAGES, Campaign, Message, Status, utcnow
from ..state import SMSState, get_state
from . import held, optout, window
from .selection import REASONS, Sorter, audience
from .spec import resolve_region, spec_of
from .texts import Texts

log = logging.getLogger("sms_ext")

TICK_JOB = "sms_ext.campaigns.runner.tick"
TICK_SECONDS = 1
"""Pause between two ticks of a sending campaign (RQ's scheduler works in whole seconds)."""
RUNNING = ("scheduled", "expanding", "sending")
"""Campaign states in which a runner chain must exist (once the start time is due)."""
IN_FLIGHT = (Status.QUEUED, Status.SENDING)
UNSETTLED = (Status.HELD, Status.QUEUED, Status.SENDING)
UNRENDERABLE = "unrenderable"
"""Exclusion counted (only when it happens) for a recipient whose text cannot be rendered."""


def _key(state: SMSState, campaign_id: int, what: str) -> str:
    return f"sms_ext:{state.settings.queue}:campaign:{campaign_id}:{what}"


def schedule(state: SMSState, campaign_id: int, at: datetime | None = None) -> bool:
    """Start a runner chain: a tick at ``at`` (naive UTC; None or past = now), named by the
    lease. ``False`` (logged) when Redis is unreachable: the sweeper starts it later."""
    now = utcnow()
    delay = max(0.0, (at - now).total_seconds()) if at is not None else 0.0
    job_id = f"sms-campaign-{campaign_id}-{uuid.uuid4().hex[:12]}"
    ttl = math.ceil(state.settings.campaign.lease_seconds + delay)
    options: dict[str, Any] = {
        "job_id": job_id,
        "result_ttl": outbox.JOB_RESULT_TTL,
        "failure_ttl": outbox.JOB_FAILURE_TTL,
        "job_timeout": outbox.JOB_TIMEOUT,
        "description": f"campaign {campaign_id}",
    }
    try:
        state.redis.set(_key(state, campaign_id, "lease"), job_id, ex=ttl)
        if delay <= 0:
            state.urgent_queue.enqueue(TICK_JOB, campaign_id, **options)
        else:
            assert at is not None
            state.urgent_queue.enqueue_at(at.replace(tzinfo=UTC), TICK_JOB, campaign_id, **options)
    except RedisError as exc:
        log.warning("Redis unreachable (%s): campaign %d waits for the sweeper", exc, campaign_id)
        return False
    return True


def forget(state: SMSState, campaign_id: int) -> None:
    """Drop the lease: a scheduled tick that still runs finds itself superseded and ends."""
    with contextlib.suppress(RedisError):  # else the lease runs out by itself
        state.redis.delete(_key(state, campaign_id, "lease"))


def revive(state: SMSState) -> int:
    """Start a runner for every due, running campaign whose chain is gone (the sweeper's
    hook); returns how many were started."""
    now = utcnow()
    ids = list(
        state.session.scalars(
            select(Campaign.id).where(
                Campaign.status.in_(RUNNING),
                Campaign.scheduled_at.is_not(None),
                Campaign.scheduled_at <= now,
            )
        )
    )
    state.session.rollback()  # end the read: ticks lock the campaign rows
    if not ids:
        return 0
    leases = state.redis.mget([_key(state, i, "lease") for i in ids])
    lost = [i for i, lease in zip(ids, leases, strict=True) if lease is None]
    return sum(schedule(state, i) for i in lost)


def _text(value: Any) -> str:
    """A Redis answer (bytes, or None for a missing key) as text."""
    return value.decode() if isinstance(value, bytes) else str(value or "")


def tick(campaign_id: int) -> str:
    """The RQ job: one step of the campaign; returns what it did."""
    job = get_current_job()
    return Tick(get_state(), campaign_id, job.id if job is not None else "").run()


class Tick:
    """One step of one campaign, under its lock."""

    def __init__(self, state: SMSState, campaign_id: int, job_id: str) -> None:
        self.state = state
        self.session: Session = state.session
        self.campaign_id = campaign_id
        self.job_id = job_id
        self.lease_seconds = state.settings.campaign.lease_seconds
        self.lock = _key(state, campaign_id, "lock")
        self.lease = _key(state, campaign_id, "lease")

    def run(self) -> str:
        redis = self.state.redis
        if not redis.set(self.lock, self.job_id, nx=True, ex=math.ceil(self.lease_seconds)):
            return "busy"  # another tick of this campaign is running
        try:
            named = redis.get(self.lease)
            if named is not None and _text(named) != self.job_id:
                return "superseded"
            return self._step()
        finally:
            if _text(redis.get(self.lock)) == self.job_id:
                redis.delete(self.lock)

    def _alive(self) -> None:
        """Refresh the lock and the lease while working (a long expansion)."""
        ex = math.ceil(self.lease_seconds)
        self.state.redis.set(self.lock, self.job_id, ex=ex)
        self.state.redis.set(self.lease, self.job_id, ex=ex)

    def _campaign(self) -> Campaign | None:
        return self.session.get(Campaign, self.campaign_id, populate_existing=True)

    def _status(self) -> str | None:
        return self.session.scalar(select(Campaign.status).where(Campaign.id == self.campaign_id))

    def _step(self) -> str:
        campaign = self._campaign()
        if campaign is None or campaign.status not in RUNNING:
            self._end()
            return campaign.status if campaign is not None else "gone"
        now = utcnow()
        if campaign.status == "scheduled":
            if campaign.scheduled_at is None or campaign.scheduled_at > now + timedelta(seconds=1):
                return self._again(campaign.scheduled_at)  # moved later, or a draft again
            campaign.status, campaign.started_at = "expanding", now
            self.session.commit()
        if not campaign.expanded:
            self._expand(campaign)
            campaign = self._campaign()
            assert campaign is not None
            if campaign.status not in RUNNING:
                if campaign.status == "cancelled":
                    cancel_unsent(self.session, campaign.id)
                    self.session.commit()
                self._end()
                return campaign.status
            campaign.status = "sending"
            self.session.commit()
        if not self._open(campaign):
            return self._again(window.next_opening(_window(campaign), campaign.timezone, now))
        release(self.state, campaign)
        if finish_if_done(self.session, campaign):
            self._end()
            return "done"
        return self._again(now + timedelta(seconds=TICK_SECONDS))

    def _open(self, campaign: Campaign) -> bool:
        if campaign.window_start is None or campaign.window_end is None:
            return True
        return window.is_open(_window(campaign), campaign.timezone, utcnow())

    def _again(self, at: datetime | None) -> str:
        if at is None:
            self._end()
            return "draft"
        self.session.rollback()
        schedule(self.state, self.campaign_id, at)
        return "waiting"

    def _end(self) -> None:
        self.session.rollback()
        if _text(self.state.redis.get(self.lease)) in ("", self.job_id):
            self.state.redis.delete(self.lease)

    def _expand(self, campaign: Campaign) -> None:
        """Insert a held row per recipient, a chunk per transaction, releasing as it goes.

        A re-run (after a crash, or a pause during expansion) streams the audience again: the
        unique (campaign, phone) pair drops what was inserted before, the recipient and part
        counts restart from the table, and the exclusions are counted afresh.
        """
        state = self.state
        source = state.registrations.audience
        spec = spec_of(campaign)
        places = list(source.locations()) if source else []
        texts = Texts.of(state, spec, places)
        region = resolve_region(spec, places, state.settings.default_region)
        sorter = Sorter(self.session, spec, region)
        recipients, parts = self.session.execute(
            select(func.count(), func.coalesce(func.sum(Message.segments), 0)).where(
                Message.campaign_id == campaign.id
            )
        ).one()
        campaign.recipients, campaign.parts = recipients, parts
        campaign.exclusions = dict.fromkeys(REASONS, 0)
        self.session.commit()
        row = held.RowMaker(state, campaign, texts)
        for chunk in audience(spec, source, region):
            rows = []
            for phone, person in sorter.sort(chunk):
                made = row.make(phone, person)
                if made is None:
                    sorter.excluded[UNRENDERABLE] = sorter.excluded.get(UNRENDERABLE, 0) + 1
                else:
                    rows.append(made)
            inserted = held.insert(self.session, row.common, rows)
            campaign.recipients += len(inserted)
            campaign.parts += sum(inserted)
            campaign.exclusions = dict(sorter.excluded)
            self.session.commit()
            self._alive()
            if self._status() not in RUNNING:
                return  # paused or cancelled meanwhile: the tick ends (see _step)
            if self._open(campaign):
                release(state, campaign)
        campaign.expanded = True
        self.session.commit()


def _window(campaign: Campaign) -> tuple[int, int]:
    assert campaign.window_start is not None and campaign.window_end is not None
    return campaign.window_start, campaign.window_end


def release(state: SMSState, campaign: Campaign) -> int:
    """Hand held rows to the workers, up to ``SMS_CAMPAIGN_IN_FLIGHT`` queued or sending;
    rows whose number was opted out since expansion are cancelled instead. Commits; the
    delivery jobs are enqueued once committed. Returns how many were released."""
    session = state.session
    status = session.scalar(
        select(Campaign.status).where(Campaign.id == campaign.id).with_for_update()
    )
    if status not in ("expanding", "sending") or not runtime.current(state).sending_enabled:
        session.rollback()
        return 0
    busy = session.scalar(
        select(func.count()).where(
            Message.campaign_id == campaign.id, Message.status.in_(IN_FLIGHT)
        )
    )
    room = state.settings.campaign.in_flight - (busy or 0)
    if room <= 0:
        session.rollback()
        return 0
    # No ORDER BY: sorting every held row of a 100,000 campaign on each release is what made
    # expansion slow; any held rows will do, the (campaign, status) index finds them.
    held = session.execute(
        select(Message.id, Message.to)
        .where(Message.campaign_id == campaign.id, Message.status == Status.HELD)
        .limit(room)
    ).all()
    out = optout.opted_out_among(session, [phone for _, phone in held])
    if out:
        session.execute(
            update(MESSAGES)
            .where(
                MESSAGES.c.campaign_id == campaign.id,
                MESSAGES.c.status == Status.HELD,
                MESSAGES.c.to.in_(out),
            )
            .values(status=Status.CANCELLED, last_error="Opted out before it was sent.")
        )
    ids = [i for i, phone in held if phone not in out]
    now, expires = utcnow(), outbox.expiry(state, None)
    for start in range(0, len(ids), state.settings.batch_size):
        chunk = ids[start : start + state.settings.batch_size]
        job_id = outbox.new_job_id()
        session.execute(
            update(MESSAGES)
            .where(MESSAGES.c.id.in_(chunk), MESSAGES.c.status == Status.HELD)
            .values(status=Status.QUEUED, job_id=job_id, next_attempt_at=now, expires_at=expires)
        )
        outbox.after_commit(session, _enqueuer(state, job_id, chunk))
    session.commit()
    return len(ids)


def _enqueuer(state: SMSState, job_id: str, ids: list[int]) -> Any:
    return lambda: outbox.enqueue(state.queue, job_id, ids)


def cancel_unsent(session: Session, campaign_id: int) -> int:
    """Held and queued rows of the campaign become ``cancelled`` (claimed ones finish)."""
    result = session.execute(
        update(MESSAGES)
        .where(
            MESSAGES.c.campaign_id == campaign_id,
            MESSAGES.c.status.in_((Status.HELD, Status.QUEUED)),
        )
        .values(status=Status.CANCELLED, job_id=None, last_error="The campaign was cancelled.")
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def finish_if_done(session: Session, campaign: Campaign) -> bool:
    """Mark an expanded campaign with no unsettled message ``done``; commits when it does."""
    left = session.scalar(
        select(Message.id)
        .where(Message.campaign_id == campaign.id, Message.status.in_(UNSETTLED))
        .limit(1)
    )
    if left is not None or not campaign.expanded:
        return False
    campaign.status, campaign.finished_at = "done", utcnow()
    session.commit()
    return True
