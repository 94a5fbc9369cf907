"""Benchmark of the guest "send me a code" POST of the portal's splash page, over real HTTP.

Run ``.venv/bin/python bench/otp_http.py [--database URL] [--redis URL] [--clients 32]
[--requests N] [--duration S]``. The portal (``wsgi:app``) and a bare Flask endpoint
(``bench/otp_bare.py``: reads the ``phone`` field, answers a tiny page) are served in turn by
gunicorn with the same settings (2 sync workers by default) and hammered by closed-loop clients
from this process: each client posts, waits for the answer, posts again.

Targets (issue 8): at 32 concurrent clients, OTP p99 < 100 ms and OTP throughput at least
25 % of the bare endpoint's. Redis is a private ``redis-server`` started for the run unless
``--redis`` names one (then only our own keys are used and removed).

What one OTP POST does here is what a guest's first does: CSRF check, venue (cached per
process), phone parsing, the rate limits (tested, then hit: two Redis pipelines), the challenge
and its SMS row in one transaction, the urgent lane's wake-up after the commit (one SET NX; an
RQ job only for the first code of a burst), the code page and a signed session cookie. The
browser key is new, so there is no resend cooldown to look up. No worker runs: the messages
stay queued; the private schema and Redis keys go at the end.

- Schema: ``flask --app wsgi db upgrade`` then ``flask --app wsgi portal seed-demo`` in a private
  PostgreSQL schema (``search_path``); the portal gets its config from ``FLASK_*`` variables.
- Rate limits are raised to "1000000 per minute" and every POST has its own phone number, so no
  limit refuses; a guest's resend cooldown is per browser session, and no session is reused.
- CSRF stays on (``--no-csrf`` switches it off): production runs with it, and its check is part
  of the cost. Each client fetches the splash page once and replays that page's session cookie
  and token on every POST; the answer's ``Set-Cookie`` is never kept, so every POST is a new
  guest who has just loaded the form.
- Sync workers (``--worker-class gthread`` to compare): the request is CPU-bound Python, so one
  request per process at a time is what gunicorn recommends and what keeps the GIL out of the
  figures; sync workers close every connection, the load generator pays the (loopback) connect.
  On the 2-CPU dev box gthread (4 threads) gave the bare endpoint ~35 % more (keep-alive) and
  the OTP POST the same throughput with twice the p99: sync is the fairer choice for the OTP.
- Load generator: one thread per client in this process, one ``http.client`` connection each.
  ``--client requests`` (a ``requests.Session`` per client) costs ~1.8 ms of CPU per request
  against ~0.4 ms, more than the bare endpoint itself, and on two shared CPUs it throttled the
  bare endpoint to a third. ``--load-procs 2`` spreads the clients over processes; it raised
  the bare figure by under 10 % and the OTP one not at all, so one process is the default.
- Closed loop: mean latency = clients / throughput (Little's law), so at 32 clients the p99 target
  needs well over 640 requests/s. Two cores are shared by the load generator, gunicorn,
  PostgreSQL and Redis: each phase prints who used how much CPU per request.

``--profile N`` then runs N OTP POSTs in-process (Flask test client, same database and Redis,
one at a time) under cProfile and prints where the time goes.
"""

from __future__ import annotations

import argparse
import cProfile
import http.client
import itertools
import json
import multiprocessing
import os
import platform
import pstats
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from http.cookiejar import DefaultCookiePolicy
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlencode, urlsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a script: make bench, sms_ext and tests importable

import psycopg  # noqa: E402
import requests  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from redis import Redis  # noqa: E402
from redis.connection import AbstractConnection  # noqa: E402
from rq import Queue  # noqa: E402

from bench.harness import (  # noqa: E402
    START_TIMEOUT,
    best_effort,
    forget_queue,
    percentile,
    private_schema,
    start_redis,
    stop_process,
    verdict,
    wait_until,
)
from bench.otp_bare import MARKER as BARE_MARKER  # noqa: E402
from portal.cli import DEMO_SLUG  # noqa: E402
from sms_ext.models import Kind, Message, OtpChallenge, Status  # noqa: E402
from sms_ext.state import urgent_queue_name  # noqa: E402

DEFAULT_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
NO_LIMIT = "1000000 per minute"
LIMIT_KEYS = ("SMS_OTP_LIMIT_PHONE", "SMS_OTP_LIMIT_CLIENT", "SMS_OTP_LIMIT_LOCATION")
PORTAL_MARKER = 'name="sms_step" value="code"'
"""Only on the code page: a 200 without it (the phone form again) counts as an error."""
PARTIES = ("gunicorn", "load generator", "postgres", "redis")
TARGET_P99_MS = 100.0
TARGET_RATIO = 25.0
REQUEST_TIMEOUT = 10.0
CLI_TIMEOUT = 120.0
COUNT_CAP_SECONDS = 600.0
"""With ``--requests``, no request starts later than this after the measurement began."""
PROFILE_WARMUP = 50


