"""Inbound STOP/START replies through a custom gateway's generic inbound webhook."""

from __future__ import annotations

import logging

import pytest
from flask import Flask
from sqlalchemy import func, select

from sms_ext.campaigns import optout
from sms_ext.models import Gateway, OptOut
from tests.helpers import custom_gateway
from tests.simulator import GatewaySimulator

PHONE = "+27831234567"


def inbound(gateway: Gateway) -> str:
    return f"/sms/hooks/custom/{gateway.id}/{gateway.hook_token}/inbound"


@pytest.mark.parametrize("word", ["STOP", "stop please", "Unsubscribe", "STOPALL", "  Stop!"])
def test_stop_words_opt_the_sender_out(
    app_ctx: Flask, simulator: GatewaySimulator, word: str
) -> None:
    gateway = custom_gateway(app_ctx, simulator, "gw")
    answer = app_ctx.test_client().post(inbound(gateway), data={"from": PHONE, "text": word})
    assert (answer.status_code, answer.text) == (200, "opted_out\n")
    entry = app_ctx.extensions["sms"].session.get(OptOut, PHONE)
    assert entry is not None and (entry.source, entry.gateway_id) == ("stop", gateway.id)


def test_field_names_come_from_the_gateway_and_numbers_are_normalised(
    app_ctx: Flask, simulator: GatewaySimulator
) -> None:
    gateway = custom_gateway(app_ctx, simulator, "gw")
    gateway.hooks = {"fields": {"from": "msisdn", "text": "message.body"}}
    app_ctx.extensions["sms"].session.commit()
    answer = app_ctx.test_client().post(
        inbound(gateway), json={"msisdn": "0027 83 123 4567", "message": {"body": "STOP"}}
    )
    assert answer.text == "opted_out\n"
    assert optout.contains(app_ctx.extensions["sms"].session, PHONE)


def test_start_undoes_only_a_stop(app_ctx: Flask, simulator: GatewaySimulator) -> None:
    gateway = custom_gateway(app_ctx, simulator, "gw")
    client = app_ctx.test_client()
    session = app_ctx.extensions["sms"].session
    other = "+27831234568"
    optout.add(session, other, optout.Source.ADMIN)
    session.commit()

    client.get(inbound(gateway), query_string={"from": PHONE, "text": "STOP"})
    client.get(inbound(gateway), query_string={"from": PHONE, "text": "STOP"})  # repeated
    assert session.scalar(select(func.count()).select_from(OptOut)) == 2
    start = client.get(inbound(gateway), query_string={"from": PHONE, "text": "start"})
    admin_made = client.get(inbound(gateway), query_string={"from": other, "text": "START"})

    assert (start.text, admin_made.text) == ("opted_in\n", "nothing\n")
    session.expire_all()
    assert not optout.contains(session, PHONE)
    assert optout.contains(session, other)  # an admin's opt-out is not undone by a reply


def test_other_texts_and_bad_senders_change_nothing(
    app_ctx: Flask, simulator: GatewaySimulator
) -> None:
    gateway = custom_gateway(app_ctx, simulator, "gw")
    client = app_ctx.test_client()
    for sender, text in ((PHONE, "Thanks!"), (PHONE, ""), ("not a number", "STOP"), ("+1", "STOP")):
        answer = client.post(inbound(gateway), data={"from": sender, "text": text})
        assert (answer.status_code, answer.text) == (200, "nothing\n")
    missing = client.post(inbound(gateway), data={"text": "STOP"})
    assert missing.status_code == 400 and "'from'" in missing.text
    assert app_ctx.extensions["sms"].session.scalar(select(func.count()).select_from(OptOut)) == 0


def test_each_stop_is_logged_with_the_number_masked(
    app_ctx: Flask, simulator: GatewaySimulator, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = custom_gateway(app_ctx, simulator, "gw")
    with caplog.at_level(logging.INFO, logger="sms_ext"):
        app_ctx.test_client().post(inbound(gateway), data={"from": PHONE, "text": "STOP"})
    assert "inbound STOP" in caplog.text and "4567" in caplog.text
    assert PHONE not in caplog.text and PHONE[1:] not in caplog.text


def test_wrong_token_is_404_and_changes_nothing(
    app_ctx: Flask, simulator: GatewaySimulator
) -> None:
    gateway = custom_gateway(app_ctx, simulator, "gw")
    path = f"/sms/hooks/custom/{gateway.id}/{'a' * 43}/inbound"
    answer = app_ctx.test_client().post(path, data={"from": PHONE, "text": "STOP"})
    assert answer.status_code == 404
    assert not optout.contains(app_ctx.extensions["sms"].session, PHONE)
