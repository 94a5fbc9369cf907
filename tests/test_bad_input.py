"""Bad input never reaches the database: integers out of every column's range in admin URLs
and forms, text PostgreSQL refuses (NUL) or no driver can encode (lone surrogates), over-long
fields, and any JSON an import document may hold.

Each test runs on SQLite and on PostgreSQL (``SMS_TEST_DATABASE_URL``): SQLite raises
``OverflowError`` past 64 bits, PostgreSQL ``DataError`` past ``int4``/``int8`` and on NUL.
The property tests are derandomized (the same examples every run) and keep their counts small.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from sms_ext import SMS, Gateway, GatewayConfigError, Kind, Message, MessageError, SMSError
from tests.helpers import add_gateway

HUGE = [str(2**64), str(2**63), str(2**31), "-1", "\u00b2", "9" * 5000]
"""Ids no column holds, a negative one, a digit ``int()`` refuses, one Python refuses to read."""
PROPERTY = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# -- integers from URLs and forms (item 14) -----------------------------------------------------


@pytest.mark.parametrize("value", [str(2**64), str(2**63), str(2**31), "9" * 5000, "-1"])
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/sms/admin/gateways/{}/"),
        ("POST", "/sms/admin/gateways/{}/"),
        ("POST", "/sms/admin/gateways/{}/toggle"),
        ("POST", "/sms/admin/gateways/{}/balance"),
        ("POST", "/sms/admin/gateways/{}/move"),
        ("POST", "/sms/admin/gateways/{}/delete"),
        ("POST", "/sms/admin/gateways/{}/test"),
        ("GET", "/sms/admin/logs/{}"),
    ],
)
def test_ids_out_of_range_in_urls_are_not_found(
    admin: FlaskClient, method: str, path: str, value: str
) -> None:
    response = admin.open(path.format(value), method=method, data={"direction": "up"})
    assert response.status_code == 404


@pytest.mark.parametrize("value", HUGE)
def test_ids_out_of_range_in_query_strings(app: Flask, admin: FlaskClient, value: str) -> None:
    with app.app_context():
        gateway = add_gateway(app, name="one", type="custom", url="https://sms.example.com/")
        gateway_id = gateway.id
    # A cursor or a filter is a message the admin sees; a bad one is a 400 with a sentence.
    for name in ("before", "after") if value != str(2**31) else ():  # 2**31 is a message id
        response = admin.get(f"/sms/admin/logs/?{name}={value}")
        assert response.status_code == 400, (name, value)
        assert f"&#39;{name}&#39; must be a message id." in response.text
    response = admin.get(f"/sms/admin/logs/?gateway={value}")
    assert response.status_code == 400 and "Gateway: choose one from the list." in response.text
    assert admin.get(f"/sms/admin/logs/export.csv?gateway={value}").status_code == 400
    # Pages that follow an id they were given quietly ignore one that cannot exist.
    page = admin.get(f"/sms/admin/gateways/{gateway_id}/?test={value}")
    assert page.status_code == 200
    assert admin.get(f"/sms/admin/gateways/?moved={value}&direction=up").status_code == 200
    response = admin.post("/sms/admin/gateways/order", data={"ids": f"{value},{gateway_id}"})
    assert response.status_code == 303
    # The preview of a gateway that cannot exist is a 404, like its page.
    response = admin.post(f"/sms/admin/gateways/preview?gateway={value}", data={"type": "custom"})
    assert response.status_code == 404


@pytest.mark.parametrize("value", HUGE)
def test_numbers_in_the_gateway_form_out_of_range(admin: FlaskClient, value: str) -> None:
    for field in ("max_per_second", "max_in_flight"):
        response = admin.post(
            "/sms/admin/gateways/new",
            data={
                "type": "custom",
                "name": "Limits",
                "url": "https://sms.example.com/send",
                "method": "POST",
                "content_type": "form",
                field: value,
            },
        )
        assert response.status_code == 400, (field, value)
        assert "must be a whole number from 1 to 100,000" in response.text


# -- sms.send (item 24) ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"location": "L" * 81}, "The location must be at most 80 characters."),
        ({"location": "cafe\x00"}, "The location must not contain NUL characters."),
        ({"location": "cafe\nhall"}, "The location must not contain line breaks"),
        ({"customer": "C" * 121}, "The customer reference must be at most 120 characters."),
        ({"customer": "guest\x00"}, "The customer reference must not contain NUL characters."),
        ({"body": "caf\udce9"}, "The message contains characters that are not valid Unicode."),
        ({"to": 27831234567}, "The recipient (to) must be text."),
    ],
)
def test_send_refuses_what_the_database_cannot_store(
    app_ctx: Flask, sms: SMS, changes: dict[str, Any], message: str
) -> None:
    arguments: dict[str, Any] = {"to": "+27831234567", "body": "Hello", **changes}
    with pytest.raises(MessageError) as caught:
        sms.send(arguments.pop("to"), arguments.pop("body"), **arguments)
    assert str(caught.value).startswith(message)
    assert app_ctx.extensions["sms"].session.scalar(select(func.count(Message.id))) == 0


def test_send_stores_the_longest_fields(app_ctx: Flask, sms: SMS) -> None:
    row = sms.send("+27831234567", "x" * 1600, location="L" * 80, customer="C" * 120)
    assert (row.location, row.customer_ref) == ("L" * 80, "C" * 120)


ANY_CHARACTER = st.characters(exclude_categories=())
"""Every code point, lone surrogates and NUL included (hypothesis leaves surrogates out)."""
SOME_TEXT = st.one_of(
    st.text(max_size=12),
    st.text(ANY_CHARACTER, max_size=40),
    st.text(st.sampled_from("ab\x00\n\udcff\u00e9 "), min_size=70, max_size=130),
)
ONE_LINE = st.characters(exclude_categories=("Cc", "Cs"))
SPOILT = st.builds(
    lambda before, bad, after: before + bad + after,
    st.text(ONE_LINE, max_size=30),
    st.sampled_from(["\x00", "\udcff", "\ud800", "\n", "\x1b", "\x85"]),
    st.text(ONE_LINE, max_size=30),
)
"""Ordinary text but for one character: NUL, a lone surrogate or a control character."""


def text_or_worse(longest: int) -> st.SearchStrategy[Any]:
    """Text a column of ``longest`` characters holds, one a little too long, or spoilt."""
    return mostly(
        st.one_of(st.none(), st.text(ONE_LINE, max_size=longest)),
        st.one_of(SPOILT, st.text(ONE_LINE, min_size=longest + 1, max_size=longest + 5), SOME_TEXT),
    )


def mostly(valid: st.SearchStrategy[Any], other: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Usually ``valid``, so that whole examples are often storable and the database is asked,
    near the limits too (``one_of`` would favour the richer strategy, ``other``)."""
    return st.integers(0, 7).flatmap(lambda pick: valid if pick else other)


