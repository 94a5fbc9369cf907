"""The custom HTTP gateway against the simulator: every hard character arrives as written."""

from __future__ import annotations

import hashlib
import hmac
import time
from pathlib import Path

import pytest
import requests

from sms_ext import GatewayConfigError
from sms_ext.gateways import OutgoingSMS
from sms_ext.gateways.custom import CustomDriver
from tests.simulator import GatewaySimulator

HARD = "Say \"hi\" \\ back\nline2 & a=b + c # 100% 😀 Привет 你好 'q' <tag> ?x=1"
SMS_OUT = OutgoingSMS(reference="42", to="+27831234567", body=HARD)


def driver(sim: GatewaySimulator, **config: object) -> CustomDriver:
    base = {"url": f"{sim.url}/custom/send", "method": "POST", "content_type": "json"}
    return CustomDriver(CustomDriver.validate({**base, **config}), requests.Session())


def only_request(sim: GatewaySimulator):
    (recorded,) = sim.requests_for("custom")
    return recorded


def test_json_payload_carries_every_character(simulator: GatewaySimulator) -> None:
    template = '{"to": "{phone}", "text": "{message}", "meta": {"ref": "{reference}", "n": 1}}'
    result = driver(simulator, payload=template).send(SMS_OUT)
    assert result.ok, result.error
    recorded = only_request(simulator)
    assert recorded.json == {"to": "+27831234567", "text": HARD, "meta": {"ref": "42", "n": 1}}
    assert recorded.headers["content-type"].startswith("application/json")


def test_form_payload_carries_every_character(simulator: GatewaySimulator) -> None:
    sender = driver(
        simulator, content_type="form", payload="to={phone_digits}&text={message}&from=+Venue"
    )
    assert sender.send(SMS_OUT).ok
    recorded = only_request(simulator)
    assert recorded.form == {"to": ["27831234567"], "text": [HARD], "from": ["+Venue"]}
    assert recorded.headers["content-type"] == "application/x-www-form-urlencoded"


def test_form_template_one_pair_per_line(simulator: GatewaySimulator) -> None:
    sender = driver(simulator, content_type="form", payload="to={phone}\ntext={message}\n")
    assert sender.send(SMS_OUT).ok
    assert only_request(simulator).form == {"to": ["+27831234567"], "text": [HARD]}


def test_get_query_carries_every_character(simulator: GatewaySimulator) -> None:
    sender = driver(
        simulator, method="GET", content_type="form", payload="to={phone}&content={message}"
    )
    assert sender.send(SMS_OUT).ok
    recorded = only_request(simulator)
    assert recorded.method == "GET"
    assert recorded.query == {"to": ["+27831234567"], "content": [HARD]}
    assert recorded.body == b""


def test_url_placeholders_are_percent_encoded(simulator: GatewaySimulator) -> None:
    url = f"{simulator.url}/custom/{{phone_digits}}/send?to={{phone}}&text={{message}}&k=v"
    assert driver(simulator, url=url, payload="").send(SMS_OUT).ok
    recorded = only_request(simulator)
    assert recorded.path == "/custom/27831234567/send"
    assert recorded.query == {"to": ["+27831234567"], "text": [HARD], "k": ["v"]}


def test_success_text_and_provider_id(simulator: GatewaySimulator) -> None:
    simulator.set_custom_response(200, '{"messages":[{"apiMessageId":"id1002","accepted":true}]}')
    ok = driver(simulator, payload='{"t":"{message}"}', success_response='"accepted":true')
    result = ok.send(SMS_OUT)
    assert (result.ok, result.provider_id, result.http_status) == (True, "id1002", 200)

    simulator.set_custom_response(200, '{"messages":[],"error":"bad number"}')
    result = ok.send(SMS_OUT)
    assert not result.ok
    assert "success text" in result.error
    assert "bad number" in result.response_excerpt


@pytest.mark.parametrize(
    ("kind", "status", "retryable"),
    [("500", 500, True), ("503", 503, True), ("429", 429, True), ("garbage", 200, True)],
)
def test_faults(simulator: GatewaySimulator, kind: str, status: int, retryable: bool) -> None:
    simulator.fail_next("custom", kind, retry_after=7 if kind == "429" else None)
    sender = driver(simulator, payload='{"t":"{message}"}', success_response='"status":"ok"')
    result = sender.send(SMS_OUT)
    assert not result.ok
    assert result.http_status == status
    # Garbage under a 200 is "not confirmed": worth another try later, like a 5xx.
    assert result.retryable is retryable
    if kind == "429":
        assert result.retry_after == 7


