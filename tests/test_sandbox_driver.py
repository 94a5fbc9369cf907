"""The sandbox gateway: accepts everything, sends nothing, keeps the text in the outbox row."""

from __future__ import annotations

import pytest
import requests
from flask import Flask

from sms_ext import SMS, GatewayConfigError, Status
from sms_ext.gateways import DRIVERS, OutgoingSMS, driver_class
from sms_ext.gateways.sandbox import SandboxDriver
from sms_ext.gateways.store import export_gateways
from tests.conftest import drain
from tests.helpers import add_gateway, reload


def test_sandbox_needs_no_config_and_answers_without_network() -> None:
    assert DRIVERS["sandbox"] is SandboxDriver is driver_class("sandbox")
    assert SandboxDriver.validate({"url": "ignored"}) == {}
    with requests.Session() as session:
        driver = SandboxDriver({}, session)
        result = driver.send(OutgoingSMS(reference="42", to="+27831234567", body="Hi"))
    assert result.ok and result.provider_id == "sandbox-42"
    assert (
        not result.retryable
        and result.http_status is None
        and "+27831234567" in (result.request_summary)
    )


def test_sandbox_gateway_delivers_through_a_worker(app_ctx: Flask, sms: SMS) -> None:
    gateway = add_gateway(app_ctx, name="Sandbox", type="sandbox")
    assert gateway.settings == {}
    assert export_gateways(app_ctx.extensions["sms"].session)[0]["type"] == "sandbox"
    message = sms.send("+27831234567", "Your code is 123456")
    drain(app_ctx)
    sent = reload(app_ctx, message)
    assert sent.status == Status.SENT and sent.gateway_id == gateway.id
    assert sent.provider_message_id == f"sandbox-{sent.id}"
    assert sent.body == "Your code is 123456"
    (attempt,) = sent.attempt_log
    assert attempt.ok and attempt.gateway_name == "Sandbox"


def test_unknown_types_name_the_sandbox_among_the_choices() -> None:
    with pytest.raises(GatewayConfigError, match="sandbox"):
        driver_class("sandbx")
