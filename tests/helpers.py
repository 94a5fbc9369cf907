"""Small helpers shared by the pipeline tests."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Flask
from rq.registry import ScheduledJobRegistry
from sqlalchemy import bindparam, select, update

from sms_ext import Gateway, Message
from sms_ext.gateways.store import save_gateway
from sms_ext.models import MESSAGES, utcnow
from tests.conftest import TEST_KEY, drain
from tests.simulator import GatewaySimulator

ROOT = Path(__file__).resolve().parent.parent


def add_gateway(app: Flask, **data: Any) -> Gateway:
    """Save a gateway through the same validation as the admin form, and commit."""
    state = app.extensions["sms"]
    gateway = save_gateway(state.session, state.vault, data)
    state.session.commit()
    return gateway


def twilio_gateway(app: Flask, sim: GatewaySimulator, name: str = "Twilio") -> Gateway:
    """A Twilio gateway on the simulator's account, answering under ``/twilio``."""
    account = sim.twilio
    return add_gateway(
        app,
        name=name,
        type="twilio",
        account_sid=account.account_sid,
        api_key=account.api_key,
        api_secret=account.api_secret,
        from_number="+15005550006",
        base_url=f"{sim.url}/twilio",
    )


def custom_gateway(app: Flask, sim: GatewaySimulator, name: str, **extra: Any) -> Gateway:
    """A JSON custom gateway pointing at the simulator under ``/custom/<name>``."""
    data = {
        "name": name,
        "type": "custom",
        "url": f"{sim.url}/custom/{name}",
        "method": "POST",
        "content_type": "json",
        "payload": '{"to": "{phone}", "text": "{message}", "ref": "{reference}"}',
        "success_response": '"status": "ok"',
        "timeout": 2,
        **extra,
    }
    return add_gateway(app, **data)


def reload(app: Flask, message: Message) -> Message:
    """The message as the database has it now."""
    session = app.extensions["sms"].session
    session.expire_all()
    return session.get(Message, message.id)


MESSAGE_TIMES = (
    "created_at",
    "next_attempt_at",
    "claimed_until",
    "sent_at",
    "delivered_at",
    "failed_at",
    "expires_at",
)
"""Every time column of a message: :func:`age` moves them all, so their order is kept."""


def age(app: Flask, seconds: float = 30) -> None:
    """Move the outbox's clock ``seconds`` forward instead of waiting for it.

    Every message's times move back by ``seconds`` (due, expiry, lease, creation...), and so do
    the delivery jobs RQ's scheduler holds for later (retries): a retry becomes due, a message
    comes closer to its expiry, a row gets past the sweeper's grace, exactly as if the time had
    passed. Commits.
    """
    state = app.extensions["sms"]
    session = state.session
    shift = timedelta(seconds=seconds)
    columns = [MESSAGES.c.id, *(MESSAGES.c[name] for name in MESSAGE_TIMES)]
    moved = [
        {"b_id": row["id"]}
        | {name: row[name] - shift if row[name] is not None else None for name in MESSAGE_TIMES}
        for row in session.execute(select(*columns)).mappings()
    ]
    if moved:
        statement = (
            update(MESSAGES)
            .where(MESSAGES.c.id == bindparam("b_id"))
            .values({name: bindparam(name) for name in MESSAGE_TIMES})
        )
        session.execute(statement, moved)
    session.commit()
    for queue in (state.urgent_queue, state.queue):
        scheduled = ScheduledJobRegistry(queue=queue)
        for job_id, at in state.redis.zrange(scheduled.key, 0, -1, withscores=True):
            state.redis.zadd(scheduled.key, {job_id: at - seconds})


def retry_now(app: Flask, message: Message) -> None:
    """Move the clock just past ``message``'s next attempt (see :func:`age`) and run that
    attempt with a real burst worker, whose scheduler hands over the retry job now due.

    One second more than needed: RQ's scheduler compares whole seconds.
    """
    due = reload(app, message).next_attempt_at
    age(app, max(math.ceil((due - utcnow()).total_seconds()), 0) + 1)
    drain(app, with_scheduler=True)


def worker_process(
    database_url: str, redis_url: str, *args: str, app: str = "wsgi", **config: str
) -> subprocess.Popen[bytes]:
    """A real ``flask sms worker`` process of the demo portal (or of the Flask ``app`` given)
    on the test database and Redis; ``config`` adds settings (``SMS_WORKER_CONCURRENCY="4"``
    becomes a ``FLASK_`` variable)."""
    env = {
        **os.environ,
        "FLASK_SQLALCHEMY_DATABASE_URI": database_url,
        "FLASK_SMS_REDIS_URL": redis_url,
        "FLASK_SECRET_KEY": TEST_KEY,
        "FLASK_SMS_RETRY_BASE_SECONDS": "1",
        **{f"FLASK_{key}": value for key, value in config.items()},
    }
    return subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", app, "sms", "worker", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: see stop_worker
    )


def stop_worker(worker: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Signal the worker's whole process group: the worker forks no child itself, but the Lua
    helpers it starts are in its group and end only by themselves after it died."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.pid, sig)
    try:
        worker.wait(20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(5)