def test_timeout_is_retryable(simulator: GatewaySimulator) -> None:
    simulator.timeout_seconds = 1.0
    simulator.fail_next("custom", "timeout")
    result = driver(simulator, payload='{"t":"{message}"}', timeout=0.3).send(SMS_OUT)
    assert (result.ok, result.retryable, result.http_status) == (False, True, None)
    assert "0.3 s" in result.error


def test_secrets_in_headers_and_url_are_masked(simulator: GatewaySimulator) -> None:
    secret = "sk_live_abcdefghijklmnop"
    sender = driver(
        simulator,
        url=f"{simulator.url}/custom/send?apiKey={{api_key}}",
        payload='{"t":"{message}","s":"{api_secret}"}',
        api_key=secret,
        api_secret="another-secret-value",
        headers=[
            {"name": "X-Auth", "value": "Bearer {api_key}"},
            {"name": "X-Venue", "value": "7"},
        ],
    )
    result = sender.send(SMS_OUT)
    assert result.ok
    recorded = only_request(simulator)
    assert recorded.headers["x-auth"] == f"Bearer {secret}"
    assert recorded.query == {"apiKey": [secret]}
    assert recorded.json["s"] == "another-secret-value"
    for text in (result.request_summary, result.response_excerpt, result.error):
        assert secret not in text
        assert "another-secret-value" not in text
    assert "X-Venue: 7" in result.request_summary


@pytest.mark.parametrize(
    ("config", "field", "message"),
    [
        ({"method": "GET", "content_type": "json"}, "content_type", "needs the POST method"),
        ({"payload": '{"to": {phone}}'}, "payload", "Placeholders go inside JSON strings"),
        ({"payload": '{"to": "{phone}",}'}, "payload", "not valid JSON"),
        ({"payload": '{"to": "{telephone}"}'}, "payload", "Unknown placeholder {telephone}"),
        ({"content_type": "form", "payload": "to={phone}&oops"}, "payload", "name=value"),
        ({"url": "ftp://example.com/x"}, "url", "http:// or https://"),
        ({"url": ""}, "url", "URL is required"),
        ({"url": "https://x.example/{nope}"}, "url", "Unknown placeholder {nope}"),
        ({"method": "PUT"}, "method", "GET or POST"),
        ({"timeout": "soon"}, "timeout", "number of seconds"),
        ({"timeout": 600}, "timeout", "between"),
        ({"headers": [{"name": "X-A", "value": "1\r\nX-B: 2"}]}, "headers", "line breaks"),
        ({"headers": [{"name": "Bad Name", "value": "1"}]}, "headers", "not a valid header name"),
        ({"headers": [{"name": "X-A", "value": "{who}"}]}, "headers", "unknown placeholder"),
        ({"content_type": "xml"}, "content_type", "form (x-www-form-urlencoded) or JSON"),
    ],
)
def test_bad_configs_are_refused(config: dict, field: str, message: str) -> None:
    base = {"url": "https://sms.example.com/send", "method": "POST", "content_type": "json"}
    with pytest.raises(GatewayConfigError) as caught:
        CustomDriver.validate({**base, **config})
    assert field in caught.value.errors
    assert message in caught.value.errors[field]


def test_validate_normalises() -> None:
    config = CustomDriver.validate(
        {
            "url": " https://sms.example.com/send ",
            "method": "post",
            "content_type": "application/json",
            "payload": ' {"t": "{message}"} ',
            "verify_ssl": "off",
            "timeout": "5",
        }
    )
    assert config["url"] == "https://sms.example.com/send"
    assert (config["method"], config["content_type"], config["verify_ssl"]) == (
        "POST",
        "json",
        False,
    )
    assert config["timeout"] == 5.0
    assert config["payload"] == '{"t": "{message}"}'


