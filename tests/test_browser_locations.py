"""Location and splash page settings in a real Chromium, against the real portal server.

An admin logs in through the form, adds a location with the keyboard (the SMS verification
switch turned off with Space), fixes a refused brand colour, then turns the switch back on
with the mouse; a guest's splash page follows each change. Screenshots land in
``tests/artifacts/locations-*.png``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from playwright.sync_api import Page, expect
from redis import Redis
from sqlalchemy import select

from portal.extensions import db
from portal.models import Admin, Location, SplashPage
from sms_ext import Gateway
from tests.browser import chromium_page, screenshot
from tests.helpers import custom_gateway
from tests.live_portal import PASSWORD, USERNAME, fresh_portal, log_in, serving
from tests.simulator import GatewaySimulator

pytestmark = pytest.mark.browser


@pytest.fixture
def desktop_page(tmp_path: Path) -> Iterator[Page]:
    options = {"viewport": {"width": 1280, "height": 900}, "device_scale_factor": 1}
    with chromium_page(tmp_path / "chromium-profile", **options) as page:
        yield page


def test_admin_sets_up_a_splash_page_and_flips_sms_verification(
    desktop_page: Page,
    service_urls: tuple[str, str],
    redis: Redis,
    simulator: GatewaySimulator,
    monkeypatch: pytest.MonkeyPatch,
    backend: str,
) -> None:
    app = fresh_portal(service_urls, monkeypatch)
    with app.app_context():
        admin = Admin(username=USERNAME)
        admin.set_password(PASSWORD)
        db.session.add(admin)
        db.session.commit()
        custom_gateway(app, simulator, "main")
        custom_gateway(app, simulator, "backup", priority=5)
        pool = Location(name="Pool bar", slug="pool", region="ZA")
        pool.splash_page = SplashPage(title="Pool Wi-Fi")
        db.session.add(pool)
        db.session.commit()
    page = desktop_page
    with serving(app, service_urls) as base:
        log_in(page, base, "/admin/locations")
        expect(page.locator("h1")).to_have_text("Locations")

        page.get_by_role("link", name="Add a location").click()
        expect(page.locator("h1")).to_have_text("New location")
        switch = page.get_by_role("switch", name="SMS verification")
        expect(switch).to_be_checked()  # on by default
        page.get_by_label("Name", exact=True).fill("Harbour Café")
        page.get_by_label("Key", exact=True).fill("harbour")
        page.get_by_label("Region").fill("ZA")
        page.get_by_label("Timezone").fill("Africa/Johannesburg")
        language = page.get_by_label("Language")
        language.select_option("es")
        language.focus()
        page.keyboard.press("Tab")  # from the language to the switch, then Space flips it
        expect(switch).to_be_focused()
        page.keyboard.press("Space")
        expect(switch).not_to_be_checked()
        page.get_by_label("Page title").fill("Free Wi-Fi at the Harbour")
        page.get_by_label("Welcome text").fill("Two hours free, every day.")
        page.get_by_role("textbox", name="Brand colour", exact=True).fill("#fde047")  # too light
        page.get_by_label("backup").check()
        page.get_by_label("main").uncheck()
        screenshot(page, f"locations-{backend}-1-new-form")
        page.get_by_role("button", name="Save").click()

        expect(page.get_by_text("too light for the white button text")).to_be_visible()
        expect(switch).not_to_be_checked()  # what was typed is kept
        expect(page.get_by_label("backup")).to_be_checked()
        expect(page.get_by_label("main")).not_to_be_checked()
        screenshot(page, f"locations-{backend}-2-refused-colour")
        colour = page.get_by_role("textbox", name="Brand colour", exact=True)
        colour.fill("#0f766e")
        colour.press("Enter")  # submit from the keyboard

        expect(page.locator("h1")).to_have_text("Locations")
        expect(page.get_by_text("Saved Harbour Café.")).to_be_visible()
        row = page.locator("tr", has_text="Harbour Café")
        expect(row).to_contain_text("Off")
        expect(row).to_contain_text("Español")
        expect(row.locator("td").last).to_have_text("backup")
        screenshot(page, f"locations-{backend}-3-list")

        guest = page.context.new_page()
        guest.set_viewport_size({"width": 390, "height": 800})
        guest.goto(f"{base}/s/harbour/")
        expect(guest.locator("h1")).to_have_text("Free Wi-Fi at the Harbour")
        expect(guest.get_by_text("Two hours free, every day.")).to_be_visible()
        connect = guest.get_by_role("button", name="Conectar", exact=True)  # in Spanish
        expect(connect).to_have_css("background-color", "rgb(15, 118, 110)")
        screenshot(guest, f"locations-{backend}-4-splash-without-sms")

        # -- back in the admin: the mouse turns SMS verification on --------------------------
        page.get_by_role("link", name="Harbour Café").click()
        expect(page.locator("h1")).to_have_text("Harbour Café")
        switch.click()
        expect(switch).to_be_checked()
        screenshot(page, f"locations-{backend}-5-switch-on")
        page.get_by_role("button", name="Save").click()
        expect(page.locator("tr", has_text="Harbour Café")).to_contain_text("On")

        guest.reload()  # the same server process: its venue cache saw the edit
        expect(guest.get_by_role("button", name="Envíame un código")).to_be_visible()
        guest.get_by_label("Número de móvil").fill("083 123 4567")
        guest.get_by_role("button", name="Envíame un código").click()
        expect(guest.locator("#code")).to_be_visible()
        (sent,) = simulator.wait_for_requests(1, target="custom", timeout=20)
        assert sent.path == "/custom/backup"  # the gateway chosen for this location
        screenshot(guest, f"locations-{backend}-6-code-page")
        guest.close()
    with app.app_context():
        harbour = db.session.scalars(select(Location).where(Location.slug == "harbour")).one()
        assert harbour.splash_page.otp_enabled is True
        assert harbour.splash_page.brand_color == "#0f766e"
    assert gateway_lists(app) == {"main": ["pool"], "backup": []}


def gateway_lists(app: Flask) -> dict[str, list[str]]:
    with app.app_context():
        return {g.name: g.locations for g in db.session.scalars(Gateway.in_order())}
