"""Which gateways serve a location, changed from the location's side (``sms.*location*``)."""

from __future__ import annotations

import pytest
from flask import Flask

from sms_ext import SMS, Gateway, GatewayConfigError
from tests.helpers import add_gateway

KEYS = ["cafe", "hotel", "pool"]


def sandbox(app: Flask, name: str, locations: list[str] | None = None) -> Gateway:
    return add_gateway(app, name=name, type="sandbox", locations=locations or [])


def lists(app: Flask) -> dict[str, list[str]]:
    session = app.extensions["sms"].session
    session.expire_all()
    return {g.name: list(g.locations) for g in session.scalars(Gateway.in_order())}


def served(sms: SMS, key: str) -> list[str]:
    return [g.name for g in sms.gateways_for_location(key)]


def test_choosing_a_subset_changes_only_that_location(app_ctx: Flask, sms: SMS) -> None:
    everywhere = sandbox(app_ctx, "everywhere")
    hotel_only = sandbox(app_ctx, "hotel-only", ["hotel"])
    sandbox(app_ctx, "cafe-and-pool", ["cafe", "pool"])
    before = {key: served(sms, key) for key in KEYS}
    assert before["cafe"] == ["everywhere", "cafe-and-pool"]

    sms.set_location_gateways("cafe", [hotel_only.id], all_locations=KEYS)
    assert served(sms, "cafe") == ["hotel-only"]
    for key in ("hotel", "pool"):  # the others keep what they had
        assert served(sms, key) == before[key]
    assert lists(app_ctx) == {
        "everywhere": ["hotel", "pool"],  # no longer open to all: listed explicitly
        "hotel-only": ["hotel", "cafe"],
        "cafe-and-pool": ["pool"],
    }

    # Ticked again for every location: back to "every location", so new locations get it.
    sms.set_location_gateways("cafe", [everywhere.id, hotel_only.id], all_locations=KEYS)
    assert lists(app_ctx)["everywhere"] == []
    assert served(sms, "new-place") == ["everywhere"]


def test_none_ticked_means_every_gateway(app_ctx: Flask, sms: SMS) -> None:
    sandbox(app_ctx, "everywhere")
    sandbox(app_ctx, "hotel-only", ["hotel"])
    sms.set_location_gateways("cafe", [], all_locations=KEYS)
    assert served(sms, "cafe") == ["everywhere", "hotel-only"]
    assert lists(app_ctx) == {"everywhere": [], "hotel-only": ["hotel", "cafe"]}


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        ("unknown", "No gateway with id"),
        ("only-cafe", "serves no other location"),
    ],
)
def test_refusals_change_nothing(app_ctx: Flask, sms: SMS, ids: str, message: str) -> None:
    everywhere = sandbox(app_ctx, "everywhere")
    sandbox(app_ctx, "cafe-only", ["cafe"])
    wanted = [everywhere.id + 1000] if ids == "unknown" else [everywhere.id]
    before = lists(app_ctx)
    with pytest.raises(GatewayConfigError) as refused:
        sms.set_location_gateways("cafe", wanted, all_locations=KEYS)
    assert message in refused.value.errors["gateways"]
    app_ctx.extensions["sms"].session.rollback()
    assert lists(app_ctx) == before


def test_a_single_location_cannot_drop_a_gateway_open_to_all(app_ctx: Flask, sms: SMS) -> None:
    sandbox(app_ctx, "everywhere")
    other = sandbox(app_ctx, "other", ["hotel"])
    with pytest.raises(GatewayConfigError, match="serves no other location"):
        sms.set_location_gateways("cafe", [other.id], all_locations=["cafe"])


def test_rename_carries_the_gateways_over(app_ctx: Flask, sms: SMS) -> None:
    sandbox(app_ctx, "everywhere")
    sandbox(app_ctx, "cafe-pool", ["cafe", "pool"])
    sandbox(app_ctx, "both-names", ["cafe", "cafe-2"])
    sms.rename_location("cafe", "cafe-2")
    assert lists(app_ctx) == {
        "everywhere": [],
        "cafe-pool": ["cafe-2", "pool"],
        "both-names": ["cafe-2"],
    }
    assert served(sms, "cafe") == ["everywhere"]
