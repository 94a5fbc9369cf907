"""A guest's profile in a real Chromium: pick a template, preview it with its parts, send it.

The portal runs on a real port with CSRF on and a real ``flask sms worker`` process; the SMS
reaches the gateway simulator and comes back in the profile's messages with the admin's name.
Screenshots land in ``tests/artifacts/guests-*.png``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from playwright.sync_api import Page, expect
from redis import Redis

from portal.extensions import db
from portal.models import Admin, Guest, GuestSession, Location
from sms_ext import MessageTemplate
from tests.browser import chromium_page, screenshot
from tests.helpers import custom_gateway
from tests.live_portal import PASSWORD, USERNAME, fresh_portal, log_in, serving
from tests.simulator import GatewaySimulator

pytestmark = pytest.mark.browser

PHONE = "+27831234567"
TEXT = "Hi Alex, your umbrella is at the front desk of Harbour Cafe. See you soon!"


@pytest.fixture
def desktop_page(tmp_path: Path) -> Iterator[Page]:
    viewport = {"width": 1280, "height": 900}
    with chromium_page(tmp_path / "chromium", viewport=viewport, device_scale_factor=1) as page:
        yield page


def seed(app: Flask, simulator: GatewaySimulator) -> int:
    """An admin, a location, a guest who logged in there, a personal template, a gateway."""
    with app.app_context():
        admin = Admin(username=USERNAME)
        admin.set_password(PASSWORD)
        location = Location(slug="cafe", name="Harbour Cafe", region="ZA")
        guest = Guest(phone=PHONE, name="Alex", marketing_consent=True)
        db.session.add_all([admin, location, guest])
        db.session.flush()
        db.session.add(
            GuestSession(
                guest_id=guest.id,
                location_id=location.id,
                phone=PHONE,
                client_mac="aa:bb:cc:dd:ee:ff",
                verified_by_otp=True,
            )
        )
        db.session.add(
            MessageTemplate(
                name="Lost property",
                kind="personal",
                language="en",
                body="Hi {{ name }}, your umbrella is at the front desk of {{ location }}. "
                "See you soon!",
            )
        )
        db.session.commit()
        custom_gateway(app, simulator, "desk")
        return guest.id


def test_admin_sends_a_template_to_a_guest_from_the_profile(
    desktop_page: Page,
    service_urls: tuple[str, str],
    redis: Redis,
    simulator: GatewaySimulator,
    monkeypatch: pytest.MonkeyPatch,
    backend: str,
) -> None:
    app = fresh_portal(service_urls, monkeypatch)
    guest_id = seed(app, simulator)
    page = desktop_page
    with serving(app, service_urls) as base:
        log_in(page, base, "/admin/guests/")
        expect(page.locator("h1")).to_have_text("Guests")
        row = page.locator(f'tr[data-id="{guest_id}"]')
        expect(row).to_contain_text("+27 83 \u2022\u2022\u2022 4567")
        expect(row).to_contain_text("Alex")
        screenshot(page, f"guests-{backend}-1-list")

        row.get_by_role("link").click()
        page.wait_for_url(f"{base}/admin/guests/{guest_id}")
        expect(page.locator(".session")).to_contain_text("aa:bb:cc:dd:ee:ff")
        page.get_by_label("Template").select_option(label="Lost property (en)")
        page.get_by_role("button", name="Preview").click()
        expect(page.get_by_role("textbox", name="Message")).to_have_value(TEXT)
        expect(page.locator("#counter")).to_have_text(f"{len(TEXT)} characters, GSM-7, 1 part")
        screenshot(page, f"guests-{backend}-2-preview")

        page.get_by_role("button", name="Send", exact=True).click()
        page.wait_for_url(f"{base}/admin/guests/{guest_id}")
        expect(page.get_by_text("queued for sending.")).to_be_visible()
        (request,) = simulator.wait_for_requests(1, target="custom", timeout=10)
        assert (request.json["to"], request.json["text"]) == (PHONE, TEXT)

        page.reload()
        message = page.locator("tr.message")
        expect(message).to_contain_text("Personal")
        expect(message).to_contain_text(USERNAME)
        expect(message).to_contain_text("Hi Alex, your umbrella")
        for _ in range(20):  # the worker records "sent" just after the simulator answers
            if "sent" in message.inner_text():
                break
            page.wait_for_timeout(250)
            page.reload()
        expect(message).to_contain_text("sent")
        screenshot(page, f"guests-{backend}-3-sent")
