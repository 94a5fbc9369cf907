"""The RQ worker of the extension: app built once, an app context around every job.

A ``SimpleWorker`` (no fork per job) keeps the per-job cost at a few milliseconds, which is
what an OTP needs; scale out by running more worker processes. Besides RQ's work loop a worker
process runs two threads, and no child process (nothing outlives a killed worker):

- the keeper, every second: refreshes this worker's liveness key, by which the sweeper judges
  the jobs it started, and moves due scheduled jobs (retries) onto their queues under RQ's
  scheduler lock, so one worker of a fleet does it (RQ's own scheduler would be a forked child);
- the sweeper, once at start and every ``SMS_SWEEP_INTERVAL`` seconds, where a Redis lock lets
  only one worker of a fleet sweep per interval.

:func:`run_worker` survives a Redis outage of any length: RQ's loop ends when its connection
is lost (in the middle of a job too), and the worker waits for Redis with a capped backoff,
logs one line when Redis goes and one when it is back, and carries on as a new RQ worker.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
import uuid
from typing import Any

from flask import Flask
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Queue, SimpleWorker
from rq.exceptions import StopRequested
from rq.job import Job
from rq.scheduler import RQScheduler
from rq.scripts import RELEASE_LOCK_SCRIPT, acquire_or_refresh_lock

from ..balance import schedule as balance_schedule
from ..connections import database_text, redis_text
from ..state import SMSState, connect_redis, urgent_queue_name
from . import sweeper

log = logging.getLogger("sms_ext")

TICK_SECONDS = 1.0
"""How often the keeper refreshes the liveness key and looks for due scheduled jobs."""
SCHEDULER_LOCK_SECONDS = 5
"""How long the scheduler lock outlives a worker that died holding it (RQ's own: 61 s). Two
workers promoting at once would only enqueue a job twice, and rows are claimed once."""
RETRY_FIRST_SECONDS = 0.5
RETRY_MAX_SECONDS = 10.0
"""Backoff while Redis is unreachable: 0.5 s, doubling, at most 10 s between tries."""
LOST_CONNECTION = (RedisConnectionError, RedisTimeoutError)
REDIS_DOWN = "Redis unreachable, retrying"
REDIS_BACK = "Redis back, working"
"""The two lines a worker logs per outage."""


class RedisOutage(Exception):
    """Redis stopped answering the worker (raised to end RQ's work loop)."""


def _lost(exc: object) -> bool:
    return isinstance(exc, (*LOST_CONNECTION, RedisOutage))


class _OutageFilter(logging.Filter):
    """Drops RQ's lines about a lost Redis connection (a line per retry, tracebacks):
    :func:`run_worker` reports an outage once, when it starts and when it ends."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        logged = record.exc_info[1] if record.exc_info else None
        handled = sys.exc_info()[1]  # RQ logs "Redis connection timeout" without it
        return not (_lost(logged) or _lost(handled) or any(_lost(arg) for arg in args))


_rq_log = logging.getLogger("rq.worker.sms_ext")
"""The log of our RQ workers: RQ's handlers and level (a child of ``rq.worker``), less the
outage noise."""
_rq_log.addFilter(_OutageFilter())


class AppWorker(SimpleWorker):
    """Runs each job inside ``app.app_context()`` so jobs reach the database and settings.

    It ends RQ's work loop when Redis is lost (RQ retries by itself only when idle, and quits
    when the connection drops during a job), so :func:`run_worker` handles every outage alike.
    """

    def __init__(
        self, *args: Any, app: Flask, stopping: threading.Event | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.app = app
        self.log = _rq_log
        self.stopping = stopping if stopping is not None else threading.Event()
        """Set by SIGTERM/SIGINT: shared with :func:`run_worker`, which then stops too."""
        self.lost_redis: BaseException | None = None
        """The error that ended this worker's loop when Redis stopped answering."""
        self._in_work_loop = False
        self._executing = False

    def execute_job(self, job: Job, queue: Queue) -> None:
        self._executing = True
        try:
            with self.app.app_context():
                super().execute_job(job, queue)
        except LOST_CONNECTION as exc:  # RQ's bookkeeping around the job; ends RQ's loop
            self.lost_redis = exc
            raise
        finally:
            self._executing = False

    def work(self, *args: Any, **kwargs: Any) -> bool:
        self._in_work_loop = True
        try:
            return super().work(*args, **kwargs)
        except LOST_CONNECTION as exc:  # while registering, before RQ's loop and teardown
            self.lost_redis = exc
            self._stop_command_channel()
            raise
        finally:
            self._in_work_loop = False

    def request_stop(self, signum: int, frame: Any) -> None:
        """RQ's warm shutdown (a second signal is a cold one); also stops :func:`run_worker`."""
        self.stopping.set()
        if self._in_work_loop:  # RQ's handlers stay installed after its loop ended
            super().request_stop(signum, frame)
            if not self._executing:
                # RQ waits for the job at hand when its recorded state is "busy"; a Redis
                # outage can leave that state behind while the worker waits for work, and
                # the wait for a job then holds the stop for minutes. Idle is idle: stop now.
                raise StopRequested()

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        if pipeline is not None:  # queued, not sent: the pipeline's owner sees the error
            super().heartbeat(timeout, pipeline)
            return
        try:
            super().heartbeat(timeout)
        except LOST_CONNECTION as exc:
            # Raised at the top of RQ's dequeue loop, which would otherwise retry a lost
            # connection by itself for ever (a log line each time): end the loop instead.
            self.lost_redis = exc
            raise RedisOutage(str(exc)) from exc

    def teardown(self) -> None:
        try:
            super().teardown()
        except LOST_CONNECTION as exc:  # RQ's teardown stops at its first Redis error
            self.lost_redis = self.lost_redis or exc
            self._stop_command_channel()

    def _stop_command_channel(self) -> None:
        """Stop RQ's pubsub thread without Redis (it ends at its next look)."""
        if self.pubsub_thread is not None:
            self.pubsub_thread.stop()


class Keeper(threading.Thread):
    """Every second: the liveness key of the worker's current RQ name, and due scheduled jobs
    moved onto their queues under RQ's scheduler lock (one worker of a fleet holds it).

    Redis only, on its own client with short timeouts; an error waits for the next tick
    quietly (:func:`run_worker` reports outages).
    """

    def __init__(self, redis: Redis, queue_names: list[str], *, schedule: bool) -> None:
        super().__init__(name="sms-keeper", daemon=True)
        self.redis = redis
        self.queue_names = queue_names
        self.schedule = schedule
        self.worker_name: str | None = None
        """The RQ name to keep alive; ``None`` while no RQ loop runs (its jobs are lost)."""
        self.stopped = threading.Event()
        self.token = f"sms-worker-{uuid.uuid4().hex}"
        """Our name on RQ's scheduler locks."""
        self._scheduler = RQScheduler(
            queue_names, connection=redis, name=self.token, logging_level="WARNING"
        )
        self._announced: str | None = None
        self._ticking = threading.Lock()

    def run(self) -> None:
        while not self.stopped.is_set():
            self.tick()
            self.stopped.wait(TICK_SECONDS)

    def tick(self) -> None:
        """One round; :func:`run_worker` also calls it, so rounds never overlap."""
        try:
            with self._ticking:
                self.announce()
                if self.schedule:
                    self.promote()
        except RedisError as exc:
            log.debug("keeper: Redis unreachable (%s)", exc)
        except Exception:
            log.exception("keeper failed; will try again")

    def announce(self) -> None:
        """Refresh the liveness key of the current RQ name; drop the previous name's."""
        name = self.worker_name
        with self.redis.pipeline(transaction=False) as pipeline:
            if self._announced is not None and self._announced != name:
                pipeline.delete(sweeper.liveness_key(self._announced))
            if name is not None:
                pipeline.set(sweeper.liveness_key(name), os.getpid(), ex=sweeper.LIVENESS_TTL)
            pipeline.execute()
        self._announced = name

    def promote(self) -> None:
        """Move due scheduled jobs of the queues whose scheduler lock we hold (or take)."""
        owned = [
            name
            for name in self.queue_names
            if acquire_or_refresh_lock(
                self.redis, RQScheduler.get_locking_key(name), self.token, SCHEDULER_LOCK_SECONDS
            )
            != "taken"
        ]
        if owned:
            self._scheduler.prepare_registries(owned)
            self._scheduler.enqueue_scheduled_jobs()

    def stop(self) -> None:
        """Stop ticking; give up the locks and the liveness key (nothing runs any more)."""
        self.stopped.set()
        if self.is_alive():
            self.join(5)
        release = self.redis.register_script(RELEASE_LOCK_SCRIPT)  # only if still ours
        with contextlib.suppress(RedisError), self.redis.pipeline(transaction=False) as pipeline:
            for name in self.queue_names:
                release([RQScheduler.get_locking_key(name)], [self.token], client=pipeline)
            if self._announced is not None:
                pipeline.delete(sweeper.liveness_key(self._announced))
            pipeline.execute()


class SweeperThread(threading.Thread):
    """Calls the sweeper periodically until stopped; errors are logged, never fatal."""

    def __init__(self, app: Flask, interval: float) -> None:
        super().__init__(name="sms-sweeper", daemon=True)
        self.app = app
        self.interval = interval
        self.stopped = threading.Event()
        self._wake = threading.Event()
        self._redis_down = False

    def run(self) -> None:
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            if self.stopped.is_set():
                return
            self.sweep_once(locked=True)

    def wake(self) -> None:
        """Sweep now (under the lock): Redis is back, perhaps empty."""
        self._wake.set()

    def stop(self) -> None:
        self.stopped.set()
        self._wake.set()

    def sweep_once(self, *, locked: bool) -> None:
        """Sweep; with ``locked``, only if no other worker swept during this interval."""
        with self.app.app_context():
            state: SMSState = self.app.extensions["sms"]
            try:
                interval = max(1, int(self.interval))
                lock = f"sms_ext:{state.settings.queue}:sweep-lock"
                if not locked or state.redis.set(lock, "1", nx=True, ex=interval):
                    outcome = sweeper.sweep(state)
                    balance_schedule.enqueue_due(state)  # once per period across the fleet
                    if outcome["recovered"] or outcome["enqueued"]:
                        log.info("sweeper: %s", outcome)
                self._redis_down = False
            except RedisError as exc:
                if not self._redis_down:  # once per outage
                    log.warning("sweeper: no Redis (%s); will try again", exc)
                self._redis_down = True
                state.session.rollback()
            except Exception:
                log.exception("sweeper failed; will try again")
                state.session.rollback()


def _await_redis(probe: Redis, stopping: threading.Event, lost: BaseException | None) -> None:
    """Return once Redis answers (or a stop was asked for), trying with a capped backoff.

    One line when Redis is found gone, one when it answers again.
    """
    delay = RETRY_FIRST_SECONDS
    down = lost is not None
    if down:
        log.warning("%s (%s)", REDIS_DOWN, lost)
    while not stopping.is_set():
        try:
            probe.ping()
        except RedisError as exc:
            if not down:
                log.warning("%s (%s)", REDIS_DOWN, exc)
                down = True
        else:
            if down:
                log.warning(REDIS_BACK)
            return
        stopping.wait(delay)
        delay = min(delay * 2, RETRY_MAX_SECONDS)


def run_worker(app: Flask, *, burst: bool = False, with_scheduler: bool = True) -> bool:
    """Work the SMS queues until stopped (or, with ``burst``, until they are empty).

    Returns whether any job was run. A Redis outage is waited out, except in ``burst`` mode,
    where it raises :class:`RedisOutage`. SIGTERM/SIGINT stop the worker after the job at hand
    (RQ's warm shutdown; a second signal is RQ's cold shutdown).
    """
    state: SMSState = app.extensions["sms"]
    settings = state.settings
    # RQ serves queues in order: guest codes and test sends before bulk work.
    names = [urgent_queue_name(settings.queue), settings.queue]
    connection = connect_redis(settings.redis_url, state.instance_path, for_worker=True)
    probe = connect_redis(settings.redis_url, state.instance_path)  # short timeouts
    with app.app_context():  # the engine is per app
        database = database_text(state)
    log.info(
        "SMS worker started: queues %s; Redis %s; database %s; concurrency %d",
        ", ".join(names),
        redis_text(state),
        database,
        settings.worker_concurrency,
    )
    stopping = threading.Event()
    keeper = Keeper(probe, names, schedule=with_scheduler)
    sweeper_thread = SweeperThread(app, settings.sweep_interval)
    # A (re)started worker sweeps at once, lock or not: a restarted fleet recovers without
    # waiting an interval, and a duplicate enqueue is harmless (rows are claimed once).
    sweeper_thread.sweep_once(locked=False)
    if burst and with_scheduler:
        keeper.tick()  # due retries go out in this burst
    keeper.start()
    if not burst:
        sweeper_thread.start()
    worked = False
    previous: AppWorker | None = None
    pause = RETRY_FIRST_SECONDS
    try:
        while not stopping.is_set():
            lost: BaseException | None = None
            if previous is not None:  # Redis kept its data (frozen, cut off): tidy up
                with contextlib.suppress(RedisError):
                    previous.register_death()
            started = time.monotonic()
            try:
                queues = [Queue(name, connection=connection) for name in names]
                worker = previous = AppWorker(
                    queues, connection=connection, app=app, stopping=stopping
                )
                keeper.worker_name = worker.name
                keeper.tick()  # alive before the first job starts
                worked = worker.work(burst=burst, logging_level="WARNING") or worked
                lost = worker.lost_redis
            except (*LOST_CONNECTION, RedisOutage) as exc:
                lost = exc
            keeper.worker_name = None  # a job it left STARTED is lost, not alive
            if stopping.is_set() or (burst and lost is None):
                break
            if burst:
                raise RedisOutage(f"Redis unreachable ({lost}); the burst stopped early")
            _wait_phase_signals(stopping)
            if lost is None:
                # RQ's loop ended on an error of its own (logged), or on a Redis error that was
                # over before RQ's teardown: start again, later each time if it keeps happening.
                if time.monotonic() - started > 60:
                    pause = RETRY_FIRST_SECONDS
                stopping.wait(pause)
                pause = min(pause * 2, RETRY_MAX_SECONDS)
            _await_redis(probe, stopping, lost)
            sweeper_thread.wake()  # an emptied Redis lost every job: recover at once
    finally:
        sweeper_thread.stop()
        keeper.stop()
    return worked


def _wait_phase_signals(stopping: threading.Event) -> None:
    """Between two RQ loops a stop signal just ends the worker."""
    if threading.current_thread() is not threading.main_thread():
        return

    def stop(signum: int, frame: Any) -> None:
        stopping.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)