# -- the database, the portal's configuration and gunicorn ---------------------------------------


def portal_config(database_url: str, redis_url: str, queue: str, csrf: bool) -> dict[str, Any]:
    """The portal's config for this run; the queue name also prefixes the rate-limit keys."""
    return {
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SECRET_KEY": f"otp-bench-{secrets.token_hex(24)}",
        "SMS_REDIS_URL": redis_url,
        "SMS_QUEUE": queue,
        "WTF_CSRF_ENABLED": csrf,
        **dict.fromkeys(LIMIT_KEYS, NO_LIMIT),
    }


def flask_env(config: dict[str, Any]) -> dict[str, str]:
    """Our environment with ``config`` as ``FLASK_*`` variables (read by ``from_prefixed_env``,
    which parses values as JSON: none of our strings is valid JSON); other ``FLASK_*`` go."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("FLASK_")}
    for key, value in config.items():
        env[f"FLASK_{key}"] = value if isinstance(value, str) else json.dumps(value)
    return env


def flask_cli(env: dict[str, str], *args: str) -> None:
    """``flask --app wsgi ARGS`` in the project directory; its output is shown only on failure
    (``seed-demo`` prints the admin password)."""
    command = [str(Path(sys.executable).parent / "flask"), "--app", "wsgi", *args]
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT
    )
    if done.returncode:
        output = (done.stdout + done.stderr).strip().splitlines()[-30:]
        raise RuntimeError(
            f"flask {' '.join(args)} exited with {done.returncode}:\n" + "\n".join(output)
        )


@dataclass
class Server:
    """A gunicorn master (our child; its workers are its children) and its log."""

    name: str
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def check(self) -> None:
        """Fail fast with gunicorn's last words instead of waiting out a timeout."""
        if self.process.poll() is not None:
            tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])
            raise RuntimeError(
                f"gunicorn ({self.name}) exited with {self.process.returncode}:\n{tail}"
            )

    def answers(self) -> bool:
        self.check()
        try:
            return requests.get(self.url, timeout=2).status_code == 200
        except requests.RequestException:
            return False


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_gunicorn(
    stack: ExitStack, name: str, app: str, env: dict[str, str], args: argparse.Namespace, logs: Path
) -> Server:
    """gunicorn serving ``app`` on a free loopback port, stopped with the stack; once it answers."""
    port = free_port()
    command = [
        str(Path(sys.executable).parent / "gunicorn"),
        *("--workers", str(args.workers), "--worker-class", args.worker_class),
        *("--bind", f"127.0.0.1:{port}"),
    ]
    if args.worker_class == "gthread":
        command += ["--threads", str(args.threads)]
    log = logs / f"gunicorn-{name}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [*command, app], cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    stack.callback(stop_process, process)
    server = Server(name, process, f"http://127.0.0.1:{port}/s/{DEMO_SLUG}/", log)
    wait_until(server.answers, START_TIMEOUT, f"gunicorn ({name}) start", interval=0.2)
    return server


def forget_keys(redis_url: str, queue: str) -> None:
    """Our queue, its jobs and registries, and our rate-limit keys; nothing else is touched."""
    connection = Redis.from_url(redis_url)
    try:
        for name in (queue, urgent_queue_name(queue)):
            Queue(name, connection=connection).delete(delete_jobs=True)
        keys = list(connection.scan_iter(match=f"sms_ext:{queue}:*", count=1000))
        if keys:
            connection.delete(*keys)
    finally:
        connection.close()
    forget_queue(redis_url, queue)


# -- CPU accounting ------------------------------------------------------------------------------


@dataclass
class CpuSnapshot:
    """CPU seconds used so far: per process (with its party) and by the whole machine."""

    processes: dict[int, tuple[str, float]]
    machine: float

    def since(self, before: CpuSnapshot) -> Counter[str]:
        """CPU seconds per party between two snapshots, and ``machine``. A process that exited
        in between is missing from both sides (its time stays in ``machine``)."""
        used: Counter[str] = Counter()
        for pid, (party, seconds) in self.processes.items():
            used[party] += seconds - before.processes.get(pid, (party, 0.0))[1]
        used["machine"] = self.machine - before.machine
        return used