@PROPERTY
@given(
    to=mostly(st.sampled_from(["+27831234567", "083 123 4567", "+4915123456789"]), SOME_TEXT),
    body=mostly(
        st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), min_size=1),
        st.one_of(SPOILT, SOME_TEXT, st.text(ANY_CHARACTER, min_size=1590)),
    ),
    kind=mostly(st.sampled_from(list(Kind)), st.text(max_size=8)),
    location=text_or_worse(80),
    customer=text_or_worse(120),
)
def test_send_stores_or_refuses_any_arguments(
    app_ctx: Flask, sms: SMS, to: str, body: str, kind: str, location: Any, customer: Any
) -> None:
    """Whatever ``sms.send`` is given, the row is stored as given or an ``SMSError`` says why."""
    session = app_ctx.extensions["sms"].session
    try:
        row = sms.send(to, body, kind=kind, location=location, customer=customer, commit=False)
    except SMSError as exc:
        session.rollback()
        event(f"refused: {str(exc)[:50]}")
        return
    event("stored")
    session.flush()
    stored = session.execute(
        select(Message.body, Message.location, Message.customer_ref).where(Message.id == row.id)
    ).one()
    session.rollback()
    assert tuple(stored) == (body, location, customer)
    assert len(location or "") <= 80 and len(customer or "") <= 120  # SQLite would take more


# -- gateway import documents (item 24) ----------------------------------------------------------


