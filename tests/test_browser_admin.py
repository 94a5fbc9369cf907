"""The SMS admin in a real Chromium at a desktop size, against the real portal server.

An admin logs in through the form, adds a custom gateway from the Clickatell preset pointed at
the gateway simulator, previews its request (secrets masked), adds a second gateway and drags
it to the top, sends a test SMS that a real ``flask sms worker`` process delivers, then filters
the SMS logs and downloads the CSV. Screenshots land in ``tests/artifacts/admin-*.png``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Flask
from playwright.sync_api import Page, expect
from redis import Redis
from sqlalchemy import select

from portal.extensions import db
from portal.models import Admin
from sms_ext import Gateway, Kind, Message, Status
from sms_ext.admin.logs import EXPORT_COLUMNS
from tests.browser import chromium_page, screenshot
from tests.live_portal import fresh_portal, serving
from tests.simulator import GatewaySimulator

pytestmark = pytest.mark.browser

DESKTOP = {"viewport": {"width": 1280, "height": 800}, "device_scale_factor": 1}
USERNAME, PASSWORD = "ops", "correct horse battery"
API_KEY = "ck-live-0123456789abcdefXYZ9"
PHONE = "+27831234567"
PHONE_MASKED = "+27 83 \u2022\u2022\u2022 4567"
SENT_WITHIN_MS = 30_000


@dataclass
class LivePortal:
    app: Flask
    url: str


@pytest.fixture
def desktop_page(tmp_path: Path) -> Iterator[Page]:
    """Like ``tests.browser.browser_page`` (same binary and flags), at a desktop size."""
    with chromium_page(tmp_path / "chromium-profile", accept_downloads=True, **DESKTOP) as page:
        yield page


@pytest.fixture
def live_portal(
    service_urls: tuple[str, str],
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[LivePortal]:
    """The portal on a real port (CSRF on), empty tables but one admin, and a real worker."""
    app = fresh_portal(service_urls, monkeypatch)
    with app.app_context():
        admin = Admin(username=USERNAME)
        admin.set_password(PASSWORD)
        db.session.add(admin)
        db.session.commit()

    with serving(app, service_urls) as base:
        yield LivePortal(app, base)


def gateway_order(app: Flask) -> list[tuple[str, int]]:
    """(name, priority) of every gateway, as the database orders them now."""
    with app.app_context():
        session = app.extensions["sms"].session
        session.expire_all()
        gateways = session.scalars(Gateway.in_order())
        return [(gateway.name, gateway.priority) for gateway in gateways]


def gateway_id(app: Flask, name: str) -> int:
    with app.app_context():
        session = app.extensions["sms"].session
        return session.scalars(select(Gateway.id).where(Gateway.name == name)).one()


def test_admin_sets_up_tests_and_audits_gateways(
    desktop_page: Page, live_portal: LivePortal, simulator: GatewaySimulator, backend: str
) -> None:
    page, base, app = desktop_page, live_portal.url, live_portal.app

    # -- log in through the form -----------------------------------------------------------
    page.goto(f"{base}/sms/admin/")
    page.wait_for_url(f"{base}/admin/login?next=**")
    page.get_by_label("Username").fill(USERNAME)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base}/sms/admin/")
    expect(page.locator("h1")).to_have_text("Dashboard")
    screenshot(page, f"admin-{backend}-1-dashboard")

    # -- a custom gateway from the Clickatell preset, pointed at the simulator ------------
    page.get_by_role("link", name="Gateways", exact=True).click()
    expect(page.locator("h1")).to_have_text("Gateways")
    page.get_by_role("link", name="Clickatell (HTTP API)").click()
    expect(page.locator("h1")).to_have_text("New gateway")
    url_input = page.get_by_label("URL", exact=True)
    expect(url_input).to_have_value("https://platform.clickatell.com/messages/http/send")
    expect(page.get_by_label("Method")).to_have_value("GET")
    page.get_by_label("Name", exact=True).fill("Clickatell")
    url_input.fill(f"{simulator.url}/custom/clickatell")
    page.get_by_label("Success response").fill('"status": "ok"')
    page.get_by_label("API key").fill(API_KEY)
    page.get_by_role("button", name="Save gateway").click()
    expect(page.locator("h1")).to_have_text("Edit Clickatell")
    expect(page.get_by_text("Gateway Clickatell saved.")).to_be_visible()
    expect(page.get_by_label("API key")).to_have_value("")  # secrets are write-only
    clickatell = gateway_id(app, "Clickatell")
    assert page.url == f"{base}/sms/admin/gateways/{clickatell}/"
    screenshot(page, f"admin-{backend}-3-gateway-form")

    # -- preview: method and URL shown, the API key masked ----------------------------------
    page.get_by_role("button", name="Preview request").click()
    preview = page.locator("#preview pre")
    expect(preview).to_be_visible()
    first_line = preview.inner_text().splitlines()[0]
    assert first_line.startswith(
        f"GET {simulator.url}/custom/clickatell?apiKey=****&to=27831234567"
    )
    assert API_KEY not in page.content()
    screenshot(page, f"admin-{backend}-4-preview")

    # -- a second gateway (JSON, blank form), then drag it above the first --------------------
    page.get_by_role("link", name="All gateways").click()
    page.get_by_role("link", name="Add gateway").click()
    page.get_by_label("Name", exact=True).fill("Backup JSON")
    page.get_by_label("URL", exact=True).fill(f"{simulator.url}/custom/backup")
    page.get_by_label("Method").select_option("POST")
    page.get_by_label("Content type").select_option("json")
    page.get_by_label("Payload").fill('{"to": "{phone}", "text": "{message}"}')
    page.get_by_role("button", name="Save gateway").click()
    expect(page.locator("h1")).to_have_text("Edit Backup JSON")
    backup = gateway_id(app, "Backup JSON")
    assert gateway_order(app) == [("Clickatell", 1), ("Backup JSON", 2)]

    page.get_by_role("link", name="All gateways").click()
    rows = page.locator("#gateway-table tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("primary")
    screenshot(page, f"admin-{backend}-2-gateway-list")
    handle = page.locator(f"#gateway-{backup} td.num")
    target = page.locator(f"#gateway-{clickatell} td.num")
    with page.expect_response(lambda r: r.url.endswith("/sms/admin/gateways/order")) as posted:
        handle.drag_to(target, target_position={"x": 10, "y": 4})  # upper half: drop above
    assert posted.value.status in (200, 303)
    page.wait_for_load_state()  # the script reloads the page after the POST
    expect(rows.nth(0)).to_have_attribute("data-id", str(backup))
    expect(rows.nth(0)).to_contain_text("primary")
    assert gateway_order(app) == [("Backup JSON", 1), ("Clickatell", 2)]

    # -- test send through the Clickatell gateway: the worker delivers it -------------------
    page.locator(f"#gateway-{clickatell}").get_by_role("link", name="Clickatell").click()
    expect(page.locator("h1")).to_have_text("Edit Clickatell")
    page.get_by_label("Phone number").fill(PHONE)
    page.get_by_role("button", name="Run test").click()
    result = page.get_by_role("status")
    expect(result).to_contain_text(f"to {PHONE}")
    # No click: the page follows the test send by refreshing itself every 2 s.
    expect(result.locator("p > .status").first).to_have_text("sent", timeout=SENT_WITHIN_MS)
    expect(result).to_contain_text("HTTP 200")
    delivered = simulator.wait_for_requests(1, target="custom", timeout=5)
    assert delivered[0].path.endswith("/custom/clickatell")
    assert delivered[0].query["apiKey"] == [API_KEY]
    assert delivered[0].query["to"] == ["27831234567"]

    # -- logs: filter by status, export CSV, open one message ------------------------------
    page.get_by_role("link", name="SMS logs", exact=True).click()
    expect(page.locator("h1")).to_have_text("SMS logs")
    page.get_by_label("Status").select_option("sent")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**/sms/admin/logs/?status=sent*")
    log_rows = page.locator("table tbody tr")
    expect(log_rows).to_have_count(1)
    expect(log_rows.first).to_contain_text(PHONE_MASKED)
    expect(log_rows.first).to_contain_text("Clickatell")
    screenshot(page, f"admin-{backend}-5-logs")

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Export CSV").click()
    download = download_info.value
    assert download.suggested_filename.startswith("sms-log-")
    assert download.url.endswith("/sms/admin/logs/export.csv?status=sent")
    text = Path(download.path()).read_text(encoding="utf-8-sig")
    header, *records = list(csv.reader(io.StringIO(text)))
    assert tuple(header) == EXPORT_COLUMNS
    assert len(records) == 1
    record = dict(zip(header, records[0], strict=True))
    assert (record["status"], record["kind"], record["gateway"]) == (
        Status.SENT,
        Kind.TEST,
        "Clickatell",
    )
    assert record["recipient"] == "'" + PHONE_MASKED  # "+" opens a formula: neutralised
    assert record["attempts"] == "1"

    log_rows.first.get_by_role("link").click()
    expect(page.locator("h1")).to_contain_text("sent")
    screenshot(page, f"admin-{backend}-6-log-detail")

    with app.app_context():
        message = app.extensions["sms"].session.scalars(select(Message)).one()
        assert (message.kind, message.status, message.to) == (Kind.TEST, Status.SENT, PHONE)
        assert message.gateway_id == clickatell
        assert record["message_id"] == str(message.id)