def cpu_snapshot(gunicorn_pid: int) -> CpuSnapshot:
    """CPU seconds used so far by each process on the machine (Linux ``/proc``), by party.

    gunicorn = the master and its workers; load generator = this process and its other
    children; PostgreSQL and Redis by process name (the servers are shared: other users' work
    would show here too); any other process as ``other:<name>``; ``machine`` = all CPUs' busy
    time (it also holds what the kernel does for no process in particular).
    """
    tick = os.sysconf("SC_CLK_TCK")
    me = os.getpid()
    processes: dict[int, tuple[str, float]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue  # exited meanwhile
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        pid, ppid = int(entry.name), int(fields[1])
        if gunicorn_pid in (pid, ppid):
            party = "gunicorn"
        elif me in (pid, ppid):
            party = "load generator"
        elif name.startswith("postgres"):
            party = "postgres"
        elif name.startswith("redis-server"):
            party = "redis"
        else:
            party = f"other:{name}"
        processes[pid] = party, (int(fields[11]) + int(fields[12])) / tick
    times = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    busy = sum(times) - times[3] - times[4]  # all but idle and iowait
    return CpuSnapshot(processes, busy / tick)


# -- the load generator --------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadSpec:
    """What one load-generating process does (picklable: it may run in a child process)."""

    url: str
    marker: str
    client: str
    """A key of :data:`CLIENTS`."""
    csrf: bool
    """Fetch a CSRF token and its session cookie per client first."""
    clients: int
    first_phone: int
    phone_step: int
    start_at: float
    """Wall clock (``time.time()``): the warm-up begins; all processes share these instants."""
    measure_at: float
    end_at: float
    """No request starts after this."""
    count: int | None
    """Measured requests of this process; ``None``: until ``end_at``."""


@dataclass
class Tally:
    """One client thread's (or, merged, one run's) record."""

    ms: list[float] = field(default_factory=list)
    answers: Counter[str] = field(default_factory=Counter)
    warmup: Counter[str] = field(default_factory=Counter)
    last_end: float = 0.0
    late: float = 0.0

    def merge(self, other: Tally) -> None:
        self.ms += other.ms
        self.answers += other.answers
        self.warmup += other.warmup
        self.last_end = max(self.last_end, other.last_end)
        self.late = max(self.late, other.late)


def csrf_form(url: str) -> tuple[dict[str, str], dict[str, str]]:
    """A guest's first GET: the form's CSRF token and the session cookie it is bound to."""
    page = requests.get(url, timeout=REQUEST_TIMEOUT)
    page.raise_for_status()
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    cookie = page.cookies.get("session")
    if token is None or cookie is None:
        raise RuntimeError(f"no CSRF token or session cookie from GET {url}")
    return {"csrf_token": token.group(1)}, {"Cookie": f"session={cookie}"}


class StdlibClient:
    """``http.client``: one connection, kept alive when the server allows (gthread), reopened
    when it closes (sync workers close every one). Cookies are never stored."""

    errors = (http.client.HTTPException, OSError)

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        parts = urlsplit(url)
        self.path = parts.path
        self.headers = {"Content-Type": "application/x-www-form-urlencoded", **headers}
        self.connection = http.client.HTTPConnection(
            parts.hostname or "127.0.0.1", parts.port, timeout=REQUEST_TIMEOUT
        )

    def post(self, fields: dict[str, str]) -> tuple[int, bytes]:
        try:
            self.connection.request("POST", self.path, urlencode(fields), self.headers)
            response = self.connection.getresponse()
            return response.status, response.read()
        except BaseException:
            self.connection.close()  # a half-read answer must not poison the next request
            raise

    def close(self) -> None:
        self.connection.close()


class RequestsClient:
    """A ``requests.Session`` (kept alive) that never stores cookies."""

    errors = (requests.RequestException,)

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.url, self.headers = url, headers
        self.session = requests.Session()
        self.session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))

    def post(self, fields: dict[str, str]) -> tuple[int, bytes]:
        response = self.session.post(
            self.url, data=fields, headers=self.headers, timeout=REQUEST_TIMEOUT
        )
        return response.status_code, response.content

    def close(self) -> None:
        self.session.close()


Client = StdlibClient | RequestsClient
CLIENTS: dict[str, type[StdlibClient] | type[RequestsClient]] = {
    "http.client": StdlibClient,
    "requests": RequestsClient,
}


def client_loop(
    spec: LoadSpec,
    client: Client,
    fields: dict[str, str],
    phones: itertools.count[int],
    measured: itertools.count[int],
    tally: Tally,
    stop: threading.Event,
) -> None:
    """Post, wait for the answer, post again; a request counts when it starts after
    ``measure_at``. Every answer is checked: status 200 and the expected page."""
    marker = spec.marker.encode()
    while not stop.is_set():
        now = time.time()
        if now >= spec.end_at:
            return
        counted = now >= spec.measure_at
        if counted and spec.count is not None and next(measured) >= spec.count:
            return
        data = {**fields, "phone": f"+2783{next(phones):07d}"}
        began = time.perf_counter()
        try:
            status, content = client.post(data)
            answer = str(status)
            if status == 200 and marker not in content:
                answer = "200 without the expected page"
        except client.errors as exc:
            answer = type(exc).__name__
        elapsed = time.perf_counter() - began
        if counted:
            tally.ms.append(elapsed * 1000)
            tally.answers[answer] += 1
            tally.last_end = time.time()
        else:
            tally.warmup[answer] += 1


