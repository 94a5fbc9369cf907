"""The guest's whole splash flow in a real Chromium at a phone's size.

The demo portal is served over real HTTP, a real ``flask sms worker`` process delivers the code
to the gateway simulator, and the code typed into the page is the one the gateway received.
Screenshots land in ``tests/artifacts/``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import parse_qsl

import pytest
from flask import Flask
from playwright.sync_api import Page, expect
from sqlalchemy import select

from portal.extensions import db, sms
from portal.models import GuestSession
from sms_ext import Kind, Message, Status
from tests.browser import (  # noqa: F401 (browser_page_fixture: the fixture)
    browser_page_fixture,
    screenshot,
)
from tests.helpers import custom_gateway
from tests.live_portal import fresh_portal, serving
from tests.simulator import GatewaySimulator

pytestmark = pytest.mark.browser

PHONE_TYPED = "083 123 4567"
PHONE = "+27831234567"
PHONE_SHOWN = "+27 83 123 4567"
WARM_UP_PHONE = "+27831230000"
COUNTDOWN = re.compile(r"You can ask for a new code in (\d+) s\.")


@dataclass
class LivePortal:
    app: Flask
    url: str
    """``http://127.0.0.1:<port>``"""


@pytest.fixture
def live_portal(
    service_urls: tuple[str, str],
    redis,
    simulator: GatewaySimulator,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[LivePortal]:
    """The demo portal on a real port with seed-demo data, a gateway pointing at the
    simulator, and a real worker process."""
    app = fresh_portal(service_urls, monkeypatch)
    with app.app_context():
        # Before seeding: seed-demo adds its sandbox gateway only when there is none.
        custom_gateway(app, simulator, "otp")
    seeded = app.test_cli_runner().invoke(args=["portal", "seed-demo", "--password", "pw-123456"])
    assert seeded.exit_code == 0, seeded.output
    assert "Gateways exist: none added." in seeded.output

    with serving(app, service_urls) as base:
        wait_until_delivering(app, simulator)
        yield LivePortal(app, base)


def wait_until_delivering(app: Flask, simulator: GatewaySimulator) -> None:
    """Send warm-up messages until the worker process delivers one, so it is listening
    before the guest asks for a code. Retried: another test run flushing the shared Redis
    database (as every test's ``redis`` fixture does) drops a job nobody has taken yet."""
    for _ in range(5):
        with app.app_context():
            sms.send(WARM_UP_PHONE, "warm-up")
        try:
            simulator.wait_for_requests(1, target="custom", timeout=4)
            break
        except AssertionError:
            continue
    else:
        pytest.fail("The worker process delivered no warm-up message in 20 s.")
    simulator.clear()


def code_texted_to(simulator: GatewaySimulator, phone: str, timeout: float = 15) -> str:
    """The code in the first text the gateway received for ``phone`` (warm-ups ignored)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for request in simulator.requests_for("custom"):
            if request.json["to"] == phone:
                return re.search(r"#(\d{6})$", request.json["text"])[1]
        time.sleep(0.05)
    raise AssertionError(f"No text to {phone} reached the gateway within {timeout} s.")


def fits_the_phone(page: Page) -> None:
    """Nothing wider than the viewport: no sideways scrolling on a phone."""
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], f"{page.url} is {width}px wide"


def test_guest_gets_online_with_the_texted_code(
    browser_page: Page, live_portal: LivePortal, simulator: GatewaySimulator, backend: str
) -> None:
    page, base = browser_page, live_portal.url
    # As MikroTik sends it: raw login URL, escaped original URL; both must survive untouched.
    query = (
        f"mac=02:00:00:00:00:01&ip=10.0.0.23&link-login-only={base}/demo/controller-login"
        "&link-orig=http%3A%2F%2Fexample.com%2F%3Fa%3D1%26b%3D2"
    )
    splash_url = f"{base}/s/demo/?{query}"

    page.goto(splash_url)
    expect(page.locator("h1")).to_have_text("Free Wi-Fi at Demo Café")
    fits_the_phone(page)
    screenshot(page, f"splash-{backend}-1-phone-form")
    terms = page.locator('input[name="terms"]')
    if terms.count():
        terms.tap()
        expect(terms).to_be_checked()
    page.locator('input[name="phone"]').fill(PHONE_TYPED)
    with page.expect_response(lambda r: r.request.method == "POST") as sent:
        page.get_by_role("button", name="Text me a code").tap()
    assert sent.value.status == 200
    # The server sends the resend button enabled; the page's script disables it.
    resend_tag = re.search(r"<button[^>]*id=\"resend\"[^>]*>", sent.value.text())[0]
    assert "disabled" not in resend_tag and 'data-wait="30"' in resend_tag

    code_input = page.locator("#code")
    expect(code_input).to_be_visible()
    assert page.url == splash_url
    expect(code_input).to_have_attribute("autocomplete", "one-time-code")
    expect(code_input).to_have_attribute("inputmode", "numeric")
    expect(page.locator("strong", has_text=PHONE_SHOWN)).to_be_visible()
    resend, note = page.locator("#resend"), page.locator("#resend-note")
    expect(resend).to_be_disabled()
    expect(note).to_have_text(COUNTDOWN)
    first_note = note.inner_text()
    assert 25 <= int(COUNTDOWN.fullmatch(first_note)[1]) <= 30
    expect(note).not_to_have_text(first_note, timeout=3000)  # the countdown ticks
    expect(resend).to_be_disabled()
    fits_the_phone(page)
    screenshot(page, f"splash-{backend}-2-code-page")

    code = code_texted_to(simulator, PHONE)  # as the gateway got it from the worker process

    wrong = "000000" if code != "000000" else "111111"
    code_input.fill(wrong)
    with page.expect_response(lambda r: r.request.method == "POST") as refused:
        page.get_by_role("button", name="Connect").tap()
    assert refused.value.status == 400
    expect(page.locator('.error[role="alert"]')).to_have_text(
        "That code is not right. 4 tries left."
    )
    assert page.url == splash_url
    fits_the_phone(page)
    screenshot(page, f"splash-{backend}-3-wrong-code")

    page.locator("#code").fill(code)
    screenshot(page, f"splash-{backend}-4-code-typed")
    with page.expect_response(lambda r: r.request.method == "POST") as accepted:
        page.get_by_role("button", name="Connect").tap()
    assert accepted.value.status == 303
    page.wait_for_url(lambda url: url.startswith(f"{base}/demo/controller-login"))
    assert page.url == f"{base}/demo/controller-login?{query}"
    rows = page.locator("table tr")
    expect(rows).to_have_count(4)
    shown = [(row.locator("th").inner_text(), row.locator("td").inner_text()) for row in rows.all()]
    assert shown == parse_qsl(query)
    fits_the_phone(page)
    screenshot(page, f"splash-{backend}-5-controller-login")

    with live_portal.app.app_context():
        login = db.session.scalars(select(GuestSession)).one()
        assert (login.phone, login.verified_by_otp) == (PHONE, True)
        assert (login.client_mac, login.client_ip) == ("02:00:00:00:00:01", "10.0.0.23")
        sms_session = live_portal.app.extensions["sms"].session
        message = sms_session.scalars(select(Message).where(Message.to == PHONE)).one()
        assert (message.kind, message.status, message.to) == (Kind.OTP, Status.SENT, PHONE)
