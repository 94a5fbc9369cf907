"""Admin SMS logs (table, filters, keyset pages, detail, CSV export) and the dashboard."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import insert, select

from sms_ext import SMS
from sms_ext.admin.logs import mask_phone
from sms_ext.models import Gateway, Kind, Message, MessageAttempt, Status, utcnow
from tests.conftest import make_app

PREFIX = "/sms/admin"
NOW = utcnow()
TODAY = datetime.combine(NOW.date(), datetime.min.time())


@pytest.fixture
def full_numbers_client(
    app: Flask, backend: str, database_urls: dict[str, str], redis_url: str
) -> Iterator[FlaskClient]:
    """An admin client of an app built with ``SMS_ADMIN_FULL_NUMBERS`` (read once, at init),
    on the same database as ``app``."""
    sms = SMS()
    sms.admin_check(lambda: True)
    full = make_app(database_urls[backend], redis_url, sms=sms, SMS_ADMIN_FULL_NUMBERS=True)
    yield full.test_client()
    with full.app_context():
        full.extensions["sqlalchemy"].engine.dispose()


def add_gateways(app: Flask, *names: str, enabled: bool = True) -> dict[str, int]:
    with app.app_context():
        session = app.extensions["sms"].session
        for priority, name in enumerate(names):
            session.add(Gateway(name=name, type="custom", enabled=enabled, priority=priority))
        session.commit()
        return dict(session.execute(select(Gateway.name, Gateway.id)).all())


def add_messages(app: Flask, *rows: dict[str, Any]) -> list[int]:
    """Insert messages in bulk (defaults for what a row leaves out); returns ids in order."""
    base = {
        "kind": Kind.PERSONAL,
        "to": "+27831234567",
        "body": "hello",
        "encoding": "GSM-7",
        "segments": 1,
        "status": Status.SENT,
        "location": None,
        "gateway_id": None,
        "created_at": NOW,
        "expires_at": NOW + timedelta(days=2),
        "last_error": None,
        "provider_message_id": None,
        "sent_at": None,
    }
    with app.app_context():
        session = app.extensions["sms"].session
        first = (session.scalar(select(Message.id).order_by(Message.id.desc()).limit(1))) or 0
        session.execute(insert(Message), [{**base, **row} for row in rows])
        session.commit()
        return list(
            session.scalars(select(Message.id).where(Message.id > first).order_by(Message.id))
        )


def add_attempts(app: Flask, *rows: dict[str, Any]) -> None:
    base = {
        "gateway_id": None,
        "gateway_name": "gw",
        "started_at": NOW,
        "duration_ms": 12,
        "ok": True,
        "http_status": 200,
        "request_summary": "POST /send",
        "response_excerpt": '{"status": "ok"}',
        "error": "",
    }
    with app.app_context():
        session = app.extensions["sms"].session
        session.execute(insert(MessageAttempt), [{**base, **row} for row in rows])
        session.commit()


def page_ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'data-id="(\d+)"', html)]


def link(html: str, rel: str) -> str | None:
    found = re.search(rf'rel="{rel}" href="([^"]+)"', html)
    return found.group(1).replace("&amp;", "&") if found else None


@pytest.mark.parametrize(
    "path", ["/", "/logs/", "/logs/1", "/logs/export.csv", "/logs/?status=sent"]
)
def test_every_page_is_denied_without_admin_check(app: Flask, path: str) -> None:
    add_messages(app, {})
    assert app.test_client().get(PREFIX + path).status_code == 403


def test_filters_return_the_matching_rows(app: Flask, admin_client: FlaskClient) -> None:
    gw = add_gateways(app, "alpha", "beta")
    old = NOW - timedelta(days=10)
    ids = add_messages(
        app,
        {"status": Status.SENT, "kind": Kind.OTP, "location": "cafe", "gateway_id": gw["alpha"]},
        {"status": Status.FAILED, "kind": Kind.OTP, "location": "cafe", "to": "+27821110000"},
        {"status": Status.DELIVERED, "kind": Kind.CAMPAIGN, "location": "hotel"},
        {"status": Status.SENT, "kind": Kind.VOUCHER, "created_at": old, "gateway_id": gw["beta"]},
        {"status": Status.FAILED, "location": "hotel", "to": "+447700900123"},
    )
    cases = {
        "status=failed": [ids[4], ids[1]],
        "kind=otp": [ids[1], ids[0]],
        "location=hotel": [ids[4], ids[2]],
        "status=failed&location=cafe": [ids[1]],
        f"gateway={gw['beta']}": [ids[3]],
        f"from={old.date()}&to={old.date()}": [ids[3]],
        f"from={NOW.date()}": [ids[4], ids[2], ids[1], ids[0]],
        "phone=%2B27+82": [ids[1]],
        "phone=0044+7700": [ids[4]],
        "phone=%2B27821110000": [ids[1]],
        "phone=2783": [ids[3], ids[2], ids[0]],
        "phone=%2B279": [],
        "status=sent&kind=voucher&location=cafe": [],
    }
    for query, expected in cases.items():
        response = admin_client.get(f"{PREFIX}/logs/?{query}")
        assert response.status_code == 200, query
        assert page_ids(response.text) == expected, query


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("status=lost", "Status must be one of"),
        ("kind=spam", "Type must be one of"),
        ("from=2026-13-01", "From date must be a date like 2026-01-31"),
        ("to=yesterday", "To date must be a date"),
        ("from=2026-02-01&to=2026-01-01", "From date must be on or before the To date"),
        ("phone=abc", "Phone must be digits"),
        ("phone=%2B1234567890123456", "at most 15 digits"),
        ("phone=0831234567", "international form"),
        ("gateway=x", "Gateway: choose one from the list"),
        ("gateway=999999", "Gateway: choose one from the list"),
        ("before=x", "&#39;before&#39; must be a message id"),
    ],
)
def test_bad_filters_are_a_400_with_a_message(
    admin_client: FlaskClient, query: str, message: str
) -> None:
    response = admin_client.get(f"{PREFIX}/logs/?{query}")
    assert response.status_code == 400
    assert message in response.text
    export = admin_client.get(f"{PREFIX}/logs/export.csv?{query}")
    if "before" not in query:
        assert export.status_code == 400


def test_keyset_pages_cover_every_row_once(app: Flask, admin_client: FlaskClient) -> None:
    ids = add_messages(app, *({"location": "lobby"} for _ in range(120)))
    add_messages(app, *({"location": "elsewhere"} for _ in range(7)))
    newest_first = ids[::-1]

    first = admin_client.get(f"{PREFIX}/logs/?location=lobby").text
    assert page_ids(first) == newest_first[:50]
    assert link(first, "prev") is None
    second = admin_client.get(link(first, "next")).text
    assert page_ids(second) == newest_first[50:100]
    assert "location=lobby" in link(second, "next")
    third = admin_client.get(link(second, "next")).text
    assert page_ids(third) == newest_first[100:]
    assert link(third, "next") is None

    back = admin_client.get(link(third, "prev")).text
    assert page_ids(back) == newest_first[50:100]
    top = admin_client.get(link(back, "prev")).text
    assert page_ids(top) == newest_first[:50]
    assert link(top, "prev") is None
    assert link(top, "next") is not None


def test_numbers_are_masked_unless_allowed(
    app: Flask, admin_client: FlaskClient, full_numbers_client: FlaskClient
) -> None:
    (message_id,) = add_messages(app, {"to": "+27831234567"})
    for path in ("/logs/", f"/logs/{message_id}"):
        html = admin_client.get(PREFIX + path).text
        assert "+27 83 ••• 4567" in html
        assert "+27831234567" not in html
    for path in ("/logs/", f"/logs/{message_id}"):
        assert "+27831234567" in full_numbers_client.get(PREFIX + path).text


def test_mask_phone_keeps_country_and_last_digits() -> None:
    assert mask_phone("+27831234567") == "+27 83 ••• 4567"
    assert mask_phone("+14155550123") == "+1 41 ••• 0123"
    assert mask_phone("+35312345") == "+353 ••• 45"


def test_detail_shows_the_message_and_every_attempt(app: Flask, admin_client: FlaskClient) -> None:
    gw = add_gateways(app, "alpha")
    (message_id,) = add_messages(
        app,
        {
            "body": "Your code is 123456",
            "status": Status.SENT,
            "gateway_id": gw["alpha"],
            "provider_message_id": "prov-77",
            "sent_at": NOW,
        },
    )
    add_attempts(
        app,
        {
            "message_id": message_id,
            "gateway_name": "beta-old",
            "ok": False,
            "http_status": 503,
            "duration_ms": 2001,
            "request_summary": "POST https://beta/send <b>",
            "response_excerpt": "Service Unavailable",
            "error": "HTTP 503",
        },
        {"message_id": message_id, "gateway_name": "alpha", "gateway_id": gw["alpha"]},
    )
    response = admin_client.get(f"{PREFIX}/logs/{message_id}")
    assert response.status_code == 200
    html = response.text
    assert "Your code is 123456" in html
    assert html.count('class="attempt"') == 2
    for text in ("beta-old", "503", "2001 ms", "Service Unavailable", "HTTP 503", "prov-77"):
        assert text in html
    assert "<pre>POST https://beta/send &lt;b&gt;</pre>" in html
    assert admin_client.get(f"{PREFIX}/logs/{message_id + 1000}").status_code == 404


def read_csv(response: Any) -> list[list[str]]:
    return list(csv.reader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))


def test_export_streams_the_filtered_rows_as_safe_csv(
    app: Flask, admin_client: FlaskClient, full_numbers_client: FlaskClient
) -> None:
    gw = add_gateways(app, "=HYPERLINK(1)")
    ids = add_messages(
        app,
        {
            "location": "cafe",
            "gateway_id": gw["=HYPERLINK(1)"],
            "provider_message_id": "@SUM(A1)",
            "last_error": "-2+3",
            "sent_at": NOW,
            "segments": 2,
        },
        {"location": "hotel"},
        *({"location": "cafe", "status": Status.FAILED} for _ in range(2500)),
    )
    response = full_numbers_client.get(f"{PREFIX}/logs/export.csv?location=cafe")
    assert response.status_code == 200
    assert response.is_streamed
    assert response.mimetype == "text/csv"
    assert re.fullmatch(
        r"attachment; filename=sms-log-\d{4}-\d{2}-\d{2}\.csv",
        response.headers["Content-Disposition"],
    )
    rows = read_csv(response)
    assert rows[0][:3] == ["message_id", "created_utc", "sent_utc"]
    # newest first, like the table; batches, no gaps
    assert [int(row[0]) for row in rows[1:]] == [*reversed(ids[2:]), ids[0]]
    first = dict(zip(rows[0], rows[-1], strict=True))
    assert first["gateway"] == "'=HYPERLINK(1)"
    assert first["provider_message_id"] == "'@SUM(A1)"
    assert first["last_error"] == "'-2+3"
    assert first["recipient"] == "+27831234567"  # a number cannot be a formula: no apostrophe
    assert first["segments"] == "2"
    assert first["created_utc"].endswith("Z") and first["sent_utc"].endswith("Z")

    masked = read_csv(admin_client.get(f"{PREFIX}/logs/export.csv?location=hotel"))
    assert [row[5] for row in masked[1:]] == ["+27 83 ••• 4567"]


def test_export_neutralises_a_recipient_that_is_not_a_number(
    app: Flask, full_numbers_client: FlaskClient
) -> None:
    """A row written around the outbox (a host's own insert) may hold anything."""
    add_messages(
        app, {"to": "=HYPERLINK(1)", "location": "odd"}, {"to": "+2783", "location": "odd"}
    )
    rows = read_csv(full_numbers_client.get(f"{PREFIX}/logs/export.csv?location=odd"))
    assert [row[5] for row in rows[1:]] == ["+2783", "'=HYPERLINK(1)"]


def test_types_are_labelled_otp_not_otp_capitalised(app: Flask, admin_client: FlaskClient) -> None:
    (message_id,) = add_messages(app, {"kind": Kind.OTP})
    html = admin_client.get(f"{PREFIX}/logs/").text
    assert '<option value="otp" >OTP</option>' in html
    assert re.search(r"<td>OTP</td>", html)
    assert "Otp" not in html
    detail = admin_client.get(f"{PREFIX}/logs/{message_id}").text
    assert "<dt>Type</dt><dd>OTP</dd>" in detail


def html_figures(html: str) -> list[dict[str, int]]:
    periods = re.split(r'data-period="\d"', html)[1:]
    return [
        {name: int(value) for name, value in re.findall(r'data-figure="(\w+)">(\d+)<', part)}
        for part in periods
    ]


def test_dashboard_counts_chart_and_warnings(app: Flask, admin_client: FlaskClient) -> None:
    gw = add_gateways(app, "alpha", "beta")
    three_days_ago = TODAY - timedelta(days=3) + timedelta(hours=1)
    ten_days_ago = TODAY - timedelta(days=10) + timedelta(hours=1)
    add_messages(
        app,
        {"status": Status.SENT, "gateway_id": gw["alpha"], "created_at": TODAY},
        {"status": Status.DELIVERED, "gateway_id": gw["alpha"], "created_at": TODAY},
        {"status": Status.FAILED, "created_at": TODAY},
        {"status": Status.QUEUED, "created_at": TODAY},
        {"status": Status.DELIVERED, "gateway_id": gw["beta"], "created_at": three_days_ago},
        {"status": Status.FAILED, "gateway_id": gw["beta"], "created_at": three_days_ago},
        {"status": Status.SENT, "gateway_id": gw["beta"], "created_at": ten_days_ago},
        {"status": Status.SENT, "created_at": TODAY - timedelta(days=40)},
    )
    (failing,) = add_messages(
        app, {"status": Status.FAILED, "created_at": TODAY - timedelta(days=40)}
    )
    add_attempts(
        app,
        {"message_id": failing, "gateway_id": gw["beta"], "ok": True},
        *({"message_id": failing, "gateway_id": gw["beta"], "ok": False} for _ in range(5)),
        *({"message_id": failing, "gateway_id": gw["alpha"], "ok": False} for _ in range(4)),
    )
    html = admin_client.get(f"{PREFIX}/").text
    today, week = html_figures(html)
    assert today == {"sent": 2, "delivered": 1, "failed": 1, "pending": 1}
    assert week == {"sent": 3, "delivered": 2, "failed": 2, "pending": 1}
    rows = re.findall(r'<tr class="gateway-row">(.*?)</tr>', html, re.S)
    cells = {
        re.search(r"<th[^>]*>([^<]+)", row).group(1).strip(): [
            int(n) for n in re.findall(r'<td class="num">(\d+)</td>', row)
        ]
        for row in rows
    }
    assert cells["alpha"] == [2, 1, 0, 2, 1, 0]
    assert cells["beta"] == [0, 0, 0, 1, 1, 1]
    assert cells["No gateway"] == [0, 0, 1, 0, 0, 1]
    assert "“beta” is failing repeatedly" in html
    assert "“alpha” is failing" not in html  # only 4 failures in a row
    assert "No enabled gateway" not in html
    assert html.count('<g class="day"') == 14
    assert f"{(TODAY - timedelta(days=3)).date()}: 1 sent, 1 failed" in html
    assert f"{(TODAY - timedelta(days=10)).date()}: 1 sent, 0 failed" in html
    assert "<svg" in html and 'role="img"' in html and "<script" not in html


def test_dashboard_warns_without_an_enabled_gateway(app: Flask, admin_client: FlaskClient) -> None:
    add_gateways(app, "off", enabled=False)
    html = admin_client.get(f"{PREFIX}/").text
    assert "No enabled gateway" in html
    assert html.count('<g class="day"') == 14
