"""The campaign admin pages: deny by default, the one-page editor (fields, preview without
JavaScript and its fragment, test send), save and schedule, the progress page and its actions,
bad input answered with 400 and the reason next to the field, CSRF on every write."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from sms_ext import SMS, Message
from sms_ext.campaigns.audience import AudienceLocation, AudienceQuery, Recipient
from sms_ext.models import Campaign, MessageTemplate
from tests.helpers import custom_gateway
from tests.simulator import GatewaySimulator

URL = "/sms/admin/campaigns/"
LOCATIONS = [
    AudienceLocation("harbour", "Harbour Café", "Europe/London", "GB"),
    AudienceLocation("airport", "Airport Lounge", "Europe/Madrid", "ES"),
]
PEOPLE = [
    Recipient("+447911120001", "Ann", "en", "harbour", marketing_consent=True, customer="g:1"),
    Recipient("+447911120002", "Ben", "en", "harbour", marketing_consent=False),
    Recipient("+447911120003", "Cy", "en", "harbour", marketing_consent=True, opted_out=True),
    Recipient("+447911120001", "Ann again", "en", "airport", marketing_consent=True),
    Recipient("12345", "Bad", None, "airport", marketing_consent=True),
    Recipient("+442079460000", "Landline", None, "airport", marketing_consent=True),
    Recipient("+34612345675", "Eva", "es", "airport", marketing_consent=True),
]
BODY = "Hi {{ name }}, 2-for-1 coffee at {{ venue }} today! {{ opt_out }}"


class ListAudience:
    """A host's audience over a list: filters by location and by pasted phones."""

    def __init__(self, people: Sequence[Recipient]) -> None:
        self.people = people

    def locations(self) -> Sequence[AudienceLocation]:
        return LOCATIONS

    def recipients(self, query: AudienceQuery) -> Iterable[Recipient]:
        for person in self.people:
            if query.locations and person.location not in query.locations:
                continue
            if query.phones is not None and person.phone not in query.phones:
                continue
            yield person


@pytest.fixture
def admin(app: Flask, sms: SMS) -> FlaskClient:
    """An admin client (CSRF off, errors raised) of an app whose host registered guests."""
    sms.campaign_audience(ListAudience(PEOPLE))
    sms.admin_check(lambda: True)
    app.config["WTF_CSRF_ENABLED"] = False
    app.config["PROPAGATE_EXCEPTIONS"] = True
    return app.test_client()


def form(**fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "Coffee promo",
        "purpose": "marketing",
        "template": "",
        "body": BODY,
        "schedule": "now",
        "action": "preview",
    }
    data.update(fields)
    return data


def campaigns(app: Flask) -> list[Campaign]:
    with app.app_context():
        session = app.extensions["sms"].session
        found = list(session.scalars(select(Campaign).order_by(Campaign.id)))
        session.expunge_all()
        return found


def text(response: Any) -> str:
    return response.get_data(as_text=True)


def test_pages_are_denied_without_admin_check(app: Flask, sms: SMS) -> None:
    client = app.test_client()
    for method, path in [
        ("get", URL),
        ("get", f"{URL}new"),
        ("post", f"{URL}new"),
        ("post", f"{URL}preview"),
        ("get", f"{URL}1"),
        ("get", f"{URL}1/edit"),
        ("get", f"{URL}1/cancel"),
        ("post", f"{URL}1/cancel"),
        ("post", f"{URL}1/pause"),
    ]:
        assert getattr(client, method)(path).status_code == 403, path


def test_editor_offers_locations_templates_and_variables(app: Flask, admin: FlaskClient) -> None:
    with app.app_context():
        session = app.extensions["sms"].session
        for kind, name in (("campaign", "Promo"), ("notice", "Works"), ("personal", "Hello")):
            session.add(MessageTemplate(name=name, kind=kind, language="en", body="Hi"))
        session.commit()
    html = text(admin.get(f"{URL}new"))
    assert re.search(r'<input[^>]*name="locations"[^>]*value="harbour"', html)
    assert '<label for="locations-0">Harbour Café</label>' in html
    assert "Promo (campaign, en)" in html and "Works (notice, en)" in html
    assert "Hello (personal" not in html
    assert "Reaches only guests who agreed to marketing messages." in html
    assert "{{ opt_out }}" in html
    assert 'type="time"' in html and 'type="date"' in html
    assert f'href="{URL}"' in text(admin.get("/sms/admin/"))  # the menu


def test_preview_counts_each_exclusion_and_masks_samples(admin: FlaskClient) -> None:
    response = admin.post(f"{URL}new", data=form())
    html = text(response)
    assert response.status_code == 200, html
    assert re.search(r'id="preview-recipients">2<', html)  # Ann and Eva
    reasons = dict(re.findall(r'data-reason="(\w+)"><strong>(\d+)</strong>', html))
    assert reasons == {
        "opted_out": "1",
        "no_consent": "1",
        "invalid": "1",
        "not_mobile": "1",
        "duplicate": "1",
    }
    assert "left out: no marketing consent" in html
    assert "+44 79 \u2022\u2022\u2022 0001" in html and "+447911120001" not in html
    assert "Hi Ann, 2-for-1 coffee at Harbour Café today! Reply STOP to opt out" in html
    assert "Set a price per part on the gateway to see the cost." in html
    # The schedule's zone: the first location's (none ticked: every location; UTC otherwise).
    assert re.search(r'id="campaign-zone">[^<]+, UTC[+-]\d\d:\d\d<', html)