def generate_load(spec: LoadSpec) -> Tally:
    """``spec.clients`` threads, each with its own connection, from ``start_at`` to the end."""
    clients: list[tuple[Client, dict[str, str]]] = []
    for _ in range(spec.clients):
        fields, headers = csrf_form(spec.url) if spec.csrf else ({}, {})
        clients.append((CLIENTS[spec.client](spec.url, headers), {"terms": "on", **fields}))
    phones, measured = itertools.count(spec.first_phone, spec.phone_step), itertools.count()
    tallies = [Tally() for _ in clients]
    stop = threading.Event()
    threads = [
        threading.Thread(
            target=client_loop,
            args=(spec, client, fields, phones, measured, tally, stop),
            name=f"client-{i}",
            daemon=True,
        )
        for i, ((client, fields), tally) in enumerate(zip(clients, tallies, strict=True))
    ]
    result = Tally(late=max(0.0, time.time() - spec.start_at))
    time.sleep(max(0.0, spec.start_at - time.time()))
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(max(1.0, spec.end_at - time.time() + REQUEST_TIMEOUT + 5))
    finally:
        stop.set()
        for client, _fields in clients:
            client.close()
    for tally in tallies:
        result.merge(tally)
    return result


def run_load(specs: Sequence[LoadSpec], gunicorn_pid: int) -> tuple[Tally, CpuSnapshot]:
    """Run the specs (here, or one child process each) and take the CPU snapshot when done,
    while the load processes still exist."""
    total = Tally()
    if len(specs) == 1:
        total.merge(generate_load(specs[0]))
        return total, cpu_snapshot(gunicorn_pid)
    bound = max(spec.end_at for spec in specs) - time.time() + REQUEST_TIMEOUT + 60
    with multiprocessing.get_context("spawn").Pool(len(specs)) as pool:
        for result in pool.map_async(generate_load, specs).get(timeout=bound):
            total.merge(result)
        return total, cpu_snapshot(gunicorn_pid)


@dataclass
class Phase:
    """The outcome of one server's measurement."""

    name: str
    title: str
    tally: Tally
    seconds: float
    cpu: Counter[str]

    @property
    def count(self) -> int:
        return len(self.tally.ms)

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0

    @property
    def errors(self) -> int:
        return sum(n for answer, n in self.tally.answers.items() if answer != "200")

    @property
    def ok_answers(self) -> int:
        return self.tally.answers["200"] + self.tally.warmup["200"]


def measure(name: str, title: str, server: Server, marker: str, args: argparse.Namespace) -> Phase:
    """Warm-up, then the measured closed-loop run; CPU is sampled at ``measure_at`` and after."""
    procs = args.load_procs
    start_at = time.time() + (1.0 if procs == 1 else 4.0) + 0.02 * args.clients
    measure_at = start_at + args.warmup
    end_at = measure_at + (args.duration if args.requests is None else COUNT_CAP_SECONDS)
    specs = [
        LoadSpec(
            url=server.url,
            marker=marker,
            client=args.client,
            csrf=marker == PORTAL_MARKER and not args.no_csrf,
            clients=len(range(p, args.clients, procs)),
            first_phone=p,
            phone_step=procs,
            start_at=start_at,
            measure_at=measure_at,
            end_at=end_at,
            count=None if args.requests is None else len(range(p, args.requests, procs)),
        )
        for p in range(procs)
    ]
    before: list[CpuSnapshot] = []

    def sample() -> None:
        time.sleep(max(0.0, measure_at - time.time()))
        before.append(cpu_snapshot(server.process.pid))

    sampler = threading.Thread(target=sample, name="cpu-sampler", daemon=True)
    sampler.start()
    tally, after = run_load(specs, server.process.pid)
    sampler.join(5)
    server.check()
    used = after.since(before[0]) if before else Counter()
    return Phase(name, title, tally, max(0.0, tally.last_end - measure_at), used)


# -- what the OTP run left behind ----------------------------------------------------------------


def written(database_url: str, redis_url: str, queue: str) -> tuple[int, int, int]:
    """Challenges, queued OTP messages and jobs waiting in our urgent queue (no worker runs).

    Guest codes wake the urgent lane: one job for a burst of codes, not one each. With no
    worker to clear it, the "urgent pending" flag expires after ``URGENT_FLAG_SECONDS`` and the
    next code enqueues another job: a few jobs per run, never zero.
    """
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as connection:
            challenges = connection.scalar(sa.select(sa.func.count()).select_from(OtpChallenge))
            queued = connection.scalar(
                sa.select(sa.func.count()).where(
                    Message.kind == Kind.OTP, Message.status == Status.QUEUED
                )
            )
    finally:
        engine.dispose()
    connection = Redis.from_url(redis_url)
    try:
        jobs = Queue(urgent_queue_name(queue), connection=connection).count
    finally:
        connection.close()
    return int(challenges or 0), int(queued or 0), jobs


