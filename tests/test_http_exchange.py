"""The HTTP exchange bounds a gateway's answer in time and size, whatever the gateway does."""

from __future__ import annotations

import resource
import time

import requests

from sms_ext.gateways import OutgoingSMS
from sms_ext.gateways.custom import CustomDriver
from sms_ext.gateways.http import MAX_ANSWER_BYTES
from tests.simulator import GatewaySimulator

SMS_OUT = OutgoingSMS(reference="7", to="+27831234567", body="bounded")


def driver(sim: GatewaySimulator, timeout: float) -> CustomDriver:
    config = {
        "url": f"{sim.url}/custom/send",
        "method": "POST",
        "content_type": "json",
        "payload": '{"to": "{phone}", "text": "{message}"}',
        "timeout": timeout,
    }
    return CustomDriver(CustomDriver.validate(config), requests.Session())


def test_trickling_answer_is_cut_off_at_the_deadline(simulator: GatewaySimulator) -> None:
    """One byte every 0.5 s never trips a 2 s read timeout; the overall deadline cuts it."""
    simulator.trickle_interval = 0.5
    simulator.fail_next("custom", "trickle")
    started = time.monotonic()
    result = driver(simulator, timeout=2).send(SMS_OUT)
    elapsed = time.monotonic() - started
    assert not result.ok
    assert result.retryable
    assert result.error == "no complete answer within 2 s"
    assert elapsed < 3.0  # the deadline, give or take one trickled read
    simulator.wait_idle(timeout=3)


def test_huge_answer_is_cut_off_at_the_size_cap(simulator: GatewaySimulator) -> None:
    """A 300 MB answer costs at most the cap in memory and fails like garbage (retryable)."""
    simulator.huge_bytes = 300 * 1024 * 1024
    simulator.fail_next("custom", "huge")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = driver(simulator, timeout=10).send(SMS_OUT)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert not result.ok
    assert result.retryable
    assert result.error == f"answer larger than {MAX_ANSWER_BYTES // 1024} KiB"
    assert grown_kib < 50 * 1024
    simulator.wait_idle(timeout=3)


def test_connection_is_kept_alive_after_a_normal_answer(simulator: GatewaySimulator) -> None:
    """Streaming the answer must not cost the kept-alive connection: two sends, one socket."""
    sender = driver(simulator, timeout=5)
    assert sender.send(SMS_OUT).ok
    assert sender.send(SMS_OUT).ok
    first, second = simulator.requests_for("custom")
    assert first.client_address == second.client_address
    assert first.json == {"to": "+27831234567", "text": "bounded"}