def test_preview_of_a_notice_reaches_guests_without_consent_and_shows_the_cost(
    app: Flask, admin: FlaskClient, simulator: GatewaySimulator
) -> None:
    with app.app_context():
        gateway = custom_gateway(app, simulator, "main")
        gateway.price_per_part, gateway.currency = Decimal("0.05"), "EUR"
        app.extensions["sms"].session.commit()
    html = text(
        admin.post(
            f"{URL}new",
            data=form(purpose="notice", body="Wi-Fi maintenance at {{ venue }} tonight."),
        )
    )
    assert re.search(r'id="preview-recipients">3<', html)  # Ann, Ben and Eva
    assert 'data-reason="no_consent"' not in html
    assert re.search(r'id="preview-total-parts">3<', html)
    assert re.search(r"Estimated cost: <strong>EUR 0.15</strong>", html)


def test_preview_fragment_for_the_script(admin: FlaskClient) -> None:
    response = admin.post(f"{URL}preview", data=form(locations=["airport"]))
    html = text(response)
    assert response.status_code == 200 and "<html" not in html
    assert re.search(r'id="preview-recipients">2<', html)  # Ann (seen there too) and Eva
    broken = text(admin.post(f"{URL}preview", data=form(body="Hi {{ voucher }}")))
    assert "voucher" in broken and 'role="alert"' in broken


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"seen_days": "abc"}, "seen_days", "Type a whole number of days"),
        ({"seen_days": "0"}, "seen_days", "Type a whole number of days"),
        ({"regions": "GBR"}, "regions", "two-letter region codes"),
        ({"window_from": "25:00", "window_to": "08:00"}, "window", "HH:MM"),
        ({"window_from": "09:00"}, "window", "or neither"),
        ({"template": "x"}, "template", "Choose a template from the list."),
        ({"schedule": "later", "action": "start"}, "start", "Choose a date"),
        (
            {
                "schedule": "later",
                "start_date": "2026-12-24",
                "start_time": "9h",
                "action": "start",
            },
            "start",
            "Choose a time",
        ),
        ({"action": "test", "test_phone": ""}, "test_phone", "Type the number"),
        ({"action": "test", "test_phone": "hello"}, "test_phone", "phone number"),
    ],
)
def test_bad_fields_answer_400_next_to_the_field(
    app: Flask, admin: FlaskClient, fields: dict[str, str], field: str, message: str
) -> None:
    response = admin.post(f"{URL}new", data=form(**fields))
    html = text(response)
    assert response.status_code == 400
    found = re.search(rf'<span class="field-error" id="{field}-error">([^<]+)</span>', html)
    assert found and message in found.group(1), html
    assert f'aria-describedby="{field}-error' in html
    assert campaigns(app) == []


@pytest.mark.parametrize(
    "fields",
    [{"name": ""}, {"name": "x" * 121}, {"body": ""}, {"purpose": "spam"}, {"action": "launch"}],
)
def test_what_the_engine_refuses_is_shown_on_the_form(
    app: Flask, admin: FlaskClient, fields: dict[str, str]
) -> None:
    response = admin.post(f"{URL}new", data=form(**{"action": "save", **fields}))
    assert response.status_code == 400
    assert 'class="flash error" role="alert" id="form-error"' in text(response)
    assert campaigns(app) == []


def test_save_draft_edit_and_start(app: Flask, admin: FlaskClient) -> None:
    saved = admin.post(f"{URL}new", data=form(action="save", locations=["harbour"]))
    assert saved.status_code == 303
    (draft,) = campaigns(app)
    assert saved.headers["Location"] == f"{URL}{draft.id}"
    assert (draft.status, draft.name, draft.timezone) == ("draft", "Coffee promo", "Europe/London")
    page = text(admin.get(f"{URL}{draft.id}"))
    assert "saved as a draft" in page and "Start now" in page
    assert 'http-equiv="refresh"' not in page
    listing = text(admin.get(URL))
    assert "Coffee promo" in listing and "Draft" in listing

    edit = text(admin.get(f"{URL}{draft.id}/edit"))
    assert 'value="Coffee promo"' in edit
    assert re.search(r'value="harbour"[^>]*checked|checked[^>]*value="harbour"', edit)
    done = admin.post(
        f"{URL}{draft.id}/edit",
        data=form(
            action="start",
            name="Weekend promo",
            locations=["harbour"],
            schedule="later",
            start_date="2099-06-01",
            start_time="09:30",
            window_from="09:00",
            window_to="20:00",
        ),
    )
    assert done.status_code == 303, text(done)
    (scheduled,) = campaigns(app)
    assert (scheduled.name, scheduled.status) == ("Weekend promo", "scheduled")
    # 09:30 in London in June is 08:30 UTC (BST, UTC+01:00).
    assert scheduled.scheduled_at is not None and scheduled.scheduled_at.isoformat() == (
        "2099-06-01T08:30:00"
    )
    assert (scheduled.window_start, scheduled.window_end) == (9 * 60, 20 * 60)
    page = text(admin.get(f"{URL}{scheduled.id}"))
    assert "2099-06-01 09:30:00 (Europe/London, UTC+01:00)" in page
    # An explicit URL: one the page was reached at may carry a #fragment, and a refresh to
    # that would only scroll.
    assert f'<meta http-equiv="refresh" content="5; url={URL}{scheduled.id}">' in page
    assert f'action="{URL}{scheduled.id}/pause"' not in page