# -- profile of one request at a time, in-process ------------------------------------------------

BREAKDOWN = (
    ("whole request: Flask.wsgi_app", "flask/app.py", "wsgi_app"),
    ("session cookie: open_session", "flask/sessions.py", "open_session"),
    ("session cookie: save_session", "flask/sessions.py", "save_session"),
    ("CSRF: validate_csrf", "flask_wtf/csrf.py", "validate_csrf"),
    ("venue: splash.current_venue (cached)", "portal/splash.py", "current_venue"),
    ("phone: normalize_phone", "sms_ext/text/phone.py", "normalize_phone"),
    ("otp.codes.issue", "sms_ext/otp/codes.py", "issue"),
    ("  otp.codes.latest (SELECT latest)", "sms_ext/otp/codes.py", "latest"),
    ("  otp.codes._limiter (build Limiter)", "sms_ext/otp/codes.py", "_limiter"),
    ("  Limiter.hit (Redis: test, then hit)", "sms_ext/otp/limits.py", "hit"),
    ("  outbox.compose (checks + row)", "sms_ext/messages/outbox.py", "compose"),
    ("  outbox.queue (INSERT)", "sms_ext/messages/outbox.py", "queue"),
    ("  Session.commit (+ urgent wake-up)", "sqlalchemy/orm/session.py", "commit"),
    ("    outbox.wake_urgent (SET NX)", "sms_ext/messages/outbox.py", "wake_urgent"),
    ("code page: otp.flow.code_page", "sms_ext/otp/flow.py", "code_page"),
    ("  render_template", "flask/templating.py", "render_template"),
    ("pool checkout (+ pre-ping)", "sqlalchemy/pool/base.py", "_checkout"),
    ("  pre-ping: do_ping", "postgresql/_psycopg_common.py", "do_ping"),
)
"""(label, file suffix, function) of the costs worth naming; the largest match is shown."""


def stat_of(stats: dict[Any, Any], suffix: str, function: str) -> tuple[int, float] | None:
    """(calls, cumulative seconds) of the function; the largest if several share the name."""
    found = [
        (row[1], row[3])
        for (filename, _line, name), row in stats.items()
        if name == function and filename.replace(os.sep, "/").endswith(suffix)
    ]
    return max(found, key=lambda item: item[1]) if found else None


def package(key: tuple[str, int, str]) -> str:
    """Who owns a profiled function: a distribution, our code, the stdlib or C built-ins."""
    filename, _line, name = key
    filename = filename.replace(os.sep, "/")
    if filename == "~":
        return "socket I/O (waiting included)" if "socket" in name else "C built-ins"
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0]
    if filename.endswith(".html"):
        return "compiled templates"
    if filename.startswith(str(ROOT)):
        return filename[len(str(ROOT)) + 1 :].split("/", 1)[0]
    if filename.startswith("<sqlalchemy"):
        return "sqlalchemy"
    return "stdlib"


def short(key: tuple[str, int, str]) -> str:
    filename, line, name = key
    for marker in ("site-packages/", str(ROOT) + "/"):
        if marker in filename:
            filename = filename.split(marker, 1)[1]
    return f"{filename}:{line}({name})" if line else name


def profile(config: dict[str, Any], count: int) -> None:
    """``count`` OTP POSTs through the Flask test client, one at a time, timed, then profiled."""
    from portal import create_app  # only this phase needs the app in-process
    from portal.extensions import db

    app = create_app(dict(config))
    client = app.test_client(use_cookies=False)
    path = f"/s/{DEMO_SLUG}/"
    fields, headers = {"terms": "on"}, {}
    if config["WTF_CSRF_ENABLED"]:
        page = client.get(path)
        cookie = re.search(r"session=([^;]+)", page.headers.get("Set-Cookie", ""))
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True))
        if token is None or cookie is None:
            raise RuntimeError("no CSRF token or session cookie from the splash page")
        fields["csrf_token"] = token.group(1)
        headers["Cookie"] = f"session={cookie.group(1)}"
    phones = itertools.count(9_000_000)

    def post() -> None:
        response = client.post(
            path, data={**fields, "phone": f"+2783{next(phones):07d}"}, headers=headers
        )
        if response.status_code != 200 or PORTAL_MARKER not in response.get_data(as_text=True):
            raise RuntimeError(f"in-process POST answered {response.status}")

    with app.app_context():
        engine = db.engine
    try:
        for _ in range(PROFILE_WARMUP):
            post()
        began, cpu = time.perf_counter(), time.process_time()
        for _ in range(count):
            post()
        wall_ms = (time.perf_counter() - began) * 1000 / count
        cpu_ms = (time.process_time() - cpu) * 1000 / count
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(count):
            post()
        profiler.disable()
        trips = trace(post)
    finally:
        engine.dispose()
        app.extensions["sms"].redis.close()
    print_profile(pstats.Stats(profiler), count, wall_ms, cpu_ms)
    pg = sum(trip.startswith("pg") for trip in trips)
    print(f"    one request's round trips: {pg} PostgreSQL, {len(trips) - pg} Redis, in order:")
    for trip in trips:
        print(f"      {trip}")
    print(flush=True)


