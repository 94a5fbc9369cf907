"""``make run`` (``python -m portal.demo``) and the ``flask portal`` commands: they say which
database and Redis they use, how to reset the password they print once, and a busy port stops
the demo before anything is seeded."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import requests
from flask import Flask

from sms_ext.connections import database_text
from sms_ext.state import get_state
from tests.conftest import TEST_KEY
from tests.helpers import ROOT


def demo_env(tmp_path: Path, redis_url: str, port: int) -> dict[str, str]:
    """The demo on its own SQLite file and queue: the checkout's instance/ stays untouched."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "PORTAL_"))}
    return {
        **clean,
        "PORT": str(port),
        "FLASK_SECRET_KEY": TEST_KEY,
        "FLASK_SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'demo.db'}",
        "FLASK_SMS_REDIS_URL": redis_url,
        "FLASK_SMS_QUEUE": f"sms-demo-{uuid.uuid4().hex[:8]}",
    }


def test_busy_port_stops_the_demo_before_the_password_is_printed(
    tmp_path: Path, redis_url: str
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "portal.demo"],
            cwd=ROOT,
            env=demo_env(tmp_path, redis_url, port),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert f"Port {port} on 127.0.0.1 is in use" in done.stderr
    assert f"PORT={port + 1} make run" in done.stderr
    assert "admin" not in done.stdout + done.stderr
    assert not (tmp_path / "demo.db").exists()  # nothing migrated or seeded


def test_a_port_that_is_not_a_number_is_named(tmp_path: Path, redis_url: str) -> None:
    env = {**demo_env(tmp_path, redis_url, 0), "PORT": "http"}
    done = subprocess.run(
        [sys.executable, "-m", "portal.demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "PORT must be a port number such as 5001, got 'http'." in done.stderr


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_demo(tmp_path: Path, redis_url: str, port: int) -> subprocess.Popen[str]:
    """``python -m portal.demo`` as ``make run`` starts it, in its own process group."""
    return subprocess.Popen(
        [sys.executable, "-m", "portal.demo"],
        cwd=ROOT,
        env=demo_env(tmp_path, redis_url, port),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def test_demo_says_where_its_data_lives_and_how_to_reset_the_password(
    tmp_path: Path, redis_url: str
) -> None:
    port = free_port()
    demo = start_demo(tmp_path, redis_url, port)
    lines: list[str] = []
    try:
        for line in demo.stdout:
            lines.append(line)
            if "Ctrl-C stops" in line:
                break
        banner = "".join(lines)
        assert re.search(r"log in as admin / \S+ \(shown once: note it; new password: ", banner)
        assert "flask --app wsgi portal create-admin admin" in banner
        assert f"database: sqlite:///{tmp_path / 'demo.db'}" in banner
        assert f"redis: {redis_url}" in banner
        deadline = time.monotonic() + 30
        while True:  # the web app child starts after the banner
            try:
                inbox = requests.get(f"http://127.0.0.1:{port}/demo/inbox", timeout=5)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, banner
                time.sleep(0.2)
        assert inbox.status_code == 200  # make run is the demo: PORTAL_DEMO=1
    finally:
        os.killpg(demo.pid, signal.SIGINT)
        demo.wait(30)


def test_portal_commands_name_their_database(portal_app: Flask) -> None:
    runner = portal_app.test_cli_runner()
    with portal_app.app_context():
        label = database_text(get_state())
    seeded = runner.invoke(args=["portal", "seed-demo"])
    assert seeded.exit_code == 0, seeded.output
    assert f"Database: {label}" in seeded.output
    assert "flask --app wsgi portal create-admin admin" in seeded.output
    created = runner.invoke(args=["portal", "create-admin", "boss", "--password", "x" * 12])
    assert created.exit_code == 0 and f"Database: {label}" in created.output


def test_sigterm_to_the_demo_stops_its_worker_and_web_app(tmp_path: Path, redis_url: str) -> None:
    """A supervisor (or ``timeout``) stops the demo with SIGTERM to it alone: its children must
    not live on as orphans holding the port and the queue."""
    port = free_port()
    demo = start_demo(tmp_path, redis_url, port)
    try:
        for line in demo.stdout:
            if "Ctrl-C stops" in line:
                break
        children = psutil.Process(demo.pid).children(recursive=True)
        assert len(children) >= 2  # the worker and the web app
        demo.send_signal(signal.SIGTERM)
        demo.wait(30)
        _gone, alive = psutil.wait_procs(children, timeout=15)
        assert alive == [], [p.cmdline() for p in alive]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(demo.pid, signal.SIGKILL)
