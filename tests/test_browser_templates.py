"""The template editor in a real Chromium: the counter follows the typing, a curly quote turns
the sample into UCS-2 (highlighted) and adds parts, and saving with "replace smart quotes"
stores GSM-7. Screenshots land in ``tests/artifacts/templates-*.png``.
"""

from __future__ import annotations

import pytest
from flask import Flask
from playwright.sync_api import Page, expect
from sqlalchemy import select

from sms_ext import MessageTemplate
from sms_ext.text import templates
from sms_ext.text.segments import analyze
from tests.browser import screenshot
from tests.live_portal import log_in
from tests.test_browser_admin import (  # noqa: F401  (fixtures)
    LivePortal,
    desktop_page,
    live_portal,
)

pytestmark = pytest.mark.browser

BODY = "Hi {{ name }}, welcome to {{ venue }}! Free Wi-Fi all day, ask the staff for anything. " + (
    "Enjoy your visit and have a wonderful, relaxing afternoon in town."
)


def expect_counter(page: Page, text: str) -> None:
    """The live counter shows exactly what :func:`analyze` says of ``text``."""
    info = analyze(text)
    expect(page.locator("#counter-chars")).to_have_text(str(len(text)))
    expect(page.locator("#counter-encoding")).to_have_text(
        "GSM-7" if info.encoding == "gsm7" else "UCS-2"
    )
    expect(page.locator("#counter-parts")).to_have_text(str(info.segments))


def stored(app: Flask) -> list[tuple[str, str]]:
    with app.app_context():
        session = app.extensions["sms"].session
        session.expire_all()
        return [(t.name, t.body) for t in session.scalars(select(MessageTemplate))]


def test_editor_counter_highlights_ucs2_and_saves_gsm7(
    desktop_page: Page,  # noqa: F811
    live_portal: LivePortal,  # noqa: F811
    backend: str,
) -> None:
    page, base, app = desktop_page, live_portal.url, live_portal.app
    log_in(page, base, "/sms/admin/")
    page.get_by_role("link", name="Templates", exact=True).click()
    expect(page.locator("h1")).to_have_text("Templates")
    page.get_by_role("link", name="New template").click()
    expect(page.locator("h1")).to_have_text("New template")

    page.get_by_label("Name", exact=True).fill("Welcome")
    page.get_by_label("Kind").select_option("personal")
    expect(page.locator("aside dl[data-kind=personal]")).to_be_visible()
    expect(page.locator("aside dl[data-kind=otp]")).to_be_hidden()
    editor = page.get_by_label("Text", exact=True)
    editor.fill(BODY)
    sample = templates.render(BODY, templates.sample_values("personal"))
    assert analyze(sample).segments == 1 and len(sample) > 140
    expect_counter(page, sample)
    expect(page.locator("#counter mark")).to_have_count(0)
    screenshot(page, f"templates-{backend}-1-gsm7")

    # -- a curly apostrophe, typed: the whole text becomes UCS-2 and three parts -------------
    editor.press("End")
    editor.press_sequentially(" \u2019til")
    expect_counter(page, sample + " \u2019til")
    assert analyze(sample + " \u2019til").segments == 3
    expect(page.locator("#counter .counter-forcing")).to_contain_text("U+2019")
    expect(page.locator("#counter .sample mark")).to_have_text("\u2019")
    screenshot(page, f"templates-{backend}-2-ucs2-highlighted")

    # -- "replace smart quotes": the counter shows what will be saved, then save -------------
    page.get_by_label("Replace smart quotes").check()
    expect_counter(page, sample + " 'til")
    expect(page.locator("#counter mark")).to_have_count(0)
    screenshot(page, f"templates-{backend}-3-replaced")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("h1")).to_have_text("Templates")
    expect(page.get_by_text("Template Welcome saved.")).to_be_visible()
    assert stored(app) == [("Welcome", BODY + " 'til")]
    expect(page.locator("#template-table tbody tr td").nth(4)).to_have_text("1")
    screenshot(page, f"templates-{backend}-4-list")

    # -- a refused save keeps the text and says why, with the line -------------------------
    page.get_by_role("link", name="Welcome").click()
    editor = page.get_by_label("Text", exact=True)
    editor.fill("Hi {{ name }}\n{{ voucher }}")
    expect(page.locator("#counter .counter-error")).to_have_text(
        "Line 2: unknown variable 'voucher'; personal templates can use location, name, "
        "opt_out, phone, venue."
    )
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#template-error")).to_contain_text("Line 2: unknown variable 'voucher'")
    expect(page.get_by_label("Text", exact=True)).to_have_value("Hi {{ name }}\n{{ voucher }}")
    screenshot(page, f"templates-{backend}-5-refused")
    assert stored(app) == [("Welcome", BODY + " 'til")]