def trace(post: Callable[[], None]) -> list[str]:
    """Every round trip of one more request to PostgreSQL and Redis, in order.

    Recorded where the drivers talk to the servers: psycopg's cursor ``execute`` (statements,
    the pool's pre-ping) and its internal commands (BEGIN, COMMIT, ROLLBACK); redis-py's
    commands and pipelines.
    """
    trips: list[str] = []

    def redis_words(args: Sequence[Any]) -> str:
        words = [a.decode(errors="replace") if isinstance(a, bytes) else str(a) for a in args[:4]]
        if words[0].upper() == "EVALSHA":  # a rate-limit script: its key says which limit
            return f"EVALSHA (limits Lua) {words[3]}"
        return " ".join(words[:2])

    execute = psycopg.Cursor.execute
    exec_command = psycopg.Connection._exec_command
    send_command = AbstractConnection.send_command
    pack_commands = AbstractConnection.pack_commands

    def executing(self: psycopg.Cursor[Any], query: Any, *args: Any, **kwargs: Any) -> Any:
        trips.append("pg    " + textwrap.shorten(" ".join(str(query).split()), 100))
        return execute(self, query, *args, **kwargs)

    def commanding(self: psycopg.Connection[Any], command: Any, *args: Any, **kwargs: Any) -> Any:
        text = command.decode() if isinstance(command, bytes) else str(command)
        trips.append(f"pg    {text}")
        return exec_command(self, command, *args, **kwargs)

    def sending(self: AbstractConnection, *args: Any, **kwargs: Any) -> None:
        trips.append(f"redis {redis_words(args)}")
        send_command(self, *args, **kwargs)

    def packing(self: AbstractConnection, batch: Sequence[Sequence[Any]]) -> Any:
        trips.append("redis pipeline: " + ", ".join(redis_words(args) for args in batch))
        return pack_commands(self, batch)

    with (
        mock.patch.object(psycopg.Cursor, "execute", executing),
        mock.patch.object(psycopg.Connection, "_exec_command", commanding),
        mock.patch.object(AbstractConnection, "send_command", sending),
        mock.patch.object(AbstractConnection, "pack_commands", packing),
    ):
        post()
    # psycopg sends BEGIN from inside the first execute of a transaction: list it first.
    for i in range(1, len(trips)):
        if trips[i] == "pg    BEGIN" and trips[i - 1].startswith("pg"):
            trips[i - 1], trips[i] = trips[i], trips[i - 1]
    return trips


def print_profile(stats: pstats.Stats, count: int, wall_ms: float, cpu_ms: float) -> None:
    table: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total_ms = stats.total_tt * 1000 / count  # type: ignore[attr-defined]
    print(f"(c) profile: {count} OTP POSTs in-process (Flask test client), one at a time")
    print(
        f"    without profiler {wall_ms:6.2f} ms per request (the service time of one worker), "
        f"{cpu_ms:.2f} ms of it on our CPU, the rest waiting for PostgreSQL and Redis"
    )
    print(
        f"    under cProfile   {total_ms:6.2f} ms per request (profiler overhead inflates Python)"
    )
    print("    named costs, cumulative, per request:")
    for label, suffix, function in BREAKDOWN:
        found = stat_of(table, suffix, function)
        if found:
            calls, seconds = found
            share = seconds * 1000 / count / total_ms * 100
            print(
                f"      {label:<40} {seconds * 1000 / count:6.2f} ms {share:4.0f} %"
                f"  ({calls / count:.1f} calls)"
            )
    owners: Counter[str] = Counter()
    for key, row in table.items():
        owners[package(key)] += row[2]
    print("    own time by package, per request:")
    for owner, seconds in owners.most_common(12):
        ms = seconds * 1000 / count
        print(f"      {owner:<40} {ms:6.2f} ms {ms / total_ms:5.0%}")
    print("    top 15 by own time, per request:")
    top = sorted(table.items(), key=lambda item: item[1][2], reverse=True)[:15]
    for key, (_cc, calls, own, cumulative, _callers) in top:
        print(
            f"      {own * 1000 / count:6.2f} ms own {cumulative * 1000 / count:6.2f} ms cum "
            f"{calls / count:6.1f} calls  {short(key)}"
        )