def test_cancel_asks_first_and_wrong_states_are_flashed(app: Flask, admin: FlaskClient) -> None:
    admin.post(
        f"{URL}new",
        data=form(action="start", schedule="later", start_date="2099-01-01", start_time="10:00"),
    )
    (campaign,) = campaigns(app)
    confirm = text(admin.get(f"{URL}{campaign.id}/cancel"))
    assert "Cancel Coffee promo?" in confirm and "Yes, cancel the campaign" in confirm
    done = admin.post(f"{URL}{campaign.id}/cancel", follow_redirects=True)
    assert "is cancelled" in text(done)
    assert campaigns(app)[0].status == "cancelled"
    for action in ("resume", "pause", "cancel"):
        refused = admin.post(f"{URL}{campaign.id}/{action}", follow_redirects=True)
        assert refused.status_code == 200
        assert 'class="flash error"' in text(refused)
    assert campaigns(app)[0].status == "cancelled"
    moved = admin.get(f"{URL}{campaign.id}/edit", follow_redirects=True)
    assert "can no longer be edited" in text(moved)


def test_test_send_goes_to_one_number(
    app: Flask, admin: FlaskClient, simulator: GatewaySimulator
) -> None:
    with app.app_context():
        custom_gateway(app, simulator, "main")
    response = admin.post(f"{URL}new", data=form(action="test", test_phone="+44 7911 123999"))
    html = text(response)
    assert response.status_code == 200, html
    assert re.search(r"Test sent to \+44 79 \u2022\u2022\u2022 3999 \u2014 see the SMS log", html)
    assert 'value="Coffee promo"' in html  # the form stays as typed
    with app.app_context():
        (message,) = app.extensions["sms"].session.scalars(select(Message)).all()
        assert message.to == "+447911123999" and message.campaign_id is None
        assert message.body.startswith("Hi ") and "Reply STOP to opt out" in message.body
    assert campaigns(app) == []


def test_a_national_test_number_is_read_in_the_region_of_the_chosen_locations(
    app: Flask, admin: FlaskClient, simulator: GatewaySimulator
) -> None:
    with app.app_context():
        custom_gateway(app, simulator, "main")
    local = admin.post(
        f"{URL}new", data=form(action="test", test_phone="07911 123999", locations=["harbour"])
    )
    assert local.status_code == 200, text(local)
    # Two locations in two countries: no guess, the admin is asked for the country code.
    both = admin.post(f"{URL}new", data=form(action="test", test_phone="07911 123998"))
    assert both.status_code == 400
    assert "Please include your country code" in text(both)
    with app.app_context():
        sent = app.extensions["sms"].session.scalars(select(Message.to)).all()
    assert sent == ["+447911123999"]


def test_the_admins_name_is_recorded_on_what_they_create_and_send(
    app: Flask, sms: SMS, admin: FlaskClient, simulator: GatewaySimulator
) -> None:
    sms.admin_name(lambda: "ann")
    with app.app_context():
        custom_gateway(app, simulator, "main")
    admin.post(f"{URL}new", data=form(action="test", test_phone="+44 7911 123999"))
    admin.post(f"{URL}new", data=form(action="save"))
    (campaign,) = campaigns(app)
    assert campaign.created_by == "ann"
    assert "<dt>Created by</dt><dd>ann</dd>" in text(admin.get(f"{URL}{campaign.id}"))
    with app.app_context():
        (message,) = app.extensions["sms"].session.scalars(select(Message)).all()
        assert message.sent_by == "ann"


@pytest.mark.parametrize("path", ["999999", "abc", "99999999999999999999"])
def test_unknown_campaigns_and_actions_are_404(admin: FlaskClient, path: str) -> None:
    for url in (f"{URL}{path}", f"{URL}{path}/edit", f"{URL}{path}/cancel"):
        assert admin.get(url).status_code == 404
    for action in ("pause", "cancel", "launch"):
        assert admin.post(f"{URL}{path}/{action}").status_code == 404


def test_writes_need_the_csrf_token(app: Flask, sms: SMS) -> None:
    sms.campaign_audience(ListAudience(PEOPLE))
    sms.admin_check(lambda: True)
    client = app.test_client()
    assert client.post(f"{URL}new", data=form(action="save")).status_code == 400
    assert client.post(f"{URL}preview", data=form()).status_code == 400
    assert client.post(f"{URL}1/pause").status_code == 400
    assert campaigns(app) == []
