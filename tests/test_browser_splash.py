"""The guest's whole splash flow in a real Chromium at a phone's size.

The demo portal is served over real HTTP, a real ``flask sms worker`` process delivers the code
to the gateway simulator, and the code typed into the page is the one the gateway received.
Screenshots land in ``tests/artifacts/``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from urllib.parse import parse_qsl

import pytest
from flask import Flask
from playwright.sync_api import Page, expect
from sqlalchemy import select

from portal.extensions import db, sms
from portal.models import GuestSession
from sms_ext import Kind, Message, OtpChallenge, Status
from sms_ext import runtime as sms_runtime
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
                return re.search(r"code is (\d{6})", request.json["text"])[1]
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


def phone_form_submit(page: Page, typed: str) -> int:
    """Type ``typed`` into the splash page's phone form and send it; the answer's status."""
    terms = page.locator('input[name="terms"]')
    if terms.count() and not terms.is_checked():
        terms.tap()
    page.locator('input[name="phone"]').fill(typed)
    with page.expect_response(lambda r: r.request.method == "POST") as sent:
        page.get_by_role("button", name="Text me a code").tap()
    return sent.value.status


def post_code(page: Page, code: str) -> int:
    page.locator("#code").fill(code)
    with page.expect_response(lambda r: r.request.method == "POST") as answered:
        page.get_by_role("button", name="Connect").tap()
    return answered.value.status


def test_a_mistyped_number_is_corrected_and_a_refresh_spends_no_try(
    browser_page: Page, live_portal: LivePortal, simulator: GatewaySimulator, backend: str
) -> None:
    """Items 6, 7 and 19: "Use a different number" works at once and is a full-size tap
    target; the code error is tied to its field; a refresh re-posting a wrong code costs no
    try; after too many wrong codes only a new code is offered; the venue's look throughout."""
    page, base = browser_page, live_portal.url
    splash_url = f"{base}/s/demo/?mac=02:00:00:00:00:01&ip=10.0.0.23"
    page.goto(splash_url)
    assert phone_form_submit(page, "083 123 4500") == 200  # one digit wrong
    expect(page.locator("strong", has_text="+27 83 123 4500")).to_be_visible()
    expect(page.locator(".brand .venue")).to_have_text("Demo Café")
    change = page.get_by_role("link", name="Use a different number")
    box = change.bounding_box()
    assert box is not None and box["height"] >= 44 and box["width"] >= 44, box
    fits_the_phone(page)
    screenshot(page, f"splash-{backend}-6-typo-code-page")

    change.tap()
    page.wait_for_url(splash_url)
    expect(page.locator('input[name="phone"]')).to_be_visible()
    assert phone_form_submit(page, PHONE_TYPED) == 200  # at once: no "Too many codes"
    expect(page.locator("strong", has_text=PHONE_SHOWN)).to_be_visible()
    code = code_texted_to(simulator, PHONE)

    wrongs = [c for c in ("000000", "111111", "222222", "333333", "444444", "555555") if c != code]
    assert post_code(page, wrongs[0]) == 400
    error = page.locator("#code-error")
    expect(error).to_have_text("That code is not right. 4 tries left.")
    code_input = page.locator("#code")
    expect(code_input).to_have_attribute("aria-invalid", "true")
    expect(code_input).to_have_attribute("aria-describedby", "code-error")
    fits_the_phone(page)
    screenshot(page, f"splash-{backend}-7-wrong-code-tied-to-field")

    page.once("dialog", lambda dialog: dialog.accept())  # "resend the form?", if asked
    with page.expect_response(lambda r: r.request.method == "POST") as refreshed:
        page.reload()
    assert refreshed.value.status == 400
    expect(page.locator("#code-error")).to_have_text("That code is not right. 4 tries left.")
    with live_portal.app.app_context():
        challenge = db.session.scalars(
            select(OtpChallenge).where(OtpChallenge.phone == PHONE)
        ).one()
        assert challenge.failed_attempts == 1  # the refresh was not counted

    for wrong in wrongs[1:5]:
        assert post_code(page, wrong) == 400
    expect(page.locator("h1")).to_have_text("Ask for a new code")
    expect(page.locator('[role="alert"]')).to_have_text("Too many wrong codes. Ask for a new code.")
    expect(page.locator("#code")).to_have_count(0)
    expect(page.get_by_role("button", name="Send a new code")).to_be_visible()
    fits_the_phone(page)
    screenshot(page, f"splash-{backend}-8-too-many-wrong-codes")


def test_no_code_form_while_sending_is_off(
    browser_page: Page, live_portal: LivePortal, backend: str
) -> None:
    """Item 5: with sending switched off the guest is told at once, not shown a code form."""
    with live_portal.app.app_context():
        state = live_portal.app.extensions["sms"]
        sms_runtime.save(state, replace(sms_runtime.current(state), sending_enabled=False))
    page = browser_page
    page.goto(f"{live_portal.url}/s/demo/?mac=02:00:00:00:00:01&ip=10.0.0.23")
    assert phone_form_submit(page, PHONE_TYPED) == 503
    expect(page.locator("h1")).to_have_text("SMS codes are not available right now")
    expect(page.locator(".brand .venue")).to_have_text("Demo Café")
    expect(page.locator("#code")).to_have_count(0)
    fits_the_phone(page)
    screenshot(page, f"splash-{backend}-9-codes-not-available")
    with live_portal.app.app_context():
        assert db.session.scalars(select(OtpChallenge)).all() == []