NUMBER = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.sampled_from(["", "1", "99999999999", "1e3", "nan", "-5", "\u00b2"]),
    SOME_TEXT,
)
SHAPES = st.one_of(
    st.none(), st.integers(), SOME_TEXT, st.lists(st.integers(), max_size=2), st.just({})
)
ROWS = st.lists(
    st.one_of(
        st.integers(),
        SOME_TEXT,
        st.fixed_dictionaries({"name": mostly(st.just("X-Key"), SOME_TEXT), "value": SHAPES}),
    ),
    max_size=3,
)
URL = mostly(
    st.just("https://sms.example.com/send"),
    st.one_of(st.sampled_from(["http://[", "http://a:99999/", "http://a:x/"]), SHAPES),
)
SECRET = mostly(st.text(ONE_LINE, min_size=1, max_size=2000), SHAPES)
COMMON = {
    "enabled": st.one_of(st.booleans(), SHAPES),
    "priority": mostly(st.integers(0, 1_000_000), NUMBER),
    "locations": mostly(
        st.lists(st.text(ONE_LINE, max_size=80), max_size=3),
        st.one_of(SHAPES, st.lists(st.one_of(SOME_TEXT, st.integers()), max_size=3)),
    ),
    "max_per_second": mostly(st.integers(1, 100_000), NUMBER),
    "max_in_flight": mostly(st.none(), NUMBER),
    "timeout": mostly(st.floats(0.1, 60), NUMBER),
}
TYPES = {
    "custom": (
        {"url": URL},
        {
            "method": mostly(st.sampled_from(["GET", "POST"]), SHAPES),
            "content_type": mostly(st.just("form"), SHAPES),
            "payload": mostly(st.just("to={phone}&text={message}"), SHAPES),
            "headers": st.one_of(ROWS, SHAPES),
            "api_key": SECRET,
            "api_secret": SECRET,
            "from_number": mostly(st.text(ONE_LINE, max_size=40), SHAPES),
            "lua_script": st.sampled_from(["", "\x00", "\udcff", "x" * 70_000]),
        },
    ),
    "twilio": (
        {
            "account_sid": mostly(st.just("AC" + "0" * 32), SHAPES),
            "api_secret": SECRET,
            "from_number": mostly(st.just("+14155550100"), SHAPES),
        },
        {"api_key": mostly(st.just(""), SHAPES), "base_url": URL, "status_callback": SHAPES},
    ),
    "smsportal": ({"client_id": SECRET, "api_secret": SECRET}, {"base_url": URL}),
}


def entry(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    """A gateway entry of type ``kind``: its required fields (usually valid), some others."""
    required, optional = TYPES[kind]
    return st.fixed_dictionaries(
        {
            "name": mostly(
                st.text(ONE_LINE, min_size=1, max_size=80), st.one_of(SOME_TEXT, NUMBER)
            ),
            "type": mostly(st.just(kind), SHAPES),
            **required,
        },
        optional={**COMMON, **optional},
    )


ENTRY = st.sampled_from(sorted(TYPES)).flatmap(entry)
DOCUMENT = mostly(
    st.lists(mostly(ENTRY, SHAPES), min_size=1, max_size=2),
    st.one_of(ENTRY, SOME_TEXT, st.integers()),
)


@PROPERTY
@given(document=DOCUMENT)
def test_import_stores_or_refuses_any_document(app_ctx: Flask, sms: SMS, document: Any) -> None:
    """Whatever JSON a file holds, gateways are stored or ``GatewayConfigError`` names the
    entry and field of each problem; the database is never the one to refuse."""
    session = app_ctx.extensions["sms"].session
    try:
        saved = sms.import_gateways(document, commit=False)
    except GatewayConfigError as exc:
        session.rollback()
        assert exc.errors
        event(f"refused: {sorted(exc.errors.items())[0]}"[:60])
        return
    event(f"stored {len(saved)}")
    session.flush()
    names = {gateway.name for gateway in saved}
    assert set(session.scalars(select(Gateway.name))) == names
    session.rollback()


@pytest.mark.parametrize(
    ("entry", "field", "message"),
    [
        ({"priority": 99999999999}, "1.priority", "Priority must be a whole number from 0 to"),
        ({"priority": 2**64}, "1.priority", "Priority must be a whole number from 0 to"),
        ({"priority": float("inf")}, "1.priority", "Priority must be a whole number from 0 to"),
        ({"name": "Cafe\x00"}, "1.name", "Name must not contain NUL characters."),
        ({"name": "Caf\udce9"}, "1.name", "Name contains characters that are not valid Unicode."),
        ({"headers": [1, 2]}, "1.headers", "Header 2 must be a {name, value} row."),
        ({"locations": ["cafe\x00"]}, "1.locations", "A location key must not contain NUL"),
        ({"payload": "to={phone}\x00"}, "1.payload", "Payload must not contain NUL characters."),
        ({"url": "http://["}, "1.url", "URL is not a valid URL"),
        ({"max_in_flight": 2**64}, "1.max_in_flight", "Max requests at once must be a whole"),
    ],
)
def test_import_names_the_field(
    app_ctx: Flask, sms: SMS, entry: dict[str, Any], field: str, message: str
) -> None:
    document = [{"name": "Gateway", "type": "custom", "url": "https://sms.example.com/", **entry}]
    with pytest.raises(GatewayConfigError) as caught:
        sms.import_gateways(document)
    assert caught.value.errors[field].startswith(message), caught.value.errors
    assert app_ctx.extensions["sms"].session.scalar(select(func.count(Gateway.id))) == 0
