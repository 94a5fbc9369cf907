"""The Spanish guest flow in a real Chromium set to Spanish (es-ES), at a phone's size.

The browser's own ``Accept-Language`` picks the language: splash page, the extension's code
page (its script's countdown too) and the refusal of a wrong code are Spanish. Screenshots land
in ``tests/artifacts/``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import update

from portal.extensions import db
from portal.i18n import BROWSER
from portal.models import Location
from tests.browser import PHONE, chromium_page, screenshot
from tests.simulator import GatewaySimulator
from tests.test_browser_splash import PHONE as PHONE_E164
from tests.test_browser_splash import (  # noqa: F401 (live_portal: the fixture)
    PHONE_SHOWN,
    PHONE_TYPED,
    LivePortal,
    code_texted_to,
    fits_the_phone,
    live_portal,
)

pytestmark = pytest.mark.browser

COUNTDOWN = re.compile(r"Podrás pedir un código nuevo en (\d+) s\.")


@pytest.fixture
def spanish_page(tmp_path: Path) -> Iterator[Page]:
    """A phone-sized Chromium whose language is Spanish (Spain)."""
    with chromium_page(tmp_path / "chromium-profile", locale="es-ES", **PHONE) as page:
        yield page


def test_spanish_guest_gets_online(
    spanish_page: Page,
    live_portal: LivePortal,  # noqa: F811
    simulator: GatewaySimulator,
    backend: str,
) -> None:
    page, base = spanish_page, live_portal.url
    with live_portal.app.app_context():  # the demo venue follows the guest's browser
        db.session.execute(update(Location).values(language=BROWSER))
        db.session.commit()
    query = f"mac=02:00:00:00:00:01&ip=10.0.0.23&link-login-only={base}/demo/controller-login"
    page.goto(f"{base}/s/demo/?{query}")
    expect(page.locator("html")).to_have_attribute("lang", "es")
    expect(page.locator(".badge")).to_have_text("Wi-Fi gratis")
    expect(page.locator("label[for=phone]")).to_have_text("Número de móvil")
    fits_the_phone(page)
    screenshot(page, f"i18n-{backend}-1-splash-es")

    page.locator('input[name="terms"]').tap()
    page.locator('input[name="phone"]').fill(PHONE_TYPED)
    with page.expect_response(lambda r: r.request.method == "POST") as sent:
        page.get_by_role("button", name="Envíame un código").tap()
    assert sent.value.status == 200
    expect(page.locator("h1")).to_have_text("Introduce tu código")
    expect(page.locator("html")).to_have_attribute("lang", "es")
    expect(
        page.locator("p", has_text="Hemos enviado un código de 6 cifras por SMS al")
    ).to_contain_text(PHONE_SHOWN)
    note = page.locator("#resend-note")
    expect(note).to_have_text(COUNTDOWN)
    first = note.inner_text()
    expect(note).not_to_have_text(first, timeout=3000)  # the script counts down in Spanish
    expect(note).to_have_text(COUNTDOWN)
    fits_the_phone(page)
    screenshot(page, f"i18n-{backend}-2-code-page-es")

    code = code_texted_to(simulator, PHONE_E164)
    page.locator("#code").fill("000000" if code != "000000" else "111111")
    with page.expect_response(lambda r: r.request.method == "POST") as refused:
        page.get_by_role("button", name="Conectar").tap()
    assert refused.value.status == 400
    expect(page.locator('.error[role="alert"]')).to_have_text(
        "Ese código no es correcto. Te quedan 4 intentos."
    )
    screenshot(page, f"i18n-{backend}-3-wrong-code-es")

    page.locator("#code").fill(code)
    with page.expect_response(lambda r: r.request.method == "POST") as accepted:
        page.get_by_role("button", name="Conectar").tap()
    assert accepted.value.status == 303
    page.wait_for_url(lambda url: url.startswith(f"{base}/demo/controller-login"))
