"""The HTTP exchange bounds a gateway's answer in time and size, whatever the gateway does."""

from __future__ import annotations

import resource
import time

import pytest
import requests

from sms_ext.gateways import OutgoingSMS
from sms_ext.gateways.custom import CustomDriver
from sms_ext.gateways.egress import GuardedAdapter, literal_refusal, refused_address
from sms_ext.gateways.http import MAX_ANSWER_BYTES, http_session
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


# -- the egress guard (SMS_GATEWAY_DENY_PRIVATE) ----------------------------------------------


def guarded_driver(url: str) -> CustomDriver:
    config = {"url": url, "content_type": "json", "payload": '{"text": "{message}"}'}
    return CustomDriver(CustomDriver.validate(config), http_session(4, deny_private=True))


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_guard_refuses_a_private_peer_before_sending(
    simulator: GatewaySimulator, host: str
) -> None:
    """``localhost`` needs DNS: the check is on the address connected to, not on the name."""
    url = f"{simulator.url}/custom/send".replace("127.0.0.1", host)
    result = guarded_driver(url).send(SMS_OUT)
    assert not result.ok
    assert not result.retryable
    assert result.error.startswith(f"refused: {host} is at the private address 127.0.0.1")
    assert "SMS_GATEWAY_DENY_PRIVATE" in result.error
    assert simulator.requests_for("custom") == []


def test_guard_off_by_default(simulator: GatewaySimulator) -> None:
    config = {"url": f"{simulator.url}/custom/send", "payload": "text={message}"}
    assert CustomDriver(CustomDriver.validate(config), http_session(4)).send(SMS_OUT).ok


def test_guard_also_covers_requests_built_by_lua(simulator: GatewaySimulator) -> None:
    script = f'function build_request(msg) return {{url = "{simulator.url}/custom/lua"}} end'
    config = {"url": "https://sms.example.com/send", "lua_enabled": True, "lua_script": script}
    sender = CustomDriver(CustomDriver.validate(config), http_session(4, deny_private=True))
    result = sender.send(SMS_OUT)
    assert (result.ok, result.retryable) == (False, False)
    assert "private address 127.0.0.1" in result.error
    assert simulator.requests_for("custom") == []


@pytest.mark.parametrize(
    ("address", "refused"),
    [
        ("127.0.0.1", True),
        ("10.1.2.3", True),
        ("172.16.0.9", True),
        ("192.168.1.1", True),
        ("169.254.169.254", True),
        ("100.64.0.1", True),
        ("0.0.0.0", True),
        ("::1", True),
        ("fe80::1%eth0", True),
        ("fd00::1", True),
        ("::ffff:127.0.0.1", True),
        ("8.8.8.8", False),
        ("2606:4700:4700::1111", False),
    ],
)
def test_which_addresses_are_private(address: str, refused: bool) -> None:
    assert refused_address(address) is refused


def test_literal_private_urls_are_named_at_save_time() -> None:
    assert "private address 169.254.169.254" in str(
        literal_refusal("http://169.254.169.254/latest/meta-data", "URL")
    )
    assert "this machine (localhost)" in str(literal_refusal("http://localhost:8000/x", "URL"))
    assert literal_refusal("http://[::1]:8000/x", "URL") is not None
    assert literal_refusal("https://api.twilio.com", "Base URL") is None
    assert literal_refusal("https://internal.example/x", "URL") is None  # checked on connect


def test_guard_checks_the_proxy_when_one_is_used(simulator: GatewaySimulator) -> None:
    """A proxy from the environment (here: the simulator on 127.0.0.1) is connected to, so it
    is what the guard checks; the gateway's own host is the proxy's business."""
    session = requests.Session()
    session.mount("http://", GuardedAdapter())
    session.proxies = {"http": simulator.url}
    config = {"url": "http://gateway.example/send", "payload": "text={message}"}
    result = CustomDriver(CustomDriver.validate(config), session).send(SMS_OUT)
    assert (result.ok, result.retryable) == (False, False)
    assert "private address 127.0.0.1" in result.error
    assert simulator.requests == []
