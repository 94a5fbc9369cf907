"""The RQ worker of the extension: app built once, an app context around every job.

A ``SimpleWorker`` (no fork per job) keeps the per-job cost at a few milliseconds, which is
what an OTP needs; scale out by running more worker processes. The worker also runs the
sweeper every ``SMS_SWEEP_INTERVAL`` seconds; a Redis lock lets only one worker of a fleet
sweep per interval.
"""

from __future__ import annotations

import logging
import threading

from flask import Flask
from redis.exceptions import RedisError
from rq import Queue, SimpleWorker
from rq.job import Job

from ..state import SMSState, connect_redis
from . import sweeper

log = logging.getLogger("sms_ext")


class AppWorker(SimpleWorker):
    """Runs each job inside ``app.app_context()`` so jobs reach the database and settings."""

    def __init__(self, *args, app: Flask, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.app = app

    def execute_job(self, job: Job, queue: Queue) -> None:
        with self.app.app_context():
            super().execute_job(job, queue)


class SweeperThread(threading.Thread):
    """Calls the sweeper periodically until stopped; errors are logged, never fatal."""

    def __init__(self, app: Flask, interval: float) -> None:
        super().__init__(name="sms-sweeper", daemon=True)
        self.app = app
        self.interval = interval
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            self.sweep_once(locked=True)

    def sweep_once(self, *, locked: bool) -> None:
        """Sweep; with ``locked``, only if no other worker swept during this interval."""
        with self.app.app_context():
            state: SMSState = self.app.extensions["sms"]
            try:
                interval = max(1, int(self.interval))
                lock = f"sms_ext:{state.settings.queue}:sweep-lock"
                if not locked or state.redis.set(lock, "1", nx=True, ex=interval):
                    outcome = sweeper.sweep(state)
                    if outcome["recovered"] or outcome["enqueued"]:
                        log.info("sweeper: %s", outcome)
            except RedisError as exc:
                log.warning("sweeper: Redis unreachable (%s); will try again", exc)
            except Exception:
                log.exception("sweeper failed; will try again")
                state.session.rollback()


def run_worker(app: Flask, *, burst: bool = False, with_scheduler: bool = True) -> bool:
    """Work the SMS queue until stopped (or, with ``burst``, until it is empty)."""
    state: SMSState = app.extensions["sms"]
    connection = connect_redis(state.settings.redis_url, state.instance_path, for_worker=True)
    queue = Queue(state.settings.queue, connection=connection)
    worker = AppWorker([queue], connection=connection, app=app)
    sweeper_thread = SweeperThread(app, state.settings.sweep_interval)
    # A (re)started worker sweeps at once, lock or not: a restarted fleet recovers without
    # waiting an interval, and a duplicate enqueue is harmless (rows are claimed once).
    sweeper_thread.sweep_once(locked=False)
    if not burst:
        sweeper_thread.start()
    try:
        return worker.work(burst=burst, with_scheduler=with_scheduler, logging_level="WARNING")
    finally:
        sweeper_thread.stopped.set()
