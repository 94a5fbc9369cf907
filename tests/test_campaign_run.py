"""Campaigns run by real RQ workers (in-process burst workers) against the gateway simulator:
the consent rule, schedules, the sending window, pause/resume/cancel midway, opt-outs made
after expansion, and what the sweeper does (and does not do) with held rows."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from redis import Redis
from rq.registry import ScheduledJobRegistry
from sqlalchemy import select, update

from sms_ext import SMS, CampaignSpec, Kind, Message, Status
from sms_ext.campaigns import runner
from sms_ext.messages.sweeper import sweep
from sms_ext.models import Campaign, utcnow
from tests.campaign_app import ListSource, expected, generated
from tests.conftest import drain
from tests.helpers import custom_gateway
from tests.simulator import GatewaySimulator

SIZE = 300
BODY = "Hi {{ name }}, news from {{ location }}. {{ opt_out }}"


@pytest.fixture
def audience(sms: SMS) -> ListSource:
    return sms.campaign_audience(ListSource(size=SIZE))  # type: ignore[return-value]


def spec(**changes: object) -> CampaignSpec:
    base = CampaignSpec(name="Run", purpose="marketing", body=BODY)
    return CampaignSpec(**{**base.__dict__, **changes})  # type: ignore[arg-type]


def run_until(app: Flask, done: Callable[[], bool], *, seconds: float = 240) -> None:
    """Burst workers (with the scheduler: the runner's next tick is a scheduled job) until
    ``done``; each round waits a moment so the next tick becomes due. The deadline is
    generous: four suites share two cores."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        drain(app, with_scheduler=True)
        if done():
            return
        time.sleep(0.5)
    raise AssertionError("the campaign did not get there")


def status(app: Flask, campaign_id: int) -> str:
    session = app.extensions["sms"].session
    session.expire_all()
    return session.get(Campaign, campaign_id).status


def test_marketing_reaches_consenting_guests_once_each(
    app_ctx: Flask, sms: SMS, audience: ListSource, simulator: GatewaySimulator
) -> None:
    custom_gateway(app_ctx, simulator, "bulk")
    campaign = sms.campaigns.create(spec(), created_by="ann")
    sms.campaigns.start(campaign.id)
    run_until(app_ctx, lambda: status(app_ctx, campaign.id) == "done")

    reached = simulator.arrivals_by_recipient("custom")
    wanted = expected(SIZE, "marketing")
    assert sorted(reached) == sorted(wanted)
    assert set(reached.values()) == {1}
    progress = sms.campaigns.progress(campaign.id)
    assert (progress.status, progress.recipients, progress.sent) == (
        "done",
        len(wanted),
        len(wanted),
    )
    assert (progress.done, progress.percent, progress.held, progress.queued) == (
        len(wanted),
        100,
        0,
        0,
    )
    assert progress.excluded == SIZE - len(wanted)
    assert progress.rate_per_minute == len(wanted)  # all settled within the last minute
    assert progress.started_at is not None and progress.finished_at is not None
    row = (
        app_ctx.extensions["sms"]
        .session.scalars(select(Message).where(Message.customer_ref == "guest:1"))
        .one()
    )
    assert (row.kind, row.campaign_id, row.sent_by, row.location) == (
        Kind.CAMPAIGN,
        campaign.id,
        "ann",
        "plaza",
    )
    assert row.body == "Hi Guest 1, news from Plaza Mayor. Reply STOP to opt out"
    stored = app_ctx.extensions["sms"].session.get(Campaign, campaign.id)
    guests = list(generated(SIZE))
    assert stored.exclusions["opted_out"] == sum(g.opted_out for g in guests)
    assert stored.exclusions["no_consent"] == sum(
        not g.opted_out and not g.marketing_consent for g in guests
    )
    assert stored.parts == len(wanted) and stored.expanded


def test_notice_reaches_everyone_not_opted_out(
    app_ctx: Flask, sms: SMS, audience: ListSource, simulator: GatewaySimulator
) -> None:
    custom_gateway(app_ctx, simulator, "bulk")
    sms.opt_outs.add(generated(SIZE).__next__().phone)  # guest 0 (opted out by the host too)
    sms.opt_outs.add(list(generated(2))[1].phone)  # guest 1: on the list only
    campaign = sms.campaigns.create(spec(purpose="notice", body="Closed today at {{ venue }}"))
    sms.campaigns.start(campaign.id)
    run_until(app_ctx, lambda: status(app_ctx, campaign.id) == "done")
    wanted = set(expected(SIZE, "notice")) - {list(generated(2))[1].phone}
    assert set(simulator.arrivals_by_recipient("custom")) == wanted
    kinds = app_ctx.extensions["sms"].session.scalars(select(Message.kind).distinct()).all()
    assert kinds == [Kind.NOTICE]


def test_future_schedule_waits_and_past_one_runs(
    app_ctx: Flask, sms: SMS, audience: ListSource, simulator: GatewaySimulator, redis: Redis
) -> None:
    custom_gateway(app_ctx, simulator, "bulk")
    campaign = sms.campaigns.create(spec(start_at=datetime.now(UTC) + timedelta(hours=2)))
    drain(app_ctx, with_scheduler=True)
    assert status(app_ctx, campaign.id) == "scheduled"
    assert simulator.requests == []
    state = app_ctx.extensions["sms"]
    assert len(ScheduledJobRegistry(queue=state.urgent_queue).get_job_ids()) == 1
    # The sweeper leaves a future campaign alone, even with its runner gone.
    redis.flushdb()
    assert sweep(state)["campaigns_revived"] == 0
    sms.campaigns.start(campaign.id, at=datetime.now(UTC) - timedelta(minutes=5))
    run_until(app_ctx, lambda: status(app_ctx, campaign.id) == "done")
    assert len(simulator.arrivals_by_recipient("custom")) == len(expected(SIZE, "marketing"))


def test_sending_window_holds_messages_until_it_opens(
    app_ctx: Flask, sms: SMS, audience: ListSource, simulator: GatewaySimulator
) -> None:
    custom_gateway(app_ctx, simulator, "bulk")
    now = utcnow()
    minute = now.hour * 60 + now.minute
    closed = ((minute + 120) % 1440, (minute + 180) % 1440)  # opens in two hours (UTC)
    campaign = sms.campaigns.create(spec(window=closed, timezone="UTC"))
    sms.campaigns.start(campaign.id)
    drain(app_ctx, with_scheduler=True)
    progress = sms.campaigns.progress(campaign.id)
    wanted = len(expected(SIZE, "marketing"))
    assert (progress.status, progress.held, progress.queued, progress.sent) == (
        "sending",
        wanted,
        0,
        0,
    )
    assert simulator.requests == []
    # The next tick is scheduled at the window's opening, and the sweeper leaves held rows be.
    state = app_ctx.extensions["sms"]
    [job_id] = ScheduledJobRegistry(queue=state.urgent_queue).get_job_ids()
    due = ScheduledJobRegistry(queue=state.urgent_queue).get_scheduled_time(job_id)
    opening = runner.window.next_opening(closed, "UTC", now)
    assert abs((due.replace(tzinfo=None) - opening).total_seconds()) < 2
    assert sweep(state)["enqueued"] == 0
    assert sms.campaigns.progress(campaign.id).held == wanted

    # A window around now: it runs.
    sms.campaigns.pause(campaign.id)
    state.session.execute(
        update(Campaign)
        .where(Campaign.id == campaign.id)
        .values(window_start=(minute - 60) % 1440, window_end=(minute + 60) % 1440)
    )
    state.session.commit()
    sms.campaigns.resume(campaign.id)
    run_until(app_ctx, lambda: status(app_ctx, campaign.id) == "done")
    assert len(simulator.arrivals_by_recipient("custom")) == wanted


@pytest.fixture
def small_batches(app_ctx: Flask) -> Flask:
    """At most 40 messages in flight, 20 per job: a campaign of 300 takes several ticks."""
    state = app_ctx.extensions["sms"]
    campaign = dataclasses.replace(state.settings.campaign, in_flight=40)
    state.settings = dataclasses.replace(state.settings, batch_size=20, campaign=campaign)
    return app_ctx


def test_pause_resume_and_cancel_midway(
    small_batches: Flask, sms: SMS, audience: ListSource, simulator: GatewaySimulator
) -> None:
    app = small_batches
    custom_gateway(app, simulator, "bulk")
    campaign = sms.campaigns.create(spec())
    sms.campaigns.start(campaign.id)
    drain(app, with_scheduler=True)  # the first tick: expand, release 40, send them
    first = sms.campaigns.progress(campaign.id)
    assert (first.sent, first.queued) == (40, 0)
    assert first.held == len(expected(SIZE, "marketing")) - 40

    # Paused with rows queued and not yet taken: they go back to held, nothing more is sent.
    runner.release(app.extensions["sms"], app.extensions["sms"].session.get(Campaign, campaign.id))
    assert sms.campaigns.progress(campaign.id).queued == 40
    sms.campaigns.pause(campaign.id)
    assert sms.campaigns.progress(campaign.id).queued == 0
    time.sleep(1.2)
    drain(app, with_scheduler=True)
    assert len(simulator.requests_for("custom")) == 40
    assert status(app, campaign.id) == "paused"

    sms.campaigns.resume(campaign.id)
    drain(app, with_scheduler=True)
    assert len(simulator.requests_for("custom")) == 80
    sms.campaigns.cancel(campaign.id)
    run_until(app, lambda: True)
    progress = sms.campaigns.progress(campaign.id)
    assert (progress.status, progress.sent, progress.held, progress.queued) == (
        "cancelled",
        80,
        0,
        0,
    )
    assert progress.cancelled == progress.recipients - 80
    assert progress.finished_at is not None
    reached = simulator.arrivals_by_recipient("custom")
    assert len(reached) == 80 and set(reached.values()) == {1}


def test_opt_out_after_expansion_is_honoured(
    small_batches: Flask, sms: SMS, audience: ListSource, simulator: GatewaySimulator
) -> None:
    app = small_batches
    custom_gateway(app, simulator, "bulk")
    campaign = sms.campaigns.create(spec())
    sms.campaigns.start(campaign.id)
    drain(app, with_scheduler=True)
    session = app.extensions["sms"].session
    late = session.scalars(
        select(Message.to).where(Message.status == Status.HELD).order_by(Message.id.desc())
    ).first()
    sms.opt_outs.add(late, source="stop")
    run_until(app, lambda: status(app, campaign.id) == "done")
    reached = simulator.arrivals_by_recipient("custom")
    assert late not in reached
    assert len(reached) == len(expected(SIZE, "marketing")) - 1
    session.expire_all()
    row = session.scalars(select(Message).where(Message.to == late)).one()
    assert (row.status, row.last_error) == (Status.CANCELLED, "Opted out before it was sent.")


def test_sweeper_revives_a_campaign_whose_runner_was_lost(
    small_batches: Flask, sms: SMS, audience: ListSource, simulator: GatewaySimulator, redis: Redis
) -> None:
    app = small_batches
    state = app.extensions["sms"]
    custom_gateway(app, simulator, "bulk")
    campaign = sms.campaigns.create(spec())
    sms.campaigns.start(campaign.id)
    drain(app, with_scheduler=True)
    redis.flushdb()  # Redis lost every job, lease and scheduled tick
    drain(app, with_scheduler=True)
    assert len(simulator.requests_for("custom")) == 40  # nothing runs the campaign now
    assert sweep(state)["campaigns_revived"] == 1
    assert sweep(state)["campaigns_revived"] == 0  # its lease names the new runner
    run_until(app, lambda: status(app, campaign.id) == "done")
    reached = simulator.arrivals_by_recipient("custom")
    assert len(reached) == len(expected(SIZE, "marketing")) and set(reached.values()) == {1}


def test_a_duplicate_runner_ends_at_once(app_ctx: Flask, sms: SMS, audience: ListSource) -> None:
    state = app_ctx.extensions["sms"]
    campaign = sms.campaigns.create(spec())
    sms.campaigns.start(campaign.id)  # the lease names the enqueued job
    assert runner.Tick(state, campaign.id, "sms-campaign-stray").run() == "superseded"
    state.redis.set(f"sms_ext:{state.settings.queue}:campaign:{campaign.id}:lock", "other")
    assert runner.Tick(state, campaign.id, "sms-campaign-stray").run() == "busy"
    assert status(app_ctx, campaign.id) == "scheduled"