LUA = """
function build_request(msg)
  return {
    url = msg.url .. "?ref=" .. url_encode(msg.reference),
    headers = {
      ["Content-Type"] = "application/json",
      ["Authorization"] = "Basic " .. base64_encode(msg.api_key .. ":" .. msg.api_secret),
    },
    body = json_encode({recipient = msg.phone_digits, text = msg.message}),
  }
end

function parse_response(resp)
  if resp.status == 200 and resp.json and resp.json.status == "ok" then
    return {ok = true, id = resp.json.messageId}
  end
  return {ok = false, error = "provider said " .. resp.body, retryable = resp.status >= 500}
end
"""


def test_lua_script_builds_the_request_and_reads_the_answer(simulator: GatewaySimulator) -> None:
    simulator.set_custom_response(200, '{"status":"ok","messageId":"lua-77"}')
    sender = driver(simulator, lua_script=LUA, api_key="lua-user", api_secret="lua-password-1")
    result = sender.send(SMS_OUT)
    assert result.ok, result.error
    recorded = only_request(simulator)
    assert recorded.json == {"recipient": "27831234567", "text": HARD}
    assert recorded.query == {"ref": ["42"]}
    assert recorded.basic_auth == ("lua-user", "lua-password-1")
    assert result.provider_id == "lua-77"
    assert "lua-password-1" not in result.request_summary


def test_lua_script_failures(simulator: GatewaySimulator) -> None:
    sender = driver(simulator, lua_script=LUA, api_key="k", api_secret="s")
    simulator.set_custom_response(400, '{"status":"bad number"}')
    result = sender.send(SMS_OUT)
    assert (result.ok, result.retryable) == (False, False)
    assert result.error == 'provider said {"status":"bad number"}'
    simulator.set_custom_response(503, "busy")
    result = sender.send(SMS_OUT)
    assert (result.ok, result.retryable, result.error) == (False, True, "provider said busy")


def test_lua_script_that_hangs_fails_the_send_cleanly(simulator: GatewaySimulator) -> None:
    hanging = "function build_request(msg) while true do end end"
    result = driver(simulator, lua_script=hanging).send(SMS_OUT)
    assert not result.ok
    assert result.error == "Request could not be built: script ran too long"
    assert simulator.requests_for("custom") == []


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ("function build_request(msg) return {", "Lua script: line 1:"),
        ("x = 1", "must define build_request or parse_response"),
        ("os.execute('true')", "Lua script:"),
    ],
)
def test_bad_lua_scripts_are_refused(script: str, message: str) -> None:
    with pytest.raises(GatewayConfigError) as caught:
        CustomDriver.validate(
            {"url": "https://sms.example.com/send", "method": "POST", "lua_script": script}
        )
    assert message in caught.value.errors["lua_script"]


# -- Lua: toggle, names, cfg, masking, the documented examples ---------------------------------

DOCS_LUA = Path(__file__).resolve().parent.parent / "docs" / "lua"


def scripted(sim: GatewaySimulator, script: str, **config: object) -> CustomDriver:
    return driver(sim, lua_enabled=True, lua_script=script, **config)


def test_msg_carries_the_placeholder_names_and_cfg_the_secrets(simulator: GatewaySimulator) -> None:
    script = """
    function build_request(msg, cfg)
      return {body = json_encode({
        phone = url_encode(msg.phone), digits = msg.phone_digits, message = msg.message,
        from = msg.from, reference = msg.reference, key = cfg.api_key, secret = cfg.api_secret,
        old_to = msg.to, old_from = msg.from_number,
      })}
    end
    """
    sender = scripted(
        simulator, script, api_key="key-1", api_secret="secret-1", from_number="Cafe", payload=""
    )
    assert sender.send(SMS_OUT).ok
    assert only_request(simulator).json == {
        "phone": "%2B27831234567",
        "digits": "27831234567",
        "message": HARD,
        "from": "Cafe",
        "reference": "42",
        "key": "key-1",
        "secret": "secret-1",
        "old_to": "+27831234567",
        "old_from": "Cafe",
    }


