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
from tests.helpers import add_gateway, custom_gateway
from tests.live_portal import PASSWORD, USERNAME, fresh_portal, log_in, serving
from tests.simulator import GatewaySimulator

pytestmark = pytest.mark.browser

DESKTOP = {"viewport": {"width": 1280, "height": 800}, "device_scale_factor": 1}
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
    log_in(page, base, "/sms/admin/")
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

    # -- preview: method and URL shown, the stored API key stands as a mask -------------------
    page.get_by_role("button", name="Preview request").click()
    preview = page.locator("#preview pre")
    expect(preview).to_be_visible()
    first_line = preview.inner_text().splitlines()[0]
    assert first_line.startswith(
        f"GET {simulator.url}/custom/clickatell?apiKey=\u2022\u2022\u2022\u2022&to=27831234567"
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
    assert record["recipient"] == PHONE_MASKED  # a number, as it is: no apostrophe
    assert record["attempts"] == "1"

    log_rows.first.get_by_role("link").click()
    expect(page.locator("h1")).to_contain_text("sent")
    screenshot(page, f"admin-{backend}-6-log-detail")

    with app.app_context():
        message = app.extensions["sms"].session.scalars(select(Message)).one()
        assert (message.kind, message.status, message.to) == (Kind.TEST, Status.SENT, PHONE)
        assert message.gateway_id == clickatell
        assert record["message_id"] == str(message.id)


# -- a test send through a broken gateway (issue 9, item 17) ------------------------------------

REFRESH_GONE_SECONDS = 3.5
"""Longer than the test page's 2 s refresh: a page still refreshing would have reloaded."""


def test_a_test_send_through_a_broken_gateway_ends_failed(
    desktop_page: Page, live_portal: LivePortal, simulator: GatewaySimulator, backend: str
) -> None:
    page, base, app = desktop_page, live_portal.url, live_portal.app
    with app.app_context():
        custom_gateway(app, simulator, "Backup")
        broken = custom_gateway(app, simulator, "Broken", enabled=False).id
    simulator.fail_always("custom", "500")
    log_in(page, base, "/sms/admin/")
    page.goto(f"{base}/sms/admin/gateways/{broken}/")
    expect(page.locator("h1")).to_have_text("Edit Broken")

    # -- a number it cannot text: the error is next to the form, the number still typed ------
    phone = page.get_by_label("Phone number")
    phone.fill("12")
    page.get_by_role("button", name="Run test").click()
    error = page.locator("#test-phone-error")
    expect(error).to_contain_text("Test not sent:")
    expect(error).to_be_in_viewport()  # where the admin is looking, not at the top
    expect(page.locator(".flash.error")).to_have_count(0)
    expect(phone).to_have_value("12")
    expect(phone).to_have_attribute("aria-invalid", "true")
    field, message = phone.bounding_box(), error.bounding_box()
    assert field and message and 0 <= message["y"] - (field["y"] + field["height"]) < 80
    screenshot(page, f"admin-{backend}-7-test-bad-number")

    # -- a real number: one try, "failed" with the gateway's answer, then no more refreshing -
    phone.fill(PHONE)
    page.get_by_role("button", name="Run test").click()
    result = page.get_by_role("status")
    expect(result).to_contain_text(f"to {PHONE}")
    expect(result.locator("p > .status").first).to_have_text("failed", timeout=SENT_WITHIN_MS)
    expect(result).to_contain_text("Broken: HTTP 500")
    expect(result).to_contain_text("Attempt 1")
    expect(result).not_to_contain_text("refreshes every")
    expect(phone).to_have_value(PHONE)
    page.evaluate("window.stillHere = true")
    page.wait_for_timeout(REFRESH_GONE_SECONDS * 1000)
    assert page.evaluate("window.stillHere === true"), "the page reloaded after the end"
    assert page.locator('meta[http-equiv="refresh"]').count() == 0
    screenshot(page, f"admin-{backend}-8-test-failed")
    assert [r.path for r in simulator.requests_for("custom")] == ["/custom/Broken"]
    with app.app_context():
        session = app.extensions["sms"].session
        message = session.scalars(select(Message)).one()
        assert (message.status, message.attempts) == (Status.FAILED, 1)


# -- keyboard moves, helper text, settings (issue 9, item 18) ---------------------------------


def focused_label(page: Page) -> str | None:
    return page.evaluate("document.activeElement && document.activeElement.ariaLabel")


def test_a_moved_gateway_keeps_the_keyboard_focus(
    desktop_page: Page, live_portal: LivePortal, backend: str
) -> None:
    page, base, app = desktop_page, live_portal.url, live_portal.app
    with app.app_context():
        for name in ("Alpha", "Bravo", "Charlie"):
            add_gateway(app, name=name, type="sandbox")
    log_in(page, base, "/sms/admin/")
    page.goto(f"{base}/sms/admin/gateways/")
    for _ in range(60):  # the keyboard only: Tab until the button, as an admin would
        if focused_label(page) == "Move Charlie up":
            break
        page.keyboard.press("Tab")
    assert focused_label(page) == "Move Charlie up"
    page.keyboard.press("Enter")
    page.wait_for_url("**/gateways/?moved=*")
    expect(page.locator("#gateway-table tbody tr").nth(1)).to_contain_text("Charlie")
    assert focused_label(page) == "Move Charlie up"
    screenshot(page, f"admin-{backend}-9-moved-focus")
    page.keyboard.press("Enter")  # once more: now first, its ↑ is disabled
    page.wait_for_function("document.readyState === 'complete'")
    expect(page.locator("#gateway-table tbody tr").first).to_contain_text("Charlie")
    assert focused_label(page) == "Move Charlie down"
    assert gateway_order(app) == [("Charlie", 1), ("Alpha", 2), ("Bravo", 3)]


CONTRAST_SCRIPT = """
(selector) => {
  function rgb(text) { return text.match(/[\\d.]+/g).slice(0, 4).map(Number); }
  function luminance([r, g, b]) {
    const lin = (c) => {
      c /= 255;
      return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    };
    return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
  }
  function background(element) {
    for (let node = element; node; node = node.parentElement) {
      const color = rgb(getComputedStyle(node).backgroundColor);
      if (color.length < 4 || color[3] > 0) return color;
    }
    return [255, 255, 255];
  }
  return Array.from(document.querySelectorAll(selector))
    .filter((element) => element.offsetParent !== null && element.textContent.trim())
    .map((element) => {
      const fg = luminance(rgb(getComputedStyle(element).color));
      const bg = luminance(background(element));
      const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
      return [element.textContent.trim().slice(0, 40), Math.round(ratio * 100) / 100];
    });
}
"""
HELPER_TEXT = ".muted, .hint, .row p"


def test_helper_text_contrast_and_the_days_input(
    desktop_page: Page, live_portal: LivePortal, simulator: GatewaySimulator, backend: str
) -> None:
    page, base, app = desktop_page, live_portal.url, live_portal.app
    with app.app_context():
        gateway = custom_gateway(app, simulator, "Main").id
    log_in(page, base, "/sms/admin/")
    measured = []
    for path in ("gateways/", f"gateways/{gateway}/", "logs/", "settings", ""):
        page.goto(f"{base}/sms/admin/{path}")
        found = page.evaluate(CONTRAST_SCRIPT, HELPER_TEXT)
        assert found, f"no helper text measured on /{path}"
        measured += [(path, text, ratio) for text, ratio in found]
    too_faint = [entry for entry in measured if entry[2] < 4.5]
    assert too_faint == [], too_faint

    page.goto(f"{base}/sms/admin/settings")
    days = page.get_by_label("Days to expire")
    expect(days).to_have_attribute("type", "number")
    expect(days).to_have_value("2")
    style = days.evaluate(
        "(e) => { const s = getComputedStyle(e);"
        " return [s.borderTopLeftRadius, s.borderTopColor, s.paddingLeft, s.width]; }"
    )
    assert style[:3] == ["8px", "rgb(203, 213, 225)", "9.6px"], style  # like the other inputs
    days.fill("2.5")
    page.get_by_role("button", name="Save settings").click()
    expect(page.locator("#days-error")).to_have_text("Not a valid integer value.")
    expect(days).to_have_value("2.5")
    screenshot(page, f"admin-{backend}-10-settings")
    days.fill("7")
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_text("Settings saved.")).to_be_visible()
    expect(days).to_have_value("7")
