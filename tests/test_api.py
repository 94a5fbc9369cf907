"""The public API as an integrator uses it: errors, transactions of send/send_bulk, gateways
saved and imported through the ``SMS`` object, gateway order, and the string enums."""

from __future__ import annotations

import inspect
from enum import StrEnum

import pytest
from flask import Flask
from sqlalchemy import func, select
from werkzeug.exceptions import HTTPException

import sms_ext
from sms_ext import (
    SMS,
    Gateway,
    GatewayConfigError,
    Kind,
    Message,
    MessageError,
    SMSError,
    Status,
    errors,
)
from sms_ext.gateways import lua_sandbox, vault
from sms_ext.gateways.store import gateway_config
from sms_ext.messages.outbox import MAX_BODY
from sms_ext.models import MESSAGES
from tests.conftest import drain
from tests.helpers import reload

TO = "+27831234567"

SANDBOX = {"name": "Sandbox", "type": "sandbox"}
TWILIO = {
    "name": "Twilio",
    "type": "twilio",
    "account_sid": "AC" + "a" * 32,
    "api_key": "SK" + "b" * 32,
    "api_secret": "twilio-api-secret-123456",
    "from_number": "+27831234567",
}


def count(app: Flask, model: type) -> int:
    session = app.extensions["sms"].session
    return session.scalar(select(func.count()).select_from(model))


def jobs(app: Flask) -> int:
    return app.extensions["sms"].queue.count


# -- errors ------------------------------------------------------------------------------------

ERRORS = {
    name: value
    for name, value in vars(errors).items()
    if inspect.isclass(value)
    and issubclass(value, BaseException)
    and value.__module__ == errors.__name__
}


def test_the_errors_module_has_the_documented_errors() -> None:
    assert set(ERRORS) == {
        "SMSError",
        "ConfigError",
        "MessageError",
        "PhoneNumberError",
        "GatewayConfigError",
        "TemplateError",
        "LuaScriptError",
        "VaultError",
        "OtpRateLimited",
        "OtpUnavailable",
        "CampaignError",
    }


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_every_error_is_an_sms_error_exported_from_sms_ext(name: str) -> None:
    error = ERRORS[name]
    assert issubclass(error, SMSError)
    assert getattr(sms_ext, name) is error
    assert name in sms_ext.__all__


def test_errors_keep_the_bases_older_code_catches() -> None:
    for error in (
        sms_ext.MessageError,
        sms_ext.PhoneNumberError,
        sms_ext.GatewayConfigError,
        sms_ext.TemplateError,
        sms_ext.CampaignError,
    ):
        assert issubclass(error, ValueError), error
    assert issubclass(sms_ext.ConfigError, RuntimeError)
    assert issubclass(sms_ext.OtpRateLimited, HTTPException)
    assert sms_ext.OtpRateLimited(30).code == 429
    assert sms_ext.OtpUnavailable().code == 503


def test_the_packages_raise_the_exported_classes() -> None:
    assert lua_sandbox.LuaScriptError is sms_ext.LuaScriptError
    assert vault.VaultError is sms_ext.VaultError
    with pytest.raises(SMSError):
        lua_sandbox.check_script("x x")
    sealed = vault.Vault("first-key-0123456789").seal({"api_secret": "s3cret"})
    with pytest.raises(SMSError):
        vault.Vault("other-key-0123456789").open(sealed)


# -- send: what it refuses -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "kind", "message"),
    [
        ("", Kind.PERSONAL, "The message is empty."),
        ("  \n\t ", Kind.PERSONAL, "The message is empty."),
        ("code\x00123", Kind.PERSONAL, "The message must not contain NUL characters."),
        ("x" * (MAX_BODY + 1), Kind.PERSONAL, f"longer than {MAX_BODY} characters"),
        ("hello", "spam", "Unknown message kind 'spam'"),
        ("hello", "OTP", "Unknown message kind 'OTP'"),
    ],
)
def test_send_refuses_bad_messages_with_a_message_error(
    app_ctx: Flask, sms: SMS, body: str, kind: str, message: str
) -> None:
    with pytest.raises(MessageError, match=message) as caught:
        sms.send(TO, body, kind=kind)
    assert isinstance(caught.value, SMSError)
    assert (count(app_ctx, Message), jobs(app_ctx)) == (0, 0)


def test_an_unknown_kind_error_lists_the_kinds(app_ctx: Flask, sms: SMS) -> None:
    with pytest.raises(MessageError) as caught:
        sms.send(TO, "hello", kind="spam")
    assert all(kind.value in str(caught.value) for kind in Kind)


def test_the_longest_body_is_accepted(app_ctx: Flask, sms: SMS) -> None:
    message = sms.send(TO, "x" * MAX_BODY)
    assert (message.status, len(message.body)) == (Status.QUEUED, MAX_BODY)