def test_a_script_switched_off_is_kept_but_not_run(simulator: GatewaySimulator) -> None:
    breaking = "function build_request(msg) error('must not run') end"
    config = CustomDriver.validate(
        {
            "url": f"{simulator.url}/custom/send",
            "content_type": "json",
            "payload": '{"text": "{message}"}',
            "lua_enabled": False,
            "lua_script": breaking,
        }
    )
    assert config["lua_script"] == breaking and config["lua_enabled"] is False
    assert CustomDriver(config, requests.Session()).send(SMS_OUT).ok
    assert only_request(simulator).json == {"text": HARD}
    with pytest.raises(GatewayConfigError) as caught:
        CustomDriver.validate({"url": "https://sms.example.com/send", "lua_enabled": True})
    assert "Write a script" in caught.value.errors["lua_script"]


def test_a_script_error_never_carries_a_secret(simulator: GatewaySimulator) -> None:
    secret = 'se"cr\\et/+&=1'
    leaks = [
        "error(cfg.api_secret)",
        "error(json_encode({s = cfg.api_secret}))",
        "error(url_encode(cfg.api_secret))",
        "error(base64_encode('user:' .. cfg.api_secret))",
    ]
    for leak in leaks:
        result = scripted(
            simulator, f"function build_request(msg, cfg) {leak} end", api_secret=secret
        ).send(SMS_OUT)
        assert not result.ok
        assert result.error.startswith("Request could not be built: line 1:"), result.error
        assert "****" in result.error
        for spelling in (secret, 'se\\"cr', "cr%5Cet", "ZXQvKyY9"):
            assert spelling not in result.error, (leak, result.error)


def test_a_request_using_a_secret_needs_it(simulator: GatewaySimulator) -> None:
    for where in (
        {"payload": '{"key": "{api_key}"}'},
        {"url": "https://sms.example.com/send?key={api_secret}"},
        {"headers": [{"name": "Authorization", "value": "Bearer {api_key}"}]},
    ):
        with pytest.raises(GatewayConfigError) as caught:
            CustomDriver.validate({"url": "https://sms.example.com/send", **where})
        field = "api_secret" if "api_secret" in str(where) else "api_key"
        assert caught.value.errors[field].startswith(f"The request uses {{{field}}}: type the")


def test_documented_hmac_example_signs_what_it_sends(simulator: GatewaySimulator) -> None:
    script = (DOCS_LUA / "hmac_signed_request.lua").read_text()
    sender = scripted(
        simulator, script, api_key="key-7", api_secret="signing-secret-7", from_number="Cafe"
    )
    before = int(time.time())
    result = sender.send(SMS_OUT)
    assert result.ok, result.error
    recorded = only_request(simulator)
    timestamp = recorded.headers["x-timestamp"]
    expected = hmac.new(
        b"signing-secret-7", timestamp.encode() + b"." + recorded.body, hashlib.sha256
    ).hexdigest()
    assert recorded.headers["x-signature"] == expected
    assert recorded.headers["x-api-key"] == "key-7"
    assert before <= int(timestamp) <= time.time() + 1
    assert recorded.json == {"to": "+27831234567", "from": "Cafe", "text": HARD, "reference": "42"}
    assert "signing-secret-7" not in result.request_summary


@pytest.mark.parametrize(
    ("answer", "ok", "provider_id", "error", "retryable"),
    [
        ("OK 12345", True, "12345", "", False),
        ("ERR 102 Invalid number\n", False, None, "gateway error 102: Invalid number", False),
        ("ERR 503 Busy", False, None, "gateway error 503: Busy", True),
        (
            "<html>proxy error</html>",
            False,
            None,
            "unexpected answer: <html>proxy error</html>",
            True,
        ),
    ],
)
def test_documented_plain_text_example_reads_the_answer(
    simulator: GatewaySimulator,
    answer: str,
    ok: bool,
    provider_id: str | None,
    error: str,
    retryable: bool,
) -> None:
    script = (DOCS_LUA / "plain_text_answer.lua").read_text()
    simulator.set_custom_response(200, answer, {"Content-Type": "text/plain"})
    sender = scripted(simulator, script, payload='{"to": "{phone}", "text": "{message}"}')
    result = sender.send(SMS_OUT)
    assert (result.ok, result.provider_id, result.error, result.retryable) == (
        ok,
        provider_id,
        error,
        retryable,
    )
    assert only_request(simulator).json == {"to": "+27831234567", "text": HARD}
