"""Benchmark of the admin SMS logs on a million messages: pages, filters, CSV export, dashboard.

Run ``.venv/bin/python bench/logs_query.py [--rows N] [--database URL] [--skip-sqlite]``.
It fills a fresh SQLite file (always, unless ``--skip-sqlite``) and, with ``--database`` (or
``SMS_TEST_DATABASE_URL``), a private PostgreSQL schema that is dropped afterwards. Rows go in
with Core ``insert`` executemany in batches: creation times spread over 90 days (in id order, as
an outbox writes them), 5 gateways, 20 locations, realistic status and kind mixes.

Each page is fetched through the Flask test client (query + template), median of 5 runs; the
full CSV export is streamed once, with the process's peak RSS before and after to show it is
not held in memory.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a script: make sms_ext and tests importable

import sqlalchemy as sa  # noqa: E402

from sms_ext import SMS, metadata  # noqa: E402
from sms_ext.models import Gateway, Kind, Message, Status, utcnow  # noqa: E402
from tests.conftest import make_app  # noqa: E402

BATCH = 10_000
RUNS = 5
DAYS = 90
PREFIX = "/sms/admin"
STATUSES = [Status.SENT] * 55 + [Status.DELIVERED] * 30 + [Status.FAILED] * 8
STATUSES += [Status.UNDELIVERED] * 4 + [Status.QUEUED] * 2 + [Status.SENDING]
KINDS = [Kind.OTP] * 70 + [Kind.VOUCHER] * 15 + [Kind.CAMPAIGN] * 10 + [Kind.PERSONAL] * 5
LOCATIONS = [f"site-{n:02d}" for n in range(20)]


def rows(count: int, gateway_ids: list[int]) -> Iterator[list[dict[str, Any]]]:
    """Batches of message rows, oldest first, deterministic."""
    rng = random.Random(42)
    start = utcnow() - timedelta(days=DAYS)
    step = timedelta(days=DAYS) / count
    for offset in range(0, count, BATCH):
        batch = []
        for n in range(offset, min(offset + BATCH, count)):
            created = start + step * n
            status = rng.choice(STATUSES)
            gone = status not in (Status.QUEUED, Status.SENDING)
            batch.append(
                {
                    "kind": rng.choice(KINDS),
                    "to": f"+278{rng.randint(0, 9)}{rng.randint(0, 9_999_999):07d}",
                    "body": "Your Wi-Fi code is 123456",
                    "encoding": "GSM-7",
                    "segments": rng.choice((1, 1, 1, 2, 3)),
                    "status": status,
                    "location": rng.choice(LOCATIONS),
                    "gateway_id": rng.choice(gateway_ids) if gone else None,
                    "provider_message_id": f"p-{n}" if gone and status != Status.FAILED else None,
                    "attempts": 1 if gone else 0,
                    "created_at": created,
                    "next_attempt_at": created,
                    "sent_at": created + timedelta(seconds=2) if gone else None,
                    "expires_at": created + timedelta(days=2),
                    "last_error": "HTTP 400: invalid number" if status == Status.FAILED else None,
                }
            )
        yield batch


def fill(url: str, count: int) -> float:
    engine = sa.create_engine(url)
    metadata.create_all(engine)
    started = time.perf_counter()
    with engine.begin() as connection:
        connection.execute(
            sa.insert(Gateway),
            [
                {"name": f"gateway-{n}", "type": "custom", "enabled": True, "priority": n}
                for n in range(5)
            ],
        )
        gateway_ids = list(connection.scalars(sa.select(Gateway.id)))
    for batch in rows(count, gateway_ids):
        with engine.begin() as connection:
            connection.execute(sa.insert(Message), batch)
    with engine.begin() as connection:
        connection.execute(sa.text("ANALYZE"))
    engine.dispose()
    return time.perf_counter() - started


def median_ms(call: Callable[[], Any]) -> float:
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(name: str, url: str, count: int) -> None:
    print(f"\n== {name}: {count:,} messages")
    print(f"insert (Core executemany, {BATCH:,} a batch) + ANALYZE: {fill(url, count):.1f} s")
    sms = SMS()
    sms.admin_check(lambda: True)
    app = make_app(url, "redis://127.0.0.1:1/0", sms=sms, SMS_ADMIN_FULL_NUMBERS=True)
    client = app.test_client()
    with app.app_context():
        session = app.extensions["sms"].session
        oldest = session.scalar(sa.select(sa.func.min(Message.id)))
        gateway = session.scalar(sa.select(Gateway.id).order_by(Gateway.id).limit(1))
    week_ago = (utcnow() - timedelta(days=7)).date()

    def get(path: str) -> Callable[[], Any]:
        def call() -> None:
            response = client.get(PREFIX + path)
            assert response.status_code == 200, (path, response.status_code)

        return call

    pages = {
        "first page": "/logs/",
        "deep page (before=oldest+1000)": f"/logs/?before={oldest + 1000}",
        "filtered: status=failed & location": "/logs/?status=failed&location=site-07",
        "filtered: phone prefix +27831": "/logs/?phone=%2B27831",
        "filtered: gateway + last 7 days": f"/logs/?gateway={gateway}&from={week_ago}",
        "filtered deep: status=failed & location, before=oldest+50000": (
            f"/logs/?status=failed&location=site-07&before={oldest + 50_000}"
        ),
        "dashboard": "/",
    }
    for label, path in pages.items():
        print(f"{label:<62} {median_ms(get(path)):8.1f} ms (median of {RUNS})")

    before_mb = peak_rss_mb()
    started = time.perf_counter()
    response = client.get(f"{PREFIX}/logs/export.csv")
    assert response.is_streamed
    lines = size = 0
    for chunk in response.response:
        size += len(chunk)
        lines += chunk.count(b"\n") if isinstance(chunk, bytes) else chunk.count("\n")
    response.close()
    elapsed = time.perf_counter() - started
    print(
        f"{'full CSV export, streamed':<62} {elapsed:8.1f} s  {(lines - 1) / elapsed:,.0f} rows/s, "
        f"{size / 1e6:.0f} MB, peak RSS {before_mb:.0f} -> {peak_rss_mb():.0f} MB"
    )
    with app.app_context():
        app.extensions["sqlalchemy"].engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--database", default=os.environ.get("SMS_TEST_DATABASE_URL"))
    parser.add_argument("--skip-sqlite", action="store_true")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {datetime.now():%Y-%m-%d}")

    if not args.skip_sqlite:
        with tempfile.TemporaryDirectory() as folder:
            measure("SQLite", f"sqlite:///{folder}/logs-bench.db", args.rows)
    if args.database:
        schema = f"sms_bench_{uuid.uuid4().hex[:8]}"
        admin = sa.create_engine(args.database)
        with admin.begin() as connection:
            connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        separator = "&" if "?" in args.database else "?"
        url = f"{args.database}{separator}options={quote(f'-csearch_path={schema}')}"
        try:
            measure("PostgreSQL", url, args.rows)
        finally:
            with admin.begin() as connection:
                connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()


if __name__ == "__main__":
    main()