def test_send_bulk_checks_every_entry_before_writing(app_ctx: Flask, sms: SMS) -> None:
    recipients = [(TO, "fine"), ("+27831234568", "also fine"), (TO, "bad\x00")]
    with pytest.raises(MessageError, match="NUL"):
        sms.send_bulk(recipients)
    assert (count(app_ctx, Message), jobs(app_ctx)) == (0, 0)


# -- send and send_bulk: return values and transactions ---------------------------------------


def test_send_returns_the_committed_message(app_ctx: Flask, sms: SMS) -> None:
    message = sms.send(TO, "hello", kind="voucher")
    assert isinstance(message, Message)
    assert (message.kind, message.to, message.status) == (Kind.VOUCHER, TO, Status.QUEUED)
    app_ctx.extensions["sms"].session.rollback()  # nothing left to roll back: it committed
    assert reload(app_ctx, message).body == "hello"
    assert jobs(app_ctx) == 1


def test_send_without_commit_joins_the_callers_transaction(app_ctx: Flask, sms: SMS) -> None:
    session = app_ctx.extensions["sms"].session
    session.add(Gateway(name="the caller's row", type="sandbox"))
    message = sms.send(TO, "with the caller's row", commit=False)
    assert message.id is not None and jobs(app_ctx) == 0
    session.rollback()
    assert (count(app_ctx, Message), count(app_ctx, Gateway), jobs(app_ctx)) == (0, 0, 0)

    session.add(Gateway(name="the caller's row", type="sandbox"))
    kept = sms.send(TO, "kept", commit=False)
    session.commit()  # the caller's commit: both rows, then the job
    assert (count(app_ctx, Message), count(app_ctx, Gateway), jobs(app_ctx)) == (1, 1, 1)
    assert reload(app_ctx, kept).body == "kept"


def test_send_bulk_returns_ids_in_order(app_ctx: Flask, sms: SMS) -> None:
    recipients = [(f"+2783{i:07d}", f"n{i}") for i in range(5)]
    ids = sms.send_bulk(recipients, kind=Kind.CAMPAIGN)
    assert all(isinstance(i, int) for i in ids)
    session = app_ctx.extensions["sms"].session
    rows = session.execute(select(Message.id, Message.to, Message.body).order_by(Message.id))
    assert [tuple(row) for row in rows] == [
        (i, to, body) for i, (to, body) in zip(ids, recipients, strict=True)
    ]
    assert jobs(app_ctx) == 1


def test_send_bulk_without_commit_joins_the_callers_transaction(app_ctx: Flask, sms: SMS) -> None:
    session = app_ctx.extensions["sms"].session
    recipients = [(f"+2783{i:07d}", f"Promo {i}") for i in range(250)]  # two jobs of 200 max
    assert len(sms.send_bulk(recipients, commit=False)) == 250
    assert jobs(app_ctx) == 0
    session.rollback()
    assert (count(app_ctx, Message), jobs(app_ctx)) == (0, 0)
    sms.save_gateway(SANDBOX, commit=False)
    ids = sms.send_bulk(recipients, commit=False)
    assert jobs(app_ctx) == 0
    session.commit()
    assert (count(app_ctx, Message), count(app_ctx, Gateway), jobs(app_ctx)) == (250, 1, 2)
    drain(app_ctx)
    statuses = session.scalars(select(Message.status).where(Message.id.in_(ids)))
    assert set(statuses) == {Status.SENT}


# -- gateways through the SMS object ---------------------------------------------------------


def test_save_gateway_commits_and_keeps_a_blank_secret(app_ctx: Flask, sms: SMS) -> None:
    state = app_ctx.extensions["sms"]
    gateway = sms.save_gateway(TWILIO)
    assert isinstance(gateway, Gateway) and gateway.id is not None
    state.session.rollback()  # committed already: nothing to lose
    assert count(app_ctx, Gateway) == 1
    updated = sms.save_gateway({**TWILIO, "api_secret": "", "from_number": "Venue"}, gateway)
    assert updated is gateway
    state.session.rollback()
    stored = state.session.get(Gateway, gateway.id)
    config = gateway_config(stored, state.vault)
    assert (config["api_secret"], config["from_number"]) == (TWILIO["api_secret"], "Venue")


def test_save_gateway_without_commit_joins_the_callers_transaction(
    app_ctx: Flask, sms: SMS
) -> None:
    session = app_ctx.extensions["sms"].session
    sms.save_gateway(SANDBOX, commit=False)
    assert session.scalar(select(Gateway.name)) == "Sandbox"  # flushed, not committed
    session.rollback()
    assert count(app_ctx, Gateway) == 0


def test_a_refused_gateway_is_rolled_back_with_every_problem(app_ctx: Flask, sms: SMS) -> None:
    with pytest.raises(GatewayConfigError) as caught:
        sms.save_gateway({**TWILIO, "name": "", "account_sid": "AC123", "priority": "first"})
    assert set(caught.value.errors) == {"name", "account_sid", "priority"}
    assert isinstance(caught.value, SMSError)
    assert count(app_ctx, Gateway) == 0