# -- report --------------------------------------------------------------------------------------


def print_header(args: argparse.Namespace, database: str, redis: str, queue: str) -> None:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    kind = args.worker_class
    if kind == "gthread":
        kind += f", {args.threads} threads each"
    procs = args.load_procs
    amount = f"{args.requests} requests" if args.requests else f"{args.duration:g} s"
    print("sms_ext OTP splash POST benchmark (HTTP)")
    print(f"  gunicorn   : {args.workers} workers, {kind}; same flags for both apps")
    print(f"  database   : {database} (flask db upgrade + portal seed-demo)")
    print(f"  redis      : {redis}, queue and rate-limit key prefix {queue}")
    print(
        f"  clients    : {args.clients} closed-loop, {procs} load process(es) x threads, "
        f"one {args.client} connection each; warm-up {args.warmup:g} s, then {amount}"
    )
    if args.no_csrf:
        print("  CSRF       : OFF (FLASK_WTF_CSRF_ENABLED=false, --no-csrf)")
    else:
        print("  CSRF       : on; one token + session cookie per client, replayed on every POST")
    print(f"  limits     : {', '.join(LIMIT_KEYS)} = {NO_LIMIT!r}; a new phone per POST")
    print(f"  machine    : {os.cpu_count()} CPU(s), load average {load} before start")
    print(f"  python     : {platform.python_version()}", end="\n\n", flush=True)


def print_phase(phase: Phase) -> None:
    ms = sorted(phase.tally.ms)
    p50, p90, p99 = (percentile(ms, f) for f in (0.50, 0.90, 0.99))
    print(phase.title)
    print(f"    {phase.count} requests in {phase.seconds:.1f} s = {phase.rate:7.1f} req/s")
    print(
        f"    latency p50 {p50:6.1f} ms   p90 {p90:6.1f} ms   p99 {p99:6.1f} ms   "
        f"max {max(ms, default=float('nan')):6.1f} ms"
    )
    answers = ", ".join(f"{n} x {a}" for a, n in phase.tally.answers.most_common())
    print(f"    answers     {answers or 'none'}{'   <-- ERRORS' if phase.errors else ''}")
    warm_errors = sum(n for a, n in phase.tally.warmup.items() if a != "200")
    if warm_errors:
        print(f"    warm-up     {dict(phase.tally.warmup)}   <-- ERRORS")
    if phase.tally.late > 0.5:
        print(f"    (load generator was {phase.tally.late:.1f} s late: warm-up shortened)")
    if phase.count:
        per = {p: max(0.0, phase.cpu[p] * 1000 / phase.count) for p in PARTIES}
        other = phase.cpu["machine"] * 1000 / phase.count - sum(per.values())
        shares = ", ".join(f"{p} {v:.2f}" for p, v in per.items())
        print(f"    CPU ms/req  {shares}, other {max(0.0, other):.2f}")
        busy = phase.cpu["machine"] / phase.seconds if phase.seconds else 0.0
        others = sorted(
            ((seconds, party[6:]) for party, seconds in phase.cpu.items() if party[:6] == "other:"),
            reverse=True,
        )
        named = ", ".join(
            f"{name} {seconds / phase.seconds:.2f}"
            for seconds, name in others[:3]
            if seconds >= 0.01 * phase.seconds
        )
        print(
            f"    machine     {busy:.2f} of {os.cpu_count()} CPUs busy"
            + (f"; busiest others (CPUs): {named}" if named else ""),
            flush=True,
        )
    print()


