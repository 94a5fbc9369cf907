"""``flask sms ...`` commands, run through Flask's CLI runner and a real worker process."""

from __future__ import annotations

import json

from flask import Flask

from tests.helpers import custom_gateway, stop_worker, worker_process
from tests.simulator import GatewaySimulator


def run(app: Flask, *args: str):
    return app.test_cli_runner().invoke(args=["sms", *args])


def test_gateways_import_then_export(app: Flask, tmp_path) -> None:
    source = tmp_path / "gateways.json"
    source.write_text(
        json.dumps(
            [
                {
                    "name": "BurstSMS",
                    "type": "custom",
                    "url": "https://api.transmitsms.com/send-sms.json",
                    "method": "POST",
                    "content_type": "form",
                    "payload": "to={phone_digits}&message={message}&from={from}",
                    "success_response": '"code":"SUCCESS"',
                    "headers": [{"name": "Authorization", "value": "Basic {api_key}"}],
                    "api_key": "burst-key-abcdef0123",
                    "from_number": "Venue",
                }
            ]
        )
    )
    result = run(app, "gateways", "import", str(source))
    assert result.exit_code == 0, result.output
    assert "Imported 1 gateway(s): BurstSMS" in result.output
    result = run(app, "gateways", "export")
    assert result.exit_code == 0
    exported = json.loads(result.output)
    assert exported[0]["headers"] == [{"name": "Authorization", "value": "Basic {api_key}"}]
    assert exported[0]["api_key"] == ""
    assert "burst-key" not in result.output


def test_gateways_import_reports_every_problem(app: Flask, tmp_path) -> None:
    source = tmp_path / "bad.json"
    source.write_text(
        json.dumps(
            [{"name": "", "type": "custom", "method": "GET", "content_type": "json", "url": "nope"}]
        )
    )
    result = run(app, "gateways", "import", str(source))
    assert result.exit_code == 1
    assert "Nothing imported" in result.output
    assert "1.name: Name is required." in result.output
    assert "1.content_type: A JSON payload needs the POST method" in result.output
    assert "1.url: URL must be an absolute http:// or https:// URL." in result.output
    source.write_text("[{")
    result = run(app, "gateways", "import", str(source))
    assert result.exit_code == 1 and "is not valid JSON" in result.output


def test_send_with_wait_reports_the_final_status(
    app: Flask, simulator: GatewaySimulator, service_urls: tuple[str, str]
) -> None:
    with app.app_context():
        custom_gateway(app, simulator, "cli")
    worker = worker_process(*service_urls)
    try:
        result = run(app, "send", "+27 83 123 4567", "From the CLI", "--wait", "20")
        assert result.exit_code == 0, result.output
        assert "to +27831234567: queued" in result.output
        assert result.output.strip().endswith(": sent")
        assert simulator.requests_for("custom")[0].json["text"] == "From the CLI"

        simulator.set_custom_response(400, '{"error":"rejected"}')
        result = run(app, "send", "+27831234567", "Refused", "--wait", "20")
        assert result.exit_code == 1
        assert ": failed (cli: HTTP 400)" in result.output
    finally:
        stop_worker(worker)


def test_send_refuses_a_bad_number(app: Flask) -> None:
    result = run(app, "send", "12", "x")
    assert result.exit_code == 1
    assert "country code" in result.output


def test_sweep_command(app: Flask) -> None:
    result = run(app, "sweep")
    assert result.exit_code == 0
    assert "recovered 0 stale send(s), re-enqueued 0 of 0 lost message(s)" in result.output
