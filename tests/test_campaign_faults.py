"""Campaigns against real worker processes that die: SIGKILL during expansion, during sending,
and before the start time (with Redis emptied too). The database is the truth: a new worker
finishes the campaign, and every recipient gets one message, counted at the simulator.

A worker killed with requests in flight cannot know whether the provider took them: those
rows (``sending`` at the kill) are sent again after their lease, the engine's documented
at-least-once. So a recipient is reached once, or twice only if their row was being sent at
the kill, and never not at all.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask
from redis import Redis
from sqlalchemy import func, select

from sms_ext import SMS, CampaignSpec, Message, Status
from sms_ext.models import Campaign
from tests.campaign_app import ListSource, expected
from tests.conftest import TEST_KEY
from tests.helpers import custom_gateway
from tests.simulator import GatewaySimulator
from tests.test_worker_faults import Spawned, stop_gracefully, wait_for

pytestmark = pytest.mark.faults

BODY = "Hi {{ name }} from {{ venue }}"


@pytest.fixture
def spawn(tmp_path: Path, service_urls: tuple[str, str]) -> Iterator[Callable[..., Spawned]]:
    """Start worker processes of :mod:`tests.campaign_app`; SIGKILLs what is left at the end."""
    started: list[Spawned] = []
    database_url, redis_url = service_urls

    def start(size: int, *, slow: float = 0.0) -> Spawned:
        log = tmp_path / f"worker-{len(started)}.log"
        environment = {
            **os.environ,
            "FLASK_SQLALCHEMY_DATABASE_URI": database_url,
            "FLASK_SMS_REDIS_URL": redis_url,
            "FLASK_SECRET_KEY": TEST_KEY,
            "FLASK_SMS_SWEEP_INTERVAL": "1",
            "FLASK_SMS_LEASE_SECONDS": "10",
            "FLASK_SMS_CAMPAIGN_LEASE_SECONDS": "5",
            "FLASK_SMS_CAMPAIGN_IN_FLIGHT": "300",
            "CAMPAIGN_AUDIENCE": str(size),
            "CAMPAIGN_SLOW": str(slow),
        }
        started.append(Spawned.worker(log, environment, "tests.campaign_app:create_app()"))
        return started[-1]

    yield start
    for worker in started:
        if worker.process.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.process.wait(10)


def kill(worker: Spawned) -> None:
    os.killpg(worker.pid, signal.SIGKILL)
    worker.process.wait(10)


def campaign_row(app: Flask, campaign_id: int) -> Campaign:
    session = app.extensions["sms"].session
    session.expire_all()
    campaign = session.get(Campaign, campaign_id)
    session.commit()  # end the read: the workers write
    return campaign


def sending_now(app: Flask) -> set[str]:
    session = app.extensions["sms"].session
    phones = set(session.scalars(select(Message.to).where(Message.status == Status.SENDING)))
    session.commit()
    return phones


def check_once_each(
    app: Flask, simulator: GatewaySimulator, wanted: list[str], in_flight: set[str]
) -> dict[str, int]:
    """One row per recipient; at the simulator each reached once (twice only if in flight at
    the kill), none missing; returns the counts."""
    session = app.extensions["sms"].session
    rows = session.scalar(select(func.count(Message.id)))
    assert rows == len(wanted)
    simulator.wait_idle(10)
    reached = simulator.arrivals_by_recipient("custom")
    never = set(wanted) - set(reached)
    twice = {phone for phone, n in reached.items() if n == 2}
    assert not never, f"{len(never)} recipient(s) never reached"
    assert set(reached) == set(wanted)
    assert max(reached.values()) <= 2
    assert twice <= in_flight, "sent twice though not in flight at the kill"
    return {"once": len(reached) - len(twice), "twice": len(twice), "never": len(never)}


def test_worker_killed_during_expansion(
    app_ctx: Flask,
    sms: SMS,
    simulator: GatewaySimulator,
    spawn: Callable[..., Spawned],
    capsys: pytest.CaptureFixture[str],
) -> None:
    size = 8000
    sms.campaign_audience(ListSource(size=size))
    custom_gateway(app_ctx, simulator, "custom")
    first = spawn(size, slow=0.4)  # about 3 s to read the audience
    campaign = sms.campaigns.create(CampaignSpec(name="Expand", purpose="notice", body=BODY))
    sms.campaigns.start(campaign.id)
    wait_for(lambda: campaign_row(app_ctx, campaign.id).recipients > 0, 60, "expansion began")
    kill(first)
    in_flight = sending_now(app_ctx)
    killed = campaign_row(app_ctx, campaign.id)
    assert not killed.expanded and 0 < killed.recipients < size  # killed mid-expansion
    inserted_before = killed.recipients

    second = spawn(size)
    wanted = expected(size, "notice")
    wait_for(lambda: campaign_row(app_ctx, campaign.id).status == "done", 120, "campaign done")
    stop_gracefully(second)
    counts = check_once_each(app_ctx, simulator, wanted, in_flight)
    done = campaign_row(app_ctx, campaign.id)
    assert done.recipients == len(wanted)  # recounted, not counted twice
    assert sum(done.exclusions.values()) == size - len(wanted)
    with capsys.disabled():
        print(f"\n[campaign: kill -9 during expansion at {inserted_before}/{len(wanted)}] {counts}")


def test_worker_killed_during_sending(
    app_ctx: Flask,
    sms: SMS,
    simulator: GatewaySimulator,
    spawn: Callable[..., Spawned],
    capsys: pytest.CaptureFixture[str],
) -> None:
    size = 1500
    sms.campaign_audience(ListSource(size=size))
    custom_gateway(app_ctx, simulator, "custom")
    simulator.set_latency("custom", 0.2)
    first = spawn(size)
    campaign = sms.campaigns.create(CampaignSpec(name="Send", purpose="marketing", body=BODY))
    sms.campaigns.start(campaign.id)
    wanted = expected(size, "marketing")

    def midway() -> bool:  # some sent, some still held, and a batch being sent right now
        progress = sms.campaigns.progress(campaign.id)
        return progress.sent >= 200 and progress.held > 0 and progress.sending > 0

    wait_for(midway, 60, "half-way through sending")
    kill(first)
    in_flight = sending_now(app_ctx)
    at_kill = sms.campaigns.progress(campaign.id)
    assert at_kill.held > 0 and at_kill.status == "sending"
    second = spawn(size)
    wait_for(lambda: campaign_row(app_ctx, campaign.id).status == "done", 120, "campaign done")
    stop_gracefully(second)
    counts = check_once_each(app_ctx, simulator, wanted, in_flight)
    with capsys.disabled():
        print(
            f"\n[campaign: kill -9 during sending at {at_kill.sent}/{len(wanted)} sent, "
            f"{len(in_flight)} in flight] {counts}"
        )


def test_schedule_survives_a_killed_worker_and_an_emptied_redis(
    app_ctx: Flask,
    sms: SMS,
    redis: Redis,
    simulator: GatewaySimulator,
    spawn: Callable[..., Spawned],
) -> None:
    size = 200
    sms.campaign_audience(ListSource(size=size))
    custom_gateway(app_ctx, simulator, "custom")
    first = spawn(size)
    at = datetime.now(UTC) + timedelta(seconds=6)
    campaign = sms.campaigns.create(
        CampaignSpec(name="Later", purpose="notice", body=BODY, start_at=at)
    )
    time.sleep(1)
    kill(first)  # before the start time
    redis.flushdb()  # and the scheduled tick is gone with Redis
    assert campaign_row(app_ctx, campaign.id).status == "scheduled"
    second = spawn(size)
    wait_for(lambda: campaign_row(app_ctx, campaign.id).status == "done", 60, "campaign done")
    assert datetime.now(UTC) >= at  # not before its time
    started = campaign_row(app_ctx, campaign.id).started_at
    assert started >= at.replace(tzinfo=None)
    stop_gracefully(second)
    check_once_each(app_ctx, simulator, expected(size, "notice"), set())