def test_import_gateways_commits_every_entry(app_ctx: Flask, sms: SMS) -> None:
    saved = sms.import_gateways([TWILIO, SANDBOX])
    assert [g.name for g in saved] == ["Twilio", "Sandbox"]
    app_ctx.extensions["sms"].session.rollback()
    assert count(app_ctx, Gateway) == 2


def test_import_gateways_is_all_or_nothing(app_ctx: Flask, sms: SMS) -> None:
    state = app_ctx.extensions["sms"]
    existing = sms.save_gateway(TWILIO)
    items = [
        {**TWILIO, "from_number": "Changed"},  # an update of an existing gateway
        SANDBOX,  # a new one
        {**TWILIO, "name": "Broken", "account_sid": "nope"},
        {"name": "Bad type", "type": "carrier-pigeon"},
    ]
    with pytest.raises(GatewayConfigError) as caught:
        sms.import_gateways(items)
    assert set(caught.value.errors) == {"3.account_sid", "4.type"}
    assert "carrier-pigeon" in caught.value.errors["4.type"]
    assert "3.account_sid" in str(caught.value)
    state.session.expire_all()
    assert state.session.scalars(select(Gateway.name)).all() == ["Twilio"]
    config = gateway_config(state.session.get(Gateway, existing.id), state.vault)
    assert config["from_number"] == TWILIO["from_number"]


def test_import_gateways_without_commit_joins_the_callers_transaction(
    app_ctx: Flask, sms: SMS
) -> None:
    session = app_ctx.extensions["sms"].session
    sms.import_gateways([TWILIO, SANDBOX], commit=False)
    assert count(app_ctx, Gateway) == 2
    session.rollback()
    assert count(app_ctx, Gateway) == 0


def test_import_gateways_needs_a_list(app_ctx: Flask, sms: SMS) -> None:
    with pytest.raises(GatewayConfigError, match="JSON list"):
        sms.import_gateways({"name": "x"})  # type: ignore[arg-type]


def test_gateways_are_in_order_of_priority_then_id(app_ctx: Flask) -> None:
    session = app_ctx.extensions["sms"].session
    for name, priority in [("c", 2), ("a", 1), ("d", 2), ("z", 0), ("b", 1)]:
        session.add(Gateway(name=name, type="sandbox", priority=priority))
        session.flush()  # ids in this order
    session.commit()
    ordered = session.scalars(Gateway.in_order()).all()
    assert [(g.priority, g.name) for g in ordered] == [
        (0, "z"),
        (1, "a"),
        (1, "b"),
        (2, "c"),
        (2, "d"),
    ]
    assert [g.id for g in ordered if g.priority == 2] == sorted(
        g.id for g in ordered if g.priority == 2
    )
    enabled = session.scalars(Gateway.in_order().where(Gateway.enabled)).all()
    assert enabled == ordered  # a select to refine, order kept


# -- the enums ---------------------------------------------------------------------------------


@pytest.mark.parametrize("enum", [Kind, Status])
def test_kind_and_status_are_string_enums(enum: type[StrEnum]) -> None:
    assert issubclass(enum, StrEnum)
    for member in enum:
        assert member == member.value
        assert str(member) == f"{member}" == member.value
        assert enum(member.value) is member


def test_enum_values() -> None:
    assert tuple(Kind) == ("otp", "personal", "voucher", "campaign", "test", "notice")
    assert tuple(Status) == (
        "queued",
        "sending",
        "sent",
        "delivered",
        "undelivered",
        "failed",
        "held",
        "cancelled",
    )


def test_enums_are_stored_as_plain_strings(app_ctx: Flask, sms: SMS) -> None:
    sms.send(TO, "a code", kind=Kind.OTP)
    session = app_ctx.extensions["sms"].session
    kind, status = session.execute(select(MESSAGES.c.kind, MESSAGES.c.status)).one()
    assert (type(kind), type(status)) == (str, str)
    assert (kind, status) == ("otp", "queued")
    assert session.scalar(select(func.count()).where(MESSAGES.c.kind == "otp")) == 1


def test_refused_import_leaves_the_callers_transaction_untouched(app_ctx: Flask, sms: SMS) -> None:
    """With commit=False a refused file writes nothing even when the caller commits after."""
    session = app_ctx.extensions["sqlalchemy"].session
    items = [{"name": "ok", "type": "sandbox"}, {"name": "bad", "type": "nope"}]
    with pytest.raises(GatewayConfigError):
        sms.import_gateways(items, commit=False)
    session.commit()
    assert session.scalars(select(Gateway)).all() == []


def test_a_name_twice_in_one_file_is_refused(app_ctx: Flask, sms: SMS) -> None:
    items = [{"name": "twin", "type": "sandbox"}, {"name": "twin", "type": "sandbox"}]
    with pytest.raises(GatewayConfigError) as refused:
        sms.import_gateways(items)
    assert refused.value.errors == {"2.name": "Entry 1 already has the name 'twin'."}
    assert count(app_ctx, Gateway) == 0
