"""Typed gateway secrets in a real Chromium (issue 9, item 16): a preview keeps what the admin
typed (in the form, never in the preview), "Save" right after stores it, and a gateway whose
payload uses ``{api_key}`` is not saved while the key is empty. Screenshots land in
``tests/artifacts/gateway-secrets-*.png``.
"""

from __future__ import annotations

import pytest
from flask import Flask
from playwright.sync_api import Page, expect
from sqlalchemy import select

from sms_ext import Gateway
from sms_ext.gateways.store import gateway_config
from tests.browser import screenshot
from tests.live_portal import log_in
from tests.simulator import GatewaySimulator
from tests.test_browser_admin import (  # noqa: F401  (fixtures)
    LivePortal,
    desktop_page,
    live_portal,
)

pytestmark = pytest.mark.browser

TYPED_KEY = "typed-key-5f3a9c1e7b"
PAYLOAD = '{"to": "{phone}", "text": "{message}", "key": "{api_key}"}'


def stored(app: Flask) -> list[tuple[str, str]]:
    """(name, stored API key) of every gateway."""
    with app.app_context():
        state = app.extensions["sms"]
        state.session.expire_all()
        return [
            (gateway.name, gateway_config(gateway, state.vault).get("api_key", ""))
            for gateway in state.session.scalars(select(Gateway).order_by(Gateway.id))
        ]


def fill_gateway(page: Page, name: str, url: str) -> None:
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("URL", exact=True).fill(url)
    page.get_by_label("Method").select_option("POST")
    page.get_by_label("Content type").select_option("json")
    page.get_by_label("Payload").fill(PAYLOAD)


def test_preview_keeps_typed_secrets_and_an_empty_used_key_is_refused(
    desktop_page: Page,  # noqa: F811
    live_portal: LivePortal,  # noqa: F811
    simulator: GatewaySimulator,
    backend: str,
) -> None:
    page, base, app = desktop_page, live_portal.url, live_portal.app
    log_in(page, base, "/sms/admin/")

    # -- preview with a typed key: the key stays in its input, the preview masks it ----------
    page.goto(f"{base}/sms/admin/gateways/new?type=custom")
    fill_gateway(page, "Signed JSON", f"{simulator.url}/custom/signed")
    page.get_by_label("API key").fill(TYPED_KEY)
    page.get_by_role("button", name="Preview request").click()
    preview = page.locator("#preview pre")
    expect(preview).to_be_visible()
    expect(preview).to_contain_text('"key":"****"')
    assert TYPED_KEY not in preview.inner_text()
    expect(page.get_by_label("API key")).to_have_value(TYPED_KEY)
    expect(page.get_by_label("Payload")).to_have_value(PAYLOAD)
    expect(page.get_by_text("type them again")).to_have_count(0)
    screenshot(page, f"gateway-secrets-{backend}-1-preview-keeps-key")

    # -- "Save" right after: the gateway has its key ----------------------------------------
    page.get_by_role("button", name="Save gateway").click()
    expect(page.locator("h1")).to_have_text("Edit Signed JSON")
    expect(page.get_by_text("Gateway Signed JSON saved.")).to_be_visible()
    expect(page.get_by_label("API key")).to_have_value("")  # stored secrets are write-only
    assert stored(app) == [("Signed JSON", TYPED_KEY)]
    screenshot(page, f"gateway-secrets-{backend}-2-saved")

    # -- the payload uses {api_key} but the key is empty: refused, next to the field --------
    page.goto(f"{base}/sms/admin/gateways/new?type=custom")
    fill_gateway(page, "Keyless", f"{simulator.url}/custom/keyless")
    page.get_by_role("button", name="Save gateway").click()
    error = page.locator("#api_key-error")
    expect(error).to_have_text("The request uses {api_key}: type the API key.")
    expect(page.get_by_label("API key")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("h1")).to_have_text("New gateway")
    error.scroll_into_view_if_needed()
    screenshot(page, f"gateway-secrets-{backend}-3-empty-key-refused")
    assert stored(app) == [("Signed JSON", TYPED_KEY)]