def print_summary(bare: Phase, otp: Phase, args: argparse.Namespace) -> bool:
    """The comparison and the verdicts; ``True`` when the run had no errors."""
    otp_p99 = percentile(sorted(otp.tally.ms), 0.99)
    ratio = otp.rate / bare.rate * 100 if bare.rate else 0.0
    print(f"summary: {args.clients} clients, gunicorn {args.workers} {args.worker_class} workers")
    print(f"    {'':14} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for phase in (bare, otp):
        ms = sorted(phase.tally.ms)
        p50, p99 = percentile(ms, 0.5), percentile(ms, 0.99)
        print(f"    {phase.name:14} {phase.rate:8.1f} {p50:8.1f} {p99:8.1f}")
    print(
        f"    OTP p99 {otp_p99:.1f} ms   "
        f"[target < {TARGET_P99_MS:.0f} ms: {verdict(otp_p99 < TARGET_P99_MS)}]"
    )
    print(
        f"    OTP / bare throughput = {ratio:.1f} %   "
        f"[target >= {TARGET_RATIO:.0f} %: {verdict(ratio >= TARGET_RATIO)}]"
    )
    print(
        f"    (closed loop: mean latency = clients / throughput, so a {TARGET_P99_MS:.0f} ms p99 "
        f"at {args.clients} clients needs > {args.clients / TARGET_P99_MS * 1000:.0f} req/s)"
    )
    clean = not (bare.errors or otp.errors or bare.count == 0 or otp.count == 0)
    if args.requests and min(bare.count, otp.count) < args.requests:
        clean = False
        print(f"    NOT all {args.requests} requests done within {COUNT_CAP_SECONDS:.0f} s")
    print("    run: clean, every answer checked" if clean else "    RUN HAD ERRORS: see above")
    print(flush=True)
    return clean


# -- main ----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", default=DEFAULT_DATABASE, help="PostgreSQL SQLAlchemy URL")
    parser.add_argument(
        "--redis", help="Redis URL (private key prefix; default: a private redis-server)"
    )
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (default 32)")
    parser.add_argument("--requests", type=int, help="measured requests per app (default: timed)")
    parser.add_argument(
        "--duration", type=float, default=15.0, help="measured seconds (default 15)"
    )
    parser.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds (default 3)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    parser.add_argument("--worker-class", choices=("sync", "gthread"), default="sync")
    parser.add_argument("--threads", type=int, default=4, help="threads per gthread worker")
    parser.add_argument(
        "--load-procs", type=int, default=1, help="load generator processes (default 1)"
    )
    parser.add_argument(
        "--client",
        choices=tuple(CLIENTS),
        default="http.client",
        help="HTTP client of the load generator (default http.client: the cheapest)",
    )
    parser.add_argument("--no-csrf", action="store_true", help="FLASK_WTF_CSRF_ENABLED=false")
    parser.add_argument(
        "--profile", type=int, default=0, metavar="N", help="then profile N in-process POSTs"
    )
    args = parser.parse_args(argv)
    if not args.database.startswith("postgresql"):
        parser.error("--database must be a PostgreSQL URL (the run uses a private schema)")
    if min(args.clients, args.workers, args.threads, args.load_procs) < 1:
        parser.error("--clients, --workers, --threads and --load-procs must be positive")
    if args.load_procs > args.clients:
        parser.error("--load-procs cannot exceed --clients")
    if (args.requests is not None and args.requests < 1) or args.duration <= 0:
        parser.error("--requests and --duration must be positive")
    if args.warmup < 0 or args.profile < 0:
        parser.error("--warmup and --profile must not be negative")
    return args


def serve_and_measure(
    name: str, app: str, marker: str, env: dict[str, str], args: argparse.Namespace, logs: Path
) -> Phase:
    """Start gunicorn for ``app``, measure, stop it (before the next app starts)."""
    with ExitStack() as serving:
        server = start_gunicorn(serving, app.split(":")[0], app, env, args, logs)
        phase = measure(name, f"{name}: {app}", server, marker, args)
    print_phase(phase)
    return phase


def run(args: argparse.Namespace) -> bool:
    queue = f"otp_bench_{uuid.uuid4().hex[:12]}"  # not JSON, so FLASK_SMS_QUEUE stays a string
    with ExitStack() as stack:
        redis_url, redis_kind = start_redis(stack, args.redis)
        Redis.from_url(redis_url, socket_connect_timeout=5).ping()  # fail before anything starts
        stack.callback(best_effort, forget_keys, redis_url, queue)
        database_url, database_kind = private_schema(stack, args.database, "otp_bench")
        config = portal_config(database_url, redis_url, queue, csrf=not args.no_csrf)
        env = flask_env(config)
        logs = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="otp-bench-")))
        flask_cli(env, "db", "upgrade")
        flask_cli(env, "portal", "seed-demo")
        print_header(args, database_kind, redis_kind, queue)
        bare = serve_and_measure(
            "bare endpoint", "bench.otp_bare:app", BARE_MARKER, env, args, logs
        )
        otp = serve_and_measure("OTP POST", "wsgi:app", PORTAL_MARKER, env, args, logs)
        challenges, queued, jobs = written(database_url, redis_url, queue)
        expected = otp.ok_answers
        same = challenges == queued == expected and (jobs > 0 or expected == 0)
        print(
            f"    written: {challenges} challenges, {queued} queued OTP messages, {jobs} urgent "
            f"wake-up job(s) for {expected} code pages: {'consistent' if same else 'MISMATCH'}",
            end="\n\n",
        )
        clean = print_summary(bare, otp, args) and same
        if args.profile:
            profile(config, args.profile)
    return clean


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C, so the exit stack stops every child process."""
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # Explicitly: a shell starting us in the background would leave SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        clean = run(args)
    except KeyboardInterrupt:
        print("interrupted; everything this run started was stopped", file=sys.stderr)
        return 130
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
