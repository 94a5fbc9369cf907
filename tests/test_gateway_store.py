"""Saving, importing and exporting gateways: validation, encrypted secrets, all-or-nothing."""

from __future__ import annotations

import json

import pytest
from flask import Flask
from sqlalchemy import func, select

from sms_ext import Gateway, GatewayConfigError
from sms_ext.gateways.store import export_gateways, gateway_config, import_gateways, save_gateway
from sms_ext.gateways.vault import Vault, VaultError

TWILIO = {
    "name": "Twilio main",
    "type": "twilio",
    "account_sid": "AC" + "a" * 32,
    "api_key": "SK" + "b" * 32,
    "api_secret": "twilio-api-secret-123456",
    "from_number": "+27831234567",
}


def state(app: Flask):
    return app.extensions["sms"]


def test_secrets_are_encrypted_and_kept_when_left_blank(app_ctx: Flask) -> None:
    s = state(app_ctx)
    gateway = save_gateway(s.session, s.vault, TWILIO)
    s.session.commit()
    assert "twilio-api-secret" not in gateway.secrets_sealed
    assert "api_secret" not in gateway.settings
    assert gateway_config(gateway, s.vault)["api_secret"] == TWILIO["api_secret"]
    save_gateway(s.session, s.vault, {**TWILIO, "api_secret": "", "from_number": "Venue"}, gateway)
    s.session.commit()
    config = gateway_config(gateway, s.vault)
    assert (config["api_secret"], config["from_number"]) == (TWILIO["api_secret"], "Venue")


def test_new_gateways_go_last(app_ctx: Flask) -> None:
    s = state(app_ctx)
    first = save_gateway(s.session, s.vault, TWILIO)
    second = save_gateway(s.session, s.vault, {**TWILIO, "name": "Twilio backup"})
    s.session.commit()
    assert second.priority > first.priority


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"name": ""}, "name", "Name is required."),
        ({"name": "x" * 81}, "name", "at most 80"),
        ({"type": "carrier-pigeon"}, "type", "Unknown gateway type 'carrier-pigeon'"),
        ({"priority": "first"}, "priority", "whole number"),
        ({"account_sid": "AC123"}, "account_sid", "Account SID"),
        ({"api_secret": ""}, "api_secret", "required"),
        ({"locations": 5}, "locations", "list of location keys"),
        ({"max_per_second": 0}, "max_per_second", "Max messages per second must be a whole"),
        ({"max_per_second": True}, "max_per_second", "whole number from 1 to 100,000"),
        ({"max_in_flight": "1.5"}, "max_in_flight", "Max requests at once must be a whole"),
        ({"max_in_flight": [3]}, "max_in_flight", "or blank for no limit"),
    ],
)
def test_bad_gateway_data_is_refused(app_ctx: Flask, data: dict, field: str, message: str) -> None:
    s = state(app_ctx)
    with pytest.raises(GatewayConfigError) as caught:
        save_gateway(s.session, s.vault, {**TWILIO, **data})
    assert message in caught.value.errors[field]


def test_duplicate_name_is_refused(app_ctx: Flask) -> None:
    s = state(app_ctx)
    save_gateway(s.session, s.vault, TWILIO)
    s.session.commit()
    with pytest.raises(GatewayConfigError) as caught:
        save_gateway(s.session, s.vault, TWILIO)
    assert caught.value.errors["name"] == "A gateway named 'Twilio main' already exists."


def test_import_is_all_or_nothing_and_export_round_trips(app_ctx: Flask) -> None:
    s = state(app_ctx)
    custom = {
        "name": "Clickatell",
        "type": "custom",
        "url": "https://platform.clickatell.com/messages/http/send?apiKey={api_key}",
        "method": "GET",
        "content_type": "form",
        "payload": "to={phone_digits}&content={message}",
        "success_response": '"accepted":true',
        "api_key": "clickatell-key-0123456789",
        "locations": "cafe, bar",
    }
    broken = {
        **custom,
        "name": "Broken",
        "payload": '{"x": "{nope}"}',
        "content_type": "json",
        "method": "POST",
    }
    with pytest.raises(GatewayConfigError) as caught:
        import_gateways(s.session, s.vault, [TWILIO, custom, broken])
    assert "3.payload" in caught.value.errors
    s.session.rollback()
    assert s.session.scalar(select(func.count()).select_from(Gateway)) == 0

    import_gateways(s.session, s.vault, [TWILIO, custom])
    s.session.commit()
    exported = export_gateways(s.session)
    assert [g["name"] for g in exported] == ["Twilio main", "Clickatell"]
    assert exported[1]["locations"] == ["cafe", "bar"]
    assert exported[1]["api_key"] == "" and exported[0]["api_secret"] == ""
    assert "clickatell-key" not in json.dumps(exported)
    # Importing the export again updates by name and keeps the stored secrets.
    import_gateways(s.session, s.vault, exported)
    s.session.commit()
    clickatell = s.session.scalar(select(Gateway).where(Gateway.name == "Clickatell"))
    assert gateway_config(clickatell, s.vault)["api_key"] == "clickatell-key-0123456789"
    assert s.session.scalar(select(func.count()).select_from(Gateway)) == 2


def test_import_needs_a_list(app_ctx: Flask) -> None:
    s = state(app_ctx)
    with pytest.raises(GatewayConfigError, match="JSON list"):
        import_gateways(s.session, s.vault, {"name": "x"})


def test_a_changed_key_is_reported_not_crashed() -> None:
    sealed = Vault("first-key-0123456789").seal({"api_secret": "s3cret"})
    with pytest.raises(VaultError, match="SMS_ENCRYPTION_KEY"):
        Vault("other-key-0123456789").open(sealed)


def test_limits_are_saved_exported_and_imported(app_ctx: Flask) -> None:
    s = state(app_ctx)
    limited = {**TWILIO, "max_per_second": "10", "max_in_flight": 4.0}
    gateway = save_gateway(s.session, s.vault, limited)
    save_gateway(s.session, s.vault, {**TWILIO, "name": "Unlimited", "max_per_second": ""})
    s.session.commit()
    assert (gateway.max_per_second, gateway.max_in_flight) == (10, 4)
    exported = export_gateways(s.session)
    assert [(g["max_per_second"], g["max_in_flight"]) for g in exported] == [(10, 4), (None, None)]
    exported[0]["max_in_flight"] = 2
    exported[1]["max_per_second"] = 5
    import_gateways(s.session, s.vault, exported)
    s.session.commit()
    s.session.expire_all()
    stored = {
        g.name: (g.max_per_second, g.max_in_flight) for g in s.session.scalars(select(Gateway))
    }
    assert stored == {"Twilio main": (10, 2), "Unlimited": (5, None)}
    with pytest.raises(GatewayConfigError) as caught:
        import_gateways(s.session, s.vault, [exported[0], {**exported[1], "max_in_flight": -3}])
    assert list(caught.value.errors) == ["2.max_in_flight"]
