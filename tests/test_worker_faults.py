"""Faults a worker process must survive, with real processes: Redis killed, frozen and
restarted under two busy workers; a worker's main process SIGKILLed; a worker killed between
taking a job and claiming its rows. Counts are taken at the simulator, where the truth is."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Flask
from redis import Redis
from rq.job import Job, JobStatus
from rq.scheduler import RQScheduler
from rq.worker import Worker
from sqlalchemy import func, select

from sms_ext import SMS, Message, Status
from sms_ext.messages.sweeper import _alive_jobs, sweep
from tests.conftest import TEST_KEY, _empty_tables, drain, make_app
from tests.helpers import ROOT, age, custom_gateway, reload
from tests.redis_server import RedisServer
from tests.simulator import GatewaySimulator

pytestmark = pytest.mark.faults

TO = "+27831234567"
OUTAGE_MESSAGES = 120
DOWN = "Redis unreachable, retrying"
BACK = "Redis back, working"
SWEPT = re.compile(r"sweeper: .*'enqueued': (\d+)")


@dataclass
class Spawned:
    """A ``flask sms worker`` process (its own process group) and the file it writes to."""

    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    @classmethod
    def worker(cls, log: Path, environment: dict[str, str], app: str, *args: str) -> Spawned:
        """``flask --app APP sms worker ARGS`` in a process group of its own, output to
        ``log`` (a file, not a pipe nobody reads: a full pipe would block the worker)."""
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "flask", "--app", app, "sms", "worker", *args],
                cwd=ROOT,
                env=environment,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return cls(process, log)


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Spawned]]:
    """Start worker processes of the demo portal; whatever is left is SIGKILLed at the end."""
    started: list[Spawned] = []

    def start(database_url: str, redis_url: str, *args: str, **env: str) -> Spawned:
        log = tmp_path / f"worker-{len(started)}.log"
        environment = {
            **os.environ,
            "FLASK_SQLALCHEMY_DATABASE_URI": database_url,
            "FLASK_SMS_REDIS_URL": redis_url,
            "FLASK_SECRET_KEY": TEST_KEY,
            "FLASK_SMS_RETRY_BASE_SECONDS": "1",
            **{f"FLASK_SMS_{name.upper()}": value for name, value in env.items()},
        }
        started.append(Spawned.worker(log, environment, "wsgi", *args))
        return started[-1]

    yield start
    for spawned in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(spawned.pid, signal.SIGKILL)
        spawned.process.wait(10)


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> float:
    """Poll ``condition`` until true; returns the seconds it took."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.05)
    return time.monotonic() - start


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``, from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...: comm may hold spaces, so split after its ")".
        state, _ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            members.append(int(entry.name))
    return members


def stop_gracefully(worker: Spawned, timeout: float = 15) -> float:
    """SIGTERM the worker; returns how long it took to exit (it must exit with status 0)."""
    start = time.monotonic()
    worker.process.send_signal(signal.SIGTERM)
    try:
        code = worker.process.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"worker ignored SIGTERM:\n{worker.output()[-3000:]}") from None
    assert code == 0, worker.output()[-3000:]
    return time.monotonic() - start


def registered_workers(redis: Redis) -> int:
    return Worker.count(connection=redis)


def outputs(workers: list[Spawned]) -> str:
    return "\n".join(f"--- worker {w.pid} ---\n{w.output()[-3000:]}" for w in workers)


