"""Balance checks: reading the figure (JSON paths, patterns), the reasons of failed checks, the
schedule (once per period across the fleet), alert crossings with exactly one email each
through a real SMTP server, the CLI, history and the admin pages."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from sqlalchemy import func, select

from sms_ext import SMS
from sms_ext.balance import alerts, history, schedule
from sms_ext.balance import mail as balance_mail
from sms_ext.balance.run import check_now
from sms_ext.errors import GatewayConfigError
from sms_ext.gateways import balance_checks
from sms_ext.gateways.balance import Readout
from sms_ext.gateways.store import export_gateways, import_gateways, save_gateway
from sms_ext.models import BalanceReading, Gateway, utcnow
from tests.balance_servers import BalanceProvider, SMTPServer, provider_server, smtp_server
from tests.conftest import _empty_tables, drain, make_app
from tests.helpers import add_gateway, twilio_gateway
from tests.simulator import GatewaySimulator
from tests.test_worker_faults import spawn, wait_for  # noqa: F401

PREFIX = "/sms/admin/gateways"
KEY, SECRET = "key-1234567890abcdef", "secret-abcdef1234567890"


@pytest.fixture
def provider() -> Iterator[BalanceProvider]:
    yield from provider_server()


@pytest.fixture
def smtp() -> Iterator[SMTPServer]:
    yield from smtp_server()


@pytest.fixture
def app(
    backend: str,
    database_urls: dict[str, str],
    redis_url: str,
    redis: Redis,
    sms: SMS,
    smtp: SMTPServer,
) -> Iterator[Flask]:
    """The conftest app, sending its alert emails to this test's SMTP server, on a queue of its
    own (a suite run in parallel shares the Redis database)."""
    queue = f"sms-balance-{uuid.uuid4().hex[:8]}"
    app = make_app(database_urls[backend], redis_url, sms=sms, SMS_QUEUE=queue, **smtp.config())
    with app.app_context():
        _empty_tables(app.extensions["sqlalchemy"])
    yield app
    with app.app_context():
        app.extensions["sqlalchemy"].engine.dispose()


def gateway_with_check(
    app: Flask, provider: BalanceProvider, name: str = "Venue", **check: Any
) -> Gateway:
    """A custom gateway whose balance check asks ``provider``."""
    balance = {
        "enabled": True,
        "url": f"{provider.url}/balance?key={{api_key}}",
        "field": "balance",
        "period": "hour",
        **check,
    }
    return add_gateway(
        app,
        name=name,
        type="custom",
        url=f"{provider.url}/send",
        method="POST",
        content_type="json",
        payload='{"to": "{phone}", "text": "{message}"}',
        api_key=KEY,
        api_secret=SECRET,
        from_number="Venue",
        timeout=2,
        balance_check=balance,
    )


def check(app: Flask, gateway_id: int) -> Readout:
    with app.app_context():
        state = app.extensions["sms"]
        return check_now(state, state.session.get(Gateway, gateway_id))


def stored(app: Flask, gateway_id: int) -> Gateway:
    with app.app_context():
        session = app.extensions["sms"].session
        session.expire_all()
        gateway = session.get(Gateway, gateway_id)
        session.expunge(gateway)
        return gateway


def readings(app: Flask) -> list[BalanceReading]:
    with app.app_context():
        session = app.extensions["sms"].session
        rows = list(session.scalars(select(BalanceReading).order_by(BalanceReading.id)))
        session.expunge_all()
        return rows


# -- reading the figure -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "content_type", "settings", "figure"),
    [
        ('{"balance": 12.5}', "application/json", {"field": "balance"}, "12.5"),
        (
            '{"data": {"account": {"balance": "7.25"}}}',
            "application/json",
            {"field": "data.account.balance"},
            "7.25",
        ),
        (
            '{"items": [{"balance": 1}, {"balance": 3}]}',
            "application/json",
            {"field": "items.1.balance"},
            "3",
        ),
        ('{"Balance": "1,234.50"}', "application/json", {"field": "balance"}, "1234.50"),
        (
            "Account OK. Credit: 42.10 EUR",
            "text/plain",
            {"field": "", "pattern": r"Credit: ([0-9.]+)"},
            "42.10",
        ),
        (
            "<balance>-3</balance>",
            "text/xml",
            {"field": "", "pattern": "<balance>(-?[0-9.]+)<"},
            "-3",
        ),
    ],
)
def test_balance_is_read_from_the_answer(
    app: Flask,
    provider: BalanceProvider,
    answer: str,
    content_type: str,
    settings: dict[str, str],
    figure: str,
) -> None:
    with app.app_context():
        gateway_id = gateway_with_check(app, provider, currency="EUR", **settings).id
    provider.say(answer, content_type=content_type)
    readout = check(app, gateway_id)
    assert (readout.value, readout.error) == (Decimal(figure), "")
    gateway = stored(app, gateway_id)
    assert gateway.balance == Decimal(figure) and gateway.balance_error is None
    (reading,) = readings(app)
    assert (reading.value, reading.currency, reading.error) == (Decimal(figure), "EUR", None)
    (request,) = provider.seen
    assert request.path == f"/balance?key={KEY}"  # the gateway's secret, filled in


def test_post_check_sends_body_and_headers_with_the_gateway_secrets(
    app: Flask, provider: BalanceProvider
) -> None:
    with app.app_context():
        gateway_id = gateway_with_check(
            app,
            provider,
            url=f"{provider.url}/v2/balance",
            method="POST",
            body='{"key": "{api_key}", "sender": "{from}"}',
            headers=[{"name": "Authorization", "value": "Bearer {api_secret}"}],
        ).id
    provider.say('{"balance": 5}')
    assert check(app, gateway_id).value == 5
    (request,) = provider.seen
    assert request.method == "POST"
    assert request.headers["authorization"] == f"Bearer {SECRET}"
    assert request.headers["content-type"].startswith("application/json")
    assert json.loads(request.body) == {"key": KEY, "sender": "Venue"}


@pytest.mark.parametrize(
    ("status", "answer", "settings", "reason"),
    [
        (
            200,
            '{"data": {}}',
            {"field": "data.balance"},
            "field data.balance missing in the answer",
        ),
        (200, '{"balance": "abc"}', {}, "not a number: 'abc'"),
        (200, '{"balance": null}', {}, "not a number: null"),
        (200, "<html>maintenance</html>", {}, "the answer is not JSON, so it has no field balance"),
        (401, '{"error": "bad key"}', {}, "HTTP 401"),
        (
            200,
            "nothing here",
            {"field": "", "pattern": "Credit: ([0-9]+)"},
            "the pattern does not match the answer",
        ),
    ],
)
def test_failed_check_says_why_and_keeps_the_last_figure(
    app: Flask,
    provider: BalanceProvider,
    status: int,
    answer: str,
    settings: dict[str, str],
    reason: str,
) -> None:
    with app.app_context():
        gateway_id = gateway_with_check(app, provider, **settings).id
    document: object = 9
    for part in reversed(settings.get("field", "balance").split(".")):
        document = {part: document}
    good = "Credit: 9" if settings.get("pattern") else json.dumps(document)
    provider.say(good)
    assert check(app, gateway_id).value == 9
    provider.say(answer, status=status)
    readout = check(app, gateway_id)
    assert (readout.value, readout.error) == (None, reason)
    gateway = stored(app, gateway_id)
    assert (gateway.balance, gateway.balance_error, gateway.balance_failures) == (9, reason, 1)
    assert [r.error for r in readings(app)] == [None, reason]
    assert KEY not in reason


def test_a_slow_provider_times_out_with_the_gateway_timeout(
    app: Flask, provider: BalanceProvider
) -> None:
    with app.app_context():
        gateway_id = gateway_with_check(app, provider).id
        gateway = app.extensions["sms"].session.get(Gateway, gateway_id)
        gateway.settings = {**gateway.settings, "timeout": 0.5}
        app.extensions["sms"].session.commit()
    provider.answer.delay = 3
    readout = check(app, gateway_id)
    assert readout.value is None and readout.error == "no answer within 0.5 s"


def test_twilio_gateway_checks_through_its_driver(app: Flask, simulator: GatewaySimulator) -> None:
    with app.app_context():
        gateway = twilio_gateway(app, simulator)
        state = app.extensions["sms"]
        gateway.balance_check = balance_checks.validate(
            {"enabled": True, "minimum": "5", "currency": "usd"}, "twilio"
        )
        state.session.commit()
        readout = check_now(state, gateway)
    assert (readout.value, readout.currency) == (Decimal("12.50"), "USD")


# -- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "field", "message"),
    [
        ({"url": ""}, "balance_url", "Check URL is required"),
        ({"url": "ftp://x/balance"}, "balance_url", "must be an absolute http:// or https:// URL"),
        (
            {"url": "https://x/b?to={phone}"},
            "balance_url",
            "{phone} has no value in a balance check",
        ),
        ({"field": "data..balance"}, "balance_field", "dotted path"),
        ({"field": "", "pattern": ""}, "balance_field", "Give the field of the balance"),
        (
            {"field": "", "pattern": "(a+)+$"},
            "balance_pattern",
            "must not contain another quantifier",
        ),
        (
            {"field": "", "pattern": "(a|aa)*b"},
            "balance_pattern",
            "alternatives (|) must not be repeated",
        ),
        ({"field": "", "pattern": "([0-9]+) ([0-9]+)"}, "balance_pattern", "exactly one group"),
        ({"field": "", "pattern": "(\\d+)\\1"}, "balance_pattern", "backreferences"),
        ({"field": "", "pattern": "([0-9]"}, "balance_pattern", "not a valid regular expression"),
        ({"pattern": "([0-9]+)"}, "balance_pattern", "not both"),
        ({"method": "GET", "body": "a=1"}, "balance_body", "needs the POST method"),
        ({"method": "PUT"}, "balance_method", "GET or POST"),
        ({"period": "week"}, "balance_period", "Period must be one of"),
        (
            {"emails": "ops@example.com, not-an-address"},
            "balance_emails",
            "'not-an-address' is not",
        ),
        ({"minimum": "-5"}, "balance_minimum", "from 0"),
        ({"minimum": "lots"}, "balance_minimum", "from 0"),
        ({"currency": "US Dollar"}, "balance_currency", "up to 8 letters"),
        ({"url": "https://x/\x00"}, "balance_url", "NUL"),
    ],
)
def test_bad_check_settings_are_refused_with_the_field(
    settings: dict[str, str], field: str, message: str
) -> None:
    raw = {"enabled": True, "url": "https://x/balance", "field": "balance", **settings}
    errors: dict[str, str] = {}
    balance_checks.entry({"balance_check": raw}, "custom", None, errors, keeps_stored_secrets=False)
    assert message in errors[field]


def test_good_settings_are_normalised() -> None:
    checked = balance_checks.validate(
        {
            "enabled": "on",
            "url": " https://x/balance ",
            "field": "data.balance",
            "period": "15min",
            "emails": "a@example.com; b@example.com, a@example.com",
            "minimum": "10.50",
            "currency": "zar",
            "dashboard": "",
        },
        "custom",
    )
    assert checked["emails"] == ["a@example.com", "b@example.com"]
    assert (checked["minimum"], checked["currency"], checked["dashboard"]) == ("10.5", "ZAR", True)
    assert balance_checks.validate({}, "custom") == {}


def test_stored_secrets_do_not_follow_a_new_check_url(
    app: Flask, provider: BalanceProvider
) -> None:
    with app.app_context():
        gateway = gateway_with_check(app, provider)
        state = app.extensions["sms"]
        data = {
            "name": "Venue",
            "type": "custom",
            **gateway.settings,
            "api_key": "",  # blank: keep the stored one
            "api_secret": "",
            "balance_check": {**gateway.balance_check, "url": "https://evil.example/?k={api_key}"},
        }
        with pytest.raises(GatewayConfigError) as refused:
            save_gateway(state.session, state.vault, data, gateway)
        assert "Type the gateway's secrets again" in refused.value.errors["balance_url"]
        state.session.rollback()
        retyped = {**data, "api_key": "new-key-for-evil-example", "api_secret": "s"}
        save_gateway(state.session, state.vault, retyped, gateway)  # typed: allowed


def test_export_and_import_carry_the_check(app: Flask, provider: BalanceProvider) -> None:
    with app.app_context():
        gateway_with_check(app, provider, minimum="25", emails="ops@example.com")
        state = app.extensions["sms"]
        exported = export_gateways(state.session)
        assert exported[0]["balance_check"]["minimum"] == "25"
        assert KEY not in json.dumps(exported)
        renamed = [{**exported[0], "name": "Copy", "api_key": KEY, "api_secret": SECRET}]
        (copy,) = import_gateways(state.session, state.vault, renamed)
        state.session.commit()
        assert copy.balance_check == exported[0]["balance_check"]
        without = {k: v for k, v in renamed[0].items() if k != "balance_check"}
        (again,) = import_gateways(state.session, state.vault, [without])
        assert again.balance_check["emails"] == ["ops@example.com"]  # kept


# -- history ----------------------------------------------------------------------------------


def test_history_keeps_ninety_days(app: Flask, provider: BalanceProvider) -> None:
    from datetime import timedelta

    with app.app_context():
        gateway_id = gateway_with_check(app, provider).id
        state = app.extensions["sms"]
        now = utcnow()
        history.record(state, gateway_id, Readout(Decimal(1), None), now=now - timedelta(days=91))
        history.record(state, gateway_id, Readout(Decimal(2), None), now=now - timedelta(days=89))
        history.record(state, gateway_id, Readout(Decimal(3), None), now=now)
    assert [r.value for r in readings(app)] == [2, 3]


# -- schedule ---------------------------------------------------------------------------------


@pytest.mark.parametrize("period", list(balance_checks.PERIODS))
def test_each_period_enqueues_one_check_per_slot(
    app: Flask, provider: BalanceProvider, redis: Redis, period: str
) -> None:
    seconds = balance_checks.PERIODS[period][0]
    with app.app_context():
        gateway_id = gateway_with_check(app, provider, period=period).id
        state = app.extensions["sms"]
        start = (time.time() // seconds) * seconds  # this slot began here
        assert schedule.enqueue_due(state, start + 1) == [gateway_id]
        assert schedule.enqueue_due(state, start + seconds - 1) == []  # same slot: taken
        assert schedule.enqueue_due(state, start + seconds + 1) == [gateway_id]  # next slot


def test_a_check_already_made_in_the_slot_is_not_repeated(
    app: Flask, provider: BalanceProvider, redis: Redis
) -> None:
    with app.app_context():
        gateway_id = gateway_with_check(app, provider, period="15min").id
        state = app.extensions["sms"]
        check_now(state, state.session.get(Gateway, gateway_id))  # by hand, just now
        redis.flushdb()  # even without its slot key
        assert schedule.enqueue_due(state) == []
        gateway_with_check(app, provider, name="Off", enabled=False)
        assert schedule.enqueue_due(state, time.time() + 900) == [gateway_id]


def test_two_worker_processes_make_one_check(
    app: Flask,
    provider: BalanceProvider,
    redis: Redis,
    service_urls: tuple[str, str],
    spawn: Any,  # noqa: F811
) -> None:
    with app.app_context():
        gateway_with_check(app, provider)
    # A slow provider: the first check is still running when the second worker looks, so
    # only the slot key (not an existing reading) can stop a second check.
    provider.answer.delay = 1.5
    workers = [spawn(*service_urls, queue=app.config["SMS_QUEUE"]) for _ in range(2)]

    # A worker sweeps (and so schedules) before its keeper announces it alive (a key that
    # holds its pid, refreshed every second): once both are announced, both have looked.
    def announced() -> set[int]:
        return {int(redis.get(key) or 0) for key in redis.scan_iter("sms_ext:worker:*:alive")}

    try:
        wait_for(lambda: {w.pid for w in workers} <= announced(), 60, "two workers alive")
    except AssertionError:
        raise AssertionError("\n".join(worker.output() for worker in workers)) from None
    wait_for(lambda: len(readings(app)) >= 1, 60, "a balance reading")
    with app.app_context():
        wait_for(lambda: app.extensions["sms"].queue.count == 0, 30, "an empty queue")
    for worker in workers:
        assert worker.process.poll() is None, worker.output()
    assert len(readings(app)) == 1
    assert len(provider.seen) == 1


# -- alerts -----------------------------------------------------------------------------------


def run_scheduled(app: Flask, gateway_id: int) -> None:
    """One check as the schedule runs it: a job on the queue, drained by a real worker."""
    with app.app_context():
        schedule.enqueue_check(app.extensions["sms"], gateway_id)
    drain(app)


def test_one_email_per_crossing_and_on_recovery(
    app: Flask, provider: BalanceProvider, smtp: SMTPServer
) -> None:
    with app.app_context():
        gateway_id = gateway_with_check(
            app, provider, minimum="50", currency="USD", emails="ops@example.com, it@example.com"
        ).id
    steps = [
        ("100", None),
        ("40", "[SMS] Venue: balance below the minimum (40 USD)"),
        ("35", None),
        ("20", "[SMS] Venue: balance below half the minimum (20 USD)"),
        ("0", "[SMS] Venue: balance at zero (0 USD)"),
        ("-1", None),
        ("30", "[SMS] Venue: balance below the minimum (30 USD)"),
        ("80", "[SMS] Venue: balance recovered (80 USD)"),
        ("90", None),
    ]
    expected: list[str] = []
    for figure, subject in steps:
        provider.say(f'{{"balance": "{figure}"}}')
        run_scheduled(app, gateway_id)
        if subject:
            expected.append(subject)
        assert smtp.mailbox.subjects == expected, figure
    email = smtp.mailbox.emails[1]
    assert set(email["X-Envelope-To"].split(", ")) == {"ops@example.com", "it@example.com"}
    body = email.get_payload()
    assert "Gateway: Venue" in body and "Balance: 20 USD" in body and "Minimum: 50" in body
    assert stored(app, gateway_id).balance_alert == "ok"


def test_unknown_after_failures_in_a_row_not_low(
    app: Flask, provider: BalanceProvider, smtp: SMTPServer
) -> None:
    with app.app_context():
        gateway_id = gateway_with_check(app, provider, minimum="50", emails="ops@example.com").id
    provider.say('{"balance": 70}')
    run_scheduled(app, gateway_id)
    provider.say("{}", status=503)
    for _ in range(2):  # short of SMS_BALANCE_UNKNOWN_AFTER (3): nothing changes
        run_scheduled(app, gateway_id)
    assert smtp.mailbox.subjects == []
    assert stored(app, gateway_id).balance_alert is None
    run_scheduled(app, gateway_id)
    run_scheduled(app, gateway_id)
    assert smtp.mailbox.subjects == ["[SMS] Venue: balance unknown"]
    assert "Last error: HTTP 503" in smtp.mailbox.emails[0].get_payload()
    provider.say('{"balance": 70}')
    run_scheduled(app, gateway_id)
    assert smtp.mailbox.subjects[-1] == "[SMS] Venue: balance recovered (70)"
    assert len(smtp.mailbox.subjects) == 2


def test_smtp_failure_is_retried_at_the_next_check(
    app: Flask, provider: BalanceProvider, smtp: SMTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    with app.app_context():
        gateway_id = gateway_with_check(app, provider, minimum="50", emails="ops@example.com").id
    provider.say('{"balance": 10}')
    smtp.mailbox.refuse = True
    run_scheduled(app, gateway_id)
    assert "not emailed; will try again at the next check" in caplog.text
    assert stored(app, gateway_id).balance_alert is None  # not recorded as alerted
    smtp.mailbox.refuse = False
    run_scheduled(app, gateway_id)
    assert smtp.mailbox.subjects == ["[SMS] Venue: balance below half the minimum (10)"]
    run_scheduled(app, gateway_id)
    assert len(smtp.mailbox.subjects) == 1


def test_an_smtp_server_that_never_answers_does_not_hold_the_worker(
    app: Flask,
    provider: BalanceProvider,
    smtp: SMTPServer,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with app.app_context():
        gateway_id = gateway_with_check(app, provider, minimum="50", emails="ops@example.com").id
    provider.say('{"balance": 10}')
    monkeypatch.setattr(balance_mail, "SMTP_TIMEOUT", 1.0)
    with socket.socket() as silent:  # accepts the connection, never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        monkeypatch.setattr(app.extensions["mail"], "port", silent.getsockname()[1])
        began = time.monotonic()
        run_scheduled(app, gateway_id)
        took = time.monotonic() - began
    assert took < 10, f"the check waited {took:.1f} s for a silent SMTP server"
    assert "not emailed; will try again at the next check" in caplog.text
    assert stored(app, gateway_id).balance_alert is None  # so the next check sends it
    assert smtp.mailbox.emails == []


def test_racing_workers_send_one_email_for_one_crossing(
    app: Flask, provider: BalanceProvider, smtp: SMTPServer
) -> None:
    with app.app_context():
        gateway_id = gateway_with_check(app, provider, minimum="50", emails="ops@example.com").id
    provider.say('{"balance": 10}')
    with app.app_context():
        state = app.extensions["sms"]
        check_now(state, state.session.get(Gateway, gateway_id), alert=False)
    barrier = threading.Barrier(4)
    results: list[object] = []

    def settle() -> None:
        with app.app_context():
            barrier.wait()
            results.append(alerts.settle(app.extensions["sms"], gateway_id))

    threads = [threading.Thread(target=settle) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(map(str, results)) == ["None", "None", "None", "half"]
    assert len(smtp.mailbox.emails) == 1


def test_disabled_check_never_alerts(
    app: Flask, provider: BalanceProvider, smtp: SMTPServer
) -> None:
    with app.app_context():
        gateway_id = gateway_with_check(
            app, provider, enabled=False, minimum="50", emails="ops@example.com"
        ).id
    provider.say('{"balance": 1}')
    run_scheduled(app, gateway_id)
    assert smtp.mailbox.emails == [] and stored(app, gateway_id).balance == 1


# -- CLI --------------------------------------------------------------------------------------


def test_cli_checks_every_gateway_or_one(
    app: Flask, provider: BalanceProvider, smtp: SMTPServer
) -> None:
    runner = app.test_cli_runner()
    assert (
        "No gateway has a balance check enabled."
        in runner.invoke(args=["sms", "balance", "check"]).output
    )
    with app.app_context():
        gateway_with_check(app, provider, currency="USD", minimum="50", emails="ops@example.com")
        gateway_with_check(app, provider, name="Second")
    provider.say('{"balance": "12.50"}')
    result = runner.invoke(args=["sms", "balance", "check"])
    assert result.exit_code == 0, result.output
    assert "Venue: 12.5 USD" in result.output and "Second: 12.5" in result.output
    assert smtp.mailbox.subjects == ["[SMS] Venue: balance below half the minimum (12.5 USD)"]
    provider.say("{}")
    result = runner.invoke(args=["sms", "balance", "check", "--gateway", "Second"])
    assert result.exit_code == 1
    assert "Second: no balance (field balance missing in the answer)" in result.output
    unknown = runner.invoke(args=["sms", "balance", "check", "--gateway", "Nope"])
    assert unknown.exit_code == 1 and "No gateway named 'Nope'." in unknown.output
    assert len(readings(app)) == 3


# -- admin ------------------------------------------------------------------------------------


def form_data(provider: BalanceProvider, **balance: str) -> dict[str, str]:
    return {
        "type": "custom",
        "name": "Venue",
        "enabled": "y",
        "url": f"{provider.url}/send",
        "method": "POST",
        "content_type": "json",
        "payload": '{"to": "{phone}", "text": "{message}"}',
        "api_key": KEY,
        "balance-enabled": "y",
        "balance-period": "hour",
        "balance-url": f"{provider.url}/balance",
        "balance-method": "GET",
        "balance-headers": "Authorization: Bearer {api_key}",
        "balance-field": "data.balance",
        "balance-minimum": "50",
        "balance-currency": "USD",
        "balance-dashboard": "y",
        "balance-emails": "ops@example.com",
        **balance,
    }


@pytest.fixture
def admin_app(app: Flask, sms: SMS) -> FlaskClient:
    sms.admin_check(lambda: True)
    app.config["WTF_CSRF_ENABLED"] = False
    return app.test_client()


def test_admin_configures_checks_and_sees_history_and_banner(
    app: Flask, admin_app: FlaskClient, provider: BalanceProvider, smtp: SMTPServer
) -> None:
    refused = admin_app.post(f"{PREFIX}/new", data=form_data(provider, **{"balance-field": "a..b"}))
    assert refused.status_code == 400
    assert "dotted path into the JSON answer" in refused.get_data(as_text=True)
    saved = admin_app.post(f"{PREFIX}/new", data=form_data(provider))
    assert saved.status_code == 303
    with app.app_context():
        gateway = app.extensions["sms"].session.scalar(select(Gateway))
        assert gateway.balance_check["headers"] == [
            {"name": "Authorization", "value": "Bearer {api_key}"}
        ]
        gateway_id = gateway.id
    page = admin_app.get(f"{PREFIX}/{gateway_id}/").get_data(as_text=True)
    assert 'value="data.balance"' in page and "Bearer {api_key}" in page
    for figure in ("80", "30"):
        provider.say(f'{{"data": {{"balance": {figure}}}}}')
        checked = admin_app.post(
            f"{PREFIX}/{gateway_id}/balance", data={"back": "edit"}, follow_redirects=True
        )
        assert f"Venue: balance {figure}." in checked.get_data(as_text=True)
    assert smtp.mailbox.emails == []  # a page never sends mail: a worker does
    drain(app)
    assert smtp.mailbox.subjects == ["[SMS] Venue: balance below the minimum (30 USD)"]
    assert provider.seen[-1].headers["authorization"] == f"Bearer {KEY}"
    page = admin_app.get(f"{PREFIX}/{gateway_id}/").get_data(as_text=True)
    assert "<polyline" in page and "dashed red line is the minimum" in page
    assert page.count("<td>80 USD</td>") == 1 and page.count("<td>30 USD</td>") == 1
    dashboard = admin_app.get("/sms/admin/").get_data(as_text=True)
    assert "is below its minimum" in dashboard and "balance-alert" in dashboard
    provider.say('{"data": {"balance": 90}}')
    admin_app.post(f"{PREFIX}/{gateway_id}/balance")
    assert "balance-alert" not in admin_app.get("/sms/admin/").get_data(as_text=True)
    drain(app)
    assert smtp.mailbox.subjects[1:] == ["[SMS] Venue: balance recovered (90 USD)"]


def test_check_now_names_the_failure(
    app: Flask, admin_app: FlaskClient, provider: BalanceProvider
) -> None:
    with app.app_context():
        gateway_id = gateway_with_check(app, provider, field="data.balance").id
    provider.say('{"balance": 3}')
    answer = admin_app.post(f"{PREFIX}/{gateway_id}/balance", follow_redirects=True)
    page = answer.get_data(as_text=True)
    assert "Venue: no balance. field data.balance missing in the answer" in page
    edit = admin_app.get(f"{PREFIX}/{gateway_id}/").get_data(as_text=True)
    assert "Last check failed: field data.balance missing in the answer" in edit
    with app.app_context():
        count = app.extensions["sms"].session.scalar(select(func.count(BalanceReading.id)))
    assert count == 1
