"""Which balance checks are due, once per period across the whole fleet.

Every worker's sweeper thread calls :func:`enqueue_due`. Periods are aligned slots of time
(every hour on the hour, ...); a gateway's check for a slot is enqueued by whoever first takes
the slot's Redis key (``SET NX EX``), and not at all when a reading of that slot already
exists (a check by hand counts; so does one from before Redis lost its keys). The check itself
runs as a job on the ordinary queue: the sweeper thread never waits for a provider.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from sqlalchemy import select

from ..gateways.balance_checks import BalanceCheck
from ..models import Gateway
from ..state import SMSState

JOB = "sms_ext.balance.jobs.check"
SETTLE_JOB = "sms_ext.balance.jobs.settle"
JOB_TIMEOUT = 180
"""A check waits at most the gateway's timeout (60 s at most) and an SMTP server."""


def slot_key(state: SMSState, gateway_id: int, period: str, slot: int) -> str:
    return f"sms_ext:{state.settings.queue}:balance:{gateway_id}:{period}:{slot}"


def enqueue_due(state: SMSState, now: float | None = None) -> list[int]:
    """Enqueue the checks due in the current slot that no worker took yet; returns the ids
    of their gateways."""
    now = time.time() if now is None else now
    rows = state.session.execute(
        select(Gateway.id, Gateway.type, Gateway.balance_check, Gateway.balance_checked_at)
    ).all()
    state.session.commit()  # end the read: this runs in a long-lived thread
    enqueued = []
    for gateway_id, kind, raw, checked_at in rows:
        check = BalanceCheck.stored(raw)
        if not check.enabled or kind == "sandbox":
            continue
        slot = int(now // check.seconds)
        start = datetime.fromtimestamp(slot * check.seconds, UTC).replace(tzinfo=None)
        if checked_at is not None and checked_at >= start:
            continue
        key = slot_key(state, gateway_id, check.period, slot)
        if state.redis.set(key, "1", nx=True, ex=check.seconds):
            enqueue_check(state, gateway_id)
            enqueued.append(gateway_id)
    return enqueued


def enqueue_check(state: SMSState, gateway_id: int) -> None:
    state.queue.enqueue(JOB, gateway_id, job_timeout=JOB_TIMEOUT, result_ttl=3600)


def enqueue_settle(state: SMSState, gateway_id: int) -> None:
    state.queue.enqueue(SETTLE_JOB, gateway_id, job_timeout=JOB_TIMEOUT, result_ttl=3600)