@pytest.mark.parametrize("fault", ["kill", "freeze"])
def test_workers_survive_redis_outage(
    fault: str,
    backend: str,
    database_urls: dict[str, str],
    simulator: GatewaySimulator,
    spawn: Callable[..., Spawned],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Two workers busy with single messages; Redis is killed and restarted empty (or frozen)
    for a few seconds. Both workers carry on by themselves and every message goes out once."""
    simulator.latency = 0.05
    with RedisServer() as redis_server:
        sms = SMS()
        app = make_app(database_urls[backend], redis_server.url, sms=sms)
        client = Redis.from_url(redis_server.url, socket_timeout=5)
        with app.app_context():
            _empty_tables(app.extensions["sqlalchemy"])
            custom_gateway(app, simulator, "gw")
            workers = [
                spawn(database_urls[backend], redis_server.url, sweep_interval="2")
                for _ in range(2)
            ]
            wait_for(lambda: registered_workers(client) == 2, 30, "workers registered")
            recipients = {f"+278312{i:05d}" for i in range(OUTAGE_MESSAGES)}
            for to in sorted(recipients):
                sms.send(to, f"outage test to {to}")
            started = time.monotonic()
            wait_for(lambda: len(simulator.arrivals) >= OUTAGE_MESSAGES // 5, 30, "sending")
            assert redis_server.process is not None
            if fault == "kill":
                redis_server.process.kill()
                redis_server.process.wait(10)
                time.sleep(3)
                redis_server.start()  # the same port, empty: every queued job is gone
            else:
                redis_server.process.send_signal(signal.SIGSTOP)
                time.sleep(4)
                redis_server.process.send_signal(signal.SIGCONT)
            fault_ended = time.monotonic()
            session = app.extensions["sms"].session

            def all_sent() -> bool:
                session.expire_all()
                count = select(func.count()).where(Message.status == Status.SENT)
                return session.scalar(count) == OUTAGE_MESSAGES

            try:
                wait_for(all_sent, 60, "every message sent")
            except AssertionError as exc:
                statuses = session.execute(
                    select(Message.status, func.count()).group_by(Message.status)
                ).all()
                raise AssertionError(f"{exc}; statuses {statuses}\n{outputs(workers)}") from None
            recovered = time.monotonic() - fault_ended
            simulator.wait_idle()
            alive = [w.process.poll() is None for w in workers]
            assert alive == [True, True], outputs(workers)
            arrivals = simulator.arrivals_by_recipient("custom")
            # Nothing was killed mid-request, so no outcome was unknowable: exactly once each.
            assert set(arrivals) == recipients
            duplicates = {to: n for to, n in arrivals.items() if n > 1}
            assert duplicates == {}, duplicates
            lines = [(w.output().count(DOWN), w.output().count(BACK)) for w in workers]
            if fault == "kill":
                # Both lost their connection: one line when Redis went, one when it came back.
                assert lines == [(1, 1), (1, 1)], outputs(workers)
            else:
                # Frozen, Redis kept every connection: the workers waited on it, or said so once.
                assert all(down == back <= 1 for down, back in lines), outputs(workers)
            swept = sum(int(n) for w in workers for n in SWEPT.findall(w.output()))
            stop_times = [stop_gracefully(w) for w in workers]
            with capsys.disabled():
                print(
                    f"\n[{backend}/{fault}] {OUTAGE_MESSAGES} sent once each in "
                    f"{time.monotonic() - started:.1f} s, {recovered:.1f} s after Redis was "
                    f"back; duplicates 0; re-enqueued by the sweepers {swept}; outage lines "
                    f"{lines}; SIGTERM exits in {', '.join(f'{t:.1f}' for t in stop_times)} s"
                )
            app.extensions["sqlalchemy"].engine.dispose()
        client.close()


def test_idle_worker_survives_redis_restart(
    backend: str,
    database_urls: dict[str, str],
    simulator: GatewaySimulator,
    spawn: Callable[..., Spawned],
) -> None:
    """A worker waiting for work when Redis goes says so once, and once when it is back."""
    with RedisServer() as redis_server:
        sms = SMS()
        app = make_app(database_urls[backend], redis_server.url, sms=sms)
        client = Redis.from_url(redis_server.url, socket_timeout=5)
        with app.app_context():
            _empty_tables(app.extensions["sqlalchemy"])
            custom_gateway(app, simulator, "gw")
            worker = spawn(database_urls[backend], redis_server.url, sweep_interval="2")
            wait_for(lambda: registered_workers(client) == 1, 30, "worker registered")
            assert redis_server.process is not None
            redis_server.process.kill()
            redis_server.process.wait(10)
            time.sleep(2)
            redis_server.start()
            message = sms.send(TO, "after the restart")
            wait_for(lambda: reload(app, message).status == Status.SENT, 30, "sent")
            assert worker.process.poll() is None
            output = worker.output()
            assert (output.count(DOWN), output.count(BACK)) == (1, 1), output[-3000:]
            stop_gracefully(worker)
            app.extensions["sqlalchemy"].engine.dispose()
        client.close()


def test_killed_worker_leaves_no_process_and_retries_go_on(
    app_ctx: Flask,
    redis: Redis,
    simulator: GatewaySimulator,
    service_urls: tuple[str, str],
    sms: SMS,
    spawn: Callable[..., Spawned],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """SIGKILL a worker's main process only: nothing of it stays behind, and scheduled jobs
    (retries) are still moved onto the queue, by the other worker."""
    custom_gateway(app_ctx, simulator, "gw")
    state = app_ctx.extensions["sms"]
    lock = RQScheduler.get_locking_key(state.settings.queue)
    first = spawn(*service_urls)
    wait_for(lambda: redis.get(lock), 30, "the first worker takes the scheduler lock")
    second = spawn(*service_urls)
    wait_for(lambda: registered_workers(redis) == 2, 30, "both workers registered")
    os.kill(first.pid, signal.SIGKILL)  # the main process alone, as the OOM killer would
    first.process.wait(10)
    try:
        gone = wait_for(lambda: not group_members(first.pid), 2, "the killed worker's group gone")
    except AssertionError:
        left = group_members(first.pid)
        raise AssertionError(f"processes of the killed worker still running: {left}") from None
    # A retry: the first try fails, the job for the second is scheduled (RQ's enqueue_at).
    simulator.fail_next("custom", "500")
    killed_at = time.monotonic()
    message = sms.send(TO, "retried after a worker died")
    took = wait_for(
        lambda: reload(app_ctx, message).status == Status.SENT, 30, "the retry was sent"
    )
    assert [r.response_status for r in simulator.requests_for("custom")] == [500, 200]
    assert second.process.poll() is None
    stop_time = stop_gracefully(second)
    assert not group_members(second.pid)
    with capsys.disabled():
        print(
            f"\n[kill -9 worker] its group gone in {gone:.2f} s; retry sent by the other worker "
            f"{took:.1f} s after the send ({time.monotonic() - killed_at:.1f} s after the kill); "
            f"SIGTERM exit in {stop_time:.1f} s"
        )


@contextlib.contextmanager
def writes_blocked(app: Flask) -> Iterator[None]:
    """Hold a lock that makes every write to the messages table wait (reads go on)."""
    engine = app.extensions["sqlalchemy"].engine
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        if engine.dialect.name == "sqlite":
            cursor.execute("BEGIN IMMEDIATE")
        else:
            cursor.execute(f"LOCK TABLE {Message.__tablename__} IN EXCLUSIVE MODE")
        yield
    finally:
        connection.rollback()
        connection.close()


def test_job_of_worker_killed_before_claim_is_swept(
    app_ctx: Flask,
    redis: Redis,
    simulator: GatewaySimulator,
    service_urls: tuple[str, str],
    sms: SMS,
    spawn: Callable[..., Spawned],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A worker takes a job (RQ marks it STARTED) and dies before it claims the rows: the job
    stays STARTED for good, yet the sweeper sees its worker is gone and sends the message."""
    custom_gateway(app_ctx, simulator, "gw")
    state = app_ctx.extensions["sms"]
    # No periodic sweep in the worker: the test's sweep must be the one that recovers.
    worker = spawn(*service_urls, sweep_interval="3600")
    wait_for(lambda: registered_workers(redis) == 1, 30, "worker registered")
    os.killpg(worker.pid, signal.SIGSTOP)  # so it cannot take the job before the lock is held
    message = sms.send(TO, "the worker dies before claiming me")
    job_id = message.job_id
    assert job_id
    with writes_blocked(app_ctx):
        os.killpg(worker.pid, signal.SIGCONT)
        wait_for(
            lambda: Job.fetch(job_id, connection=redis).get_status() == JobStatus.STARTED,
            15,
            "the worker started the job",
        )
        time.sleep(0.3)  # now waiting for the lock inside the claim
        # A live worker's started job is alive.
        assert _alive_jobs(state, [job_id]) == {job_id}
        os.killpg(worker.pid, signal.SIGKILL)
        worker.process.wait(10)
        killed_at = time.monotonic()
    assert Job.fetch(job_id, connection=redis).get_status() == JobStatus.STARTED
    assert reload(app_ctx, message).status == Status.QUEUED
    age(app_ctx)  # past the sweeper's grace for new rows

    def swept() -> bool:
        return sweep(state)["enqueued"] == 1

    try:
        found = wait_for(swept, 25, "the sweeper re-enqueued the message")
    except AssertionError:
        raise AssertionError(
            f"message still waiting on job {job_id} of a dead worker\n{worker.output()[-3000:]}"
        ) from None
    drain(app_ctx)
    assert reload(app_ctx, message).status == Status.SENT
    assert simulator.arrivals_by_recipient("custom") == {TO: 1}
    with capsys.disabled():
        print(
            f"\n[killed before claim] re-enqueued {time.monotonic() - killed_at:.1f} s after the "
            f"kill ({found:.1f} s of sweeping), sent once"
        )


def test_job_popped_by_a_worker_that_died_is_swept(
    app_ctx: Flask, redis: Redis, simulator: GatewaySimulator, sms: SMS
) -> None:
    """RQ pops a job id off the queue (BLPOP) before it marks the job STARTED: a worker that
    dies in between leaves a QUEUED job that is in no queue. The sweeper re-enqueues it."""
    custom_gateway(app_ctx, simulator, "gw")
    state = app_ctx.extensions["sms"]
    message = sms.send(TO, "popped and dropped")
    assert redis.lpop(state.queue.key).decode() == message.job_id  # what the dead worker did
    assert Job.fetch(message.job_id, connection=redis).get_status() == JobStatus.QUEUED
    age(app_ctx)
    outcome = sweep(state)
    assert (outcome["lost"], outcome["enqueued"]) == (1, 1)
    drain(app_ctx)
    assert reload(app_ctx, message).status == Status.SENT
    assert simulator.arrivals_by_recipient("custom") == {TO: 1}
