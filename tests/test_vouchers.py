"""Voucher codes, durations and batch generation (portal.vouchers), and the CLI command."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable

import pytest
from flask import Flask
from sqlalchemy import func, select

from portal.extensions import db
from portal.models import Location, SplashPage, Voucher
from portal.vouchers import VoucherError
from portal.vouchers.codes import ALPHABET, new_code, normalise
from portal.vouchers.durations import describe_duration, format_duration, parse_duration
from portal.vouchers.generate import BatchSpec, generate_batch
from tests.conftest import PG_URL


def add_location(app: Flask, slug: str = "cafe", name: str = "Café Central") -> None:
    with app.app_context():
        location = Location(name=name, slug=slug, region="ZA")
        location.splash_page = SplashPage(title=f"Wi-Fi at {name}", terms="", otp_enabled=False)
        db.session.add(location)
        db.session.commit()


def test_codes_use_only_unambiguous_characters() -> None:
    assert not set("0O1IL") & set(ALPHABET)
    codes = {new_code() for _ in range(2000)}
    assert len(codes) == 2000
    for code in codes:
        assert len(code) == 9 and code[4] == "-"
        assert set(code.replace("-", "")) <= set(ALPHABET)


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("WX7K-9PQ2", None),  # Q is not in the alphabet
        ("wx7k-9pm2", "WX7K-9PM2"),
        (" WX7K 9PM2 ", "WX7K-9PM2"),
        ("WX7K9PM2", "WX7K-9PM2"),
        ("WX7K-9PM", None),
        ("WX0K-9PM2", None),
        ("x" * 5000, None),
        ("", None),
    ],
)
def test_typed_codes_are_normalised(typed: str, stored: str | None) -> None:
    assert normalise(typed) == stored


@pytest.mark.parametrize(
    ("text", "minutes"),
    [("90m", 90), ("2h", 120), ("1d", 1440), ("1h30m", 90), (" 2 H ", 120), ("1d 2h", 1560)],
)
def test_durations(text: str, minutes: int) -> None:
    assert parse_duration(text) == minutes
    assert parse_duration(format_duration(minutes)) == minutes


@pytest.mark.parametrize("text", ["", "2", "h", "2x", "two hours", "-2h", "0m", "400d", "2h!"])
def test_bad_durations_are_refused_with_a_sentence(text: str) -> None:
    with pytest.raises(VoucherError, match=r"^Duration .*\.$"):
        parse_duration(text)


def test_durations_described_for_guests() -> None:
    assert describe_duration(90) == "1 hour 30 minutes"
    assert describe_duration(1440 + 1) == "1 day 1 minute"


def test_generate_a_batch_for_a_location(portal_app: Flask) -> None:
    add_location(portal_app)
    with portal_app.app_context():
        spec = BatchSpec(5, 120, data_limit_mb=500, devices_allowed=2, location_slugs=["cafe"])
        batch = generate_batch(spec)
        assert len({voucher.code for voucher in batch}) == 5
        voucher = batch[0]
        assert (voucher.state, voucher.duration_minutes, voucher.data_limit_mb) == ("new", 120, 500)
        assert [location.slug for location in voucher.locations] == ["cafe"]
        assert (voucher.valid_until - voucher.created_at).days == 30
        with pytest.raises(VoucherError, match="No location with key 'nowhere'"):
            generate_batch(BatchSpec(1, 60, location_slugs=["nowhere"]))
        with pytest.raises(VoucherError, match="Count must be between 1 and 1000"):
            generate_batch(BatchSpec(1001, 60))


POOL = sorted({new_code() for _ in range(1200)})[:1000]
"""A small pool of codes, so that batches drawing from it collide often, with themselves and
with each other."""


def _few_codes(seed: int) -> Callable[[], str]:
    draw = random.Random(seed)
    return lambda: draw.choice(POOL)


def test_collisions_are_retried_with_a_new_code(portal_app: Flask) -> None:
    with portal_app.app_context():
        first = generate_batch(BatchSpec(300, 60, batch="one"), codes=_few_codes(1))
        second = generate_batch(BatchSpec(300, 60, batch="two"), codes=_few_codes(2))
        assert len({voucher.code for voucher in first + second}) == 600


@pytest.mark.skipif(not PG_URL, reason="needs PostgreSQL (SMS_TEST_DATABASE_URL)")
@pytest.mark.parametrize("backend", ["postgresql"])  # concurrent writers: SQLite serialises them
def test_concurrent_batches_never_share_a_code(portal_app: Flask, backend: str) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def generate(seed: int) -> None:
        with portal_app.app_context():
            start.wait()
            try:
                generate_batch(BatchSpec(100, 60, batch=f"b{seed}"), codes=_few_codes(seed))
            except BaseException as exc:  # reported by the assertion below
                errors.append(exc)

    threads = [threading.Thread(target=generate, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with portal_app.app_context():
        total = db.session.scalar(select(func.count()).select_from(Voucher))
        distinct = db.session.scalar(select(func.count(func.distinct(Voucher.code))))
        assert total == distinct == 400


def test_cli_generate_prints_codes(portal_app: Flask) -> None:
    add_location(portal_app)
    result = portal_app.test_cli_runner().invoke(
        args=[
            "portal",
            "vouchers",
            "generate",
            "--count",
            "3",
            "--duration",
            "2h",
            "--location",
            "cafe",
            "--data-limit",
            "200",
            "--devices",
            "2",
            "--valid-days",
            "7",
        ]
    )
    assert result.exit_code == 0, result.output
    codes = result.stdout.split()
    assert len(codes) == 3 and all(normalise(code) == code for code in codes)
    with portal_app.app_context():
        vouchers = db.session.scalars(select(Voucher)).all()
        assert sorted(v.code for v in vouchers) == sorted(codes)
        assert {(v.duration_minutes, v.data_limit_mb, v.devices_allowed) for v in vouchers} == {
            (120, 200, 2)
        }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--count", "3", "--duration", "2 hours"], "Duration '2 hours' is not like 90m"),
        (["--count", "0", "--duration", "2h"], "0 is not in the range 1<=x<=1000"),
        (["--count", "x", "--duration", "2h"], "'x' is not a valid integer"),
        (["--count", "2", "--duration", "2h", "--location", "nowhere"], "No location with key"),
        (["--count", "2", "--duration", "2h", "--data-limit", "99999999"], "Data limit must be"),
        (["--count", "2"], "Missing option '--duration'"),
    ],
)
def test_cli_generate_refuses_bad_input(portal_app: Flask, args: list[str], message: str) -> None:
    result = portal_app.test_cli_runner().invoke(args=["portal", "vouchers", "generate", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    with portal_app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Voucher)) == 0
