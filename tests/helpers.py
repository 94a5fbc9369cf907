"""Small helpers shared by the pipeline tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from flask import Flask

from sms_ext import Gateway, Message
from sms_ext.gateway_store import save_gateway
from tests.simulator import GatewaySimulator

ROOT = Path(__file__).resolve().parent.parent


def add_gateway(app: Flask, **data: Any) -> Gateway:
    """Save a gateway through the same validation as the admin form, and commit."""
    state = app.extensions["sms"]
    gateway = save_gateway(state.session, state.vault, data)
    state.session.commit()
    return gateway


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


def worker_process(database_url: str, redis_url: str, *args: str) -> subprocess.Popen[bytes]:
    """A real ``flask sms worker`` process of the demo portal on the test database and Redis."""
    env = {
        **os.environ,
        "FLASK_SQLALCHEMY_DATABASE_URI": database_url,
        "FLASK_SMS_REDIS_URL": redis_url,
        "FLASK_SECRET_KEY": "test-secret-key-that-is-long-enough",
        "FLASK_SMS_RETRY_BASE_SECONDS": "1",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", "sms", "worker", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: see stop_worker
    )


def stop_worker(worker: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Signal the worker's whole process group: RQ's scheduler runs in a forked child that
    would outlive a SIGKILL sent to the worker alone."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.pid, sig)
    try:
        worker.wait(20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(5)
