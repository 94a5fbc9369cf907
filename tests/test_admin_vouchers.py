"""Admin pages of vouchers: generate, list and filter, CSV, print sheet, send by SMS."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from portal.extensions import db
from portal.models import Voucher, VoucherSend
from portal.vouchers.generate import BatchSpec, generate_batch
from sms_ext import Message, MessageTemplate, Status
from sms_ext.models import utcnow
from tests.conftest import drain
from tests.helpers import custom_gateway
from tests.simulator import GatewaySimulator
from tests.test_portal_admin import add_admin
from tests.test_vouchers import add_location


@pytest.fixture
def admin(portal_app: Flask) -> FlaskClient:
    add_admin(portal_app)
    add_location(portal_app, "cafe", "Café Central")
    add_location(portal_app, "hotel", "Hotel Bay")
    client = portal_app.test_client()
    done = client.post(
        "/admin/login", data={"username": "ops", "password": "correct horse battery"}
    )
    assert done.status_code == 302
    return client


def batch(app: Flask, count: int, name: str, *locations: str, **extra: object) -> list[str]:
    with app.app_context():
        spec = BatchSpec(count, 120, batch=name, location_slugs=list(locations), **extra)
        return [voucher.code for voucher in generate_batch(spec)]


def test_vouchers_page_needs_a_login_and_is_in_the_menu(
    portal_app: Flask, admin: FlaskClient
) -> None:
    anonymous = portal_app.test_client().get("/admin/vouchers")
    assert anonymous.status_code == 302 and "/admin/login" in anonymous.headers["Location"]
    page = admin.get("/admin/vouchers").get_data(as_text=True)
    assert '<a href="/admin/vouchers" aria-current="page">Vouchers</a>' in page


def test_generate_from_the_form(portal_app: Flask, admin: FlaskClient) -> None:
    form = {
        "count": "4",
        "duration": "90m",
        "data_limit": "250",
        "devices": "2",
        "valid_days": "7",
        "location": "hotel",
        "batch": "Reception",
    }
    response = admin.post("/admin/vouchers", data=form)
    assert response.status_code == 303
    page = admin.get(response.headers["Location"]).get_data(as_text=True)
    assert "Generated 4 vouchers in batch &#39;Reception&#39;." in page
    with portal_app.app_context():
        vouchers = db.session.scalars(select(Voucher)).all()
        assert len(vouchers) == 4
        assert {
            (v.duration_minutes, v.data_limit_mb, v.devices_allowed, v.batch) for v in vouchers
        } == {(90, 250, 2, "Reception")}
        assert all(v.code in page for v in vouchers)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("count", "0", "Count must be between 1 and 1000."),
        ("count", "lots", "Count must be a whole number."),
        ("duration", "forever", "Duration &#39;forever&#39; is not like 90m"),
        ("devices", "0", "Devices must be between 1 and 100."),
        ("location", "nowhere", "No location with key &#39;nowhere&#39;."),
        ("data_limit", "-5", "Data limit must be a whole number."),
        ("batch", "x" * 65, "Batch label: at most 64 printable characters."),
    ],
)
def test_generate_refuses_bad_input(
    portal_app: Flask, admin: FlaskClient, field: str, value: str, message: str
) -> None:
    form = {"count": "2", "duration": "2h", field: value}
    response = admin.post("/admin/vouchers", data=form)
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    with portal_app.app_context():
        assert db.session.scalars(select(Voucher)).all() == []


def test_list_filters(portal_app: Flask, admin: FlaskClient) -> None:
    cafe = batch(portal_app, 2, "A", "cafe")
    hotel = batch(portal_app, 2, "B", "hotel")
    anywhere = batch(portal_app, 1, "C")
    with portal_app.app_context():
        db.session.execute(update(Voucher).where(Voucher.code == cafe[0]).values(state="used"))
        db.session.execute(
            update(Voucher)
            .where(Voucher.code == hotel[0])
            .values(valid_until=utcnow() - timedelta(days=1))
        )
        db.session.commit()

    def listed(query: str) -> set[str]:
        page = admin.get(f"/admin/vouchers?{query}").get_data(as_text=True)
        return {code for code in cafe + hotel + anywhere if code in page}

    assert listed("") == set(cafe + hotel + anywhere)
    assert listed("location=cafe") == set(cafe + anywhere)
    assert listed("batch=B") == set(hotel)
    assert listed("state=used") == {cafe[0]}
    assert listed("state=expired") == {hotel[0]}
    assert listed("state=new") == {cafe[1], hotel[1], *anywhere}
    assert listed(f"code={cafe[1][2:7].lower()}") == {cafe[1]}
    assert listed("code=%25") == set()
    assert admin.get("/admin/vouchers?state=bogus&location=x%00y&batch=%00").status_code == 200
    assert admin.get("/admin/vouchers/batch-send?batch=Z%00").status_code == 404
    nul = admin.post("/admin/vouchers", data={"count": "1", "duration": "1h", "location": "x\0"})
    assert nul.status_code == 400


def test_csv_export_is_formula_safe(portal_app: Flask, admin: FlaskClient) -> None:
    codes = batch(portal_app, 2, '=HYPERLINK("http://evil")', "cafe", data_limit_mb=100)
    response = admin.get("/admin/vouchers/export.csv?location=cafe")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert sorted(row["code"] for row in rows) == sorted(codes)
    assert {row["batch"] for row in rows} == {'\'=HYPERLINK("http://evil")'}
    assert {
        (row["duration"], row["data_limit_mb"], row["locations"], row["state"]) for row in rows
    } == {("2h", "100", "cafe", "new")}


def test_print_sheet(portal_app: Flask, admin: FlaskClient) -> None:
    codes = batch(portal_app, 3, "Sheet", "cafe", data_limit_mb=500)
    with portal_app.app_context():
        db.session.execute(update(Voucher).where(Voucher.code == codes[0]).values(state="used"))
        db.session.commit()
    page = admin.get("/admin/vouchers/sheet?batch=Sheet").get_data(as_text=True)
    assert "@media print" in page
    assert codes[0] not in page and codes[1] in page and codes[2] in page
    assert page.count('class="voucher"') == 2
    assert "Café Central" in page and "Time online: 2 hours" in page and "Data: 500 MB" in page


def gateway(app: Flask, simulator: GatewaySimulator) -> None:
    with app.app_context():
        custom_gateway(app, simulator, "v")


def sent_texts(simulator: GatewaySimulator, count: int) -> list[dict[str, str]]:
    return [request.json for request in simulator.wait_for_requests(count, target="custom")]


def test_send_one_voucher_by_sms(
    portal_app: Flask, admin: FlaskClient, simulator: GatewaySimulator
) -> None:
    gateway(portal_app, simulator)
    (code,) = batch(portal_app, 1, "One", "cafe", data_limit_mb=500)
    with portal_app.app_context():
        voucher_id = db.session.scalar(select(Voucher.id).where(Voucher.code == code))
    bad = admin.post(f"/admin/vouchers/{voucher_id}/send", data={"phone": "12"})
    assert bad.status_code == 400
    response = admin.post(f"/admin/vouchers/{voucher_id}/send", data={"phone": "083 123 4567"})
    assert response.status_code == 303
    drain(portal_app)
    (sent,) = sent_texts(simulator, 1)
    assert sent["to"] == "+27831234567"
    assert sent["text"] == (
        f"Your Wi-Fi voucher for Café Central: {code}. 2 hours, 500 MB. Valid until "
        f"{(utcnow() + timedelta(days=30)).strftime('%Y-%m-%d')}."
    )
    with portal_app.app_context():
        (message,) = db.session.scalars(select(Message)).all()
        assert (message.kind, message.customer_ref, message.sent_by) == (
            "voucher",
            f"voucher:{code}",
            "ops",
        )
        assert message.status == Status.SENT
        send = db.session.scalars(select(VoucherSend)).one()
        assert (send.phone, send.message_id) == ("+27831234567", message.id)
        assert db.session.get(Voucher, voucher_id).state == "sent"
    page = admin.get(f"/admin/vouchers/{voucher_id}").get_data(as_text=True)
    assert "+27 83 ••• 4567" in page and "+27831234567" not in page
    assert f'href="/sms/admin/logs/{message.id}">#{message.id} sent</a>' in page


def test_the_voucher_template_of_the_location_language_is_used(
    portal_app: Flask, admin: FlaskClient, simulator: GatewaySimulator
) -> None:
    gateway(portal_app, simulator)
    (code,) = batch(portal_app, 1, "T", "cafe")
    with portal_app.app_context():
        db.session.add_all(
            [
                MessageTemplate(name="v", kind="voucher", language="en", body="EN {{ code }}"),
                MessageTemplate(
                    name="v",
                    kind="voucher",
                    language="es",
                    body="Tu código {{ code }}: {{ duration }} en {{ location }}",
                ),
            ]
        )
        voucher = db.session.scalar(select(Voucher).where(Voucher.code == code))
        voucher.locations[0].language = "es"
        db.session.commit()
        voucher_id = voucher.id
    assert (
        admin.post(f"/admin/vouchers/{voucher_id}/send", data={"phone": "+27831234567"}).status_code
        == 303
    )
    drain(portal_app)
    (sent,) = sent_texts(simulator, 1)
    assert sent["text"] == f"Tu código {code}: 2 hours en Café Central"


def test_send_a_batch_to_pasted_numbers(
    portal_app: Flask, admin: FlaskClient, simulator: GatewaySimulator
) -> None:
    gateway(portal_app, simulator)
    codes = batch(portal_app, 3, "Party", "hotel")
    page = admin.get("/admin/vouchers/batch-send?batch=Party").get_data(as_text=True)
    assert 'name="numbers"' in page and 'value="ZA"' in page

    bad = admin.post(
        "/admin/vouchers/batch-send?batch=Party",
        data={
            "numbers": "083 123 4567\nnot a number\n\n+27831234567\n+1 900 555 0100",
            "region": "ZA",
        },
    )
    assert bad.status_code == 400
    text = bad.get_data(as_text=True)
    assert "Line 2 (not a number):" in text
    assert "Line 4: +27831234567 is already in the list." in text
    assert "Line 5 (+1 900 555 0100):" in text

    too_many = admin.post(
        "/admin/vouchers/batch-send?batch=Party",
        data={"numbers": "\n".join(f"+2783123456{n}" for n in range(4)), "region": "ZA"},
    )
    assert too_many.status_code == 400
    assert "Batch &#39;Party&#39; has 3 unused vouchers for 4 numbers." in too_many.get_data(
        as_text=True
    )

    done = admin.post(
        "/admin/vouchers/batch-send?batch=Party",
        data={"numbers": "083 123 4560\n+27 83 123 4561\n", "region": "ZA"},
    )
    assert done.status_code == 303
    drain(portal_app)
    sent = sorted(sent_texts(simulator, 2), key=lambda body: body["to"])
    assert [body["to"] for body in sent] == ["+27831234560", "+27831234561"]
    with portal_app.app_context():
        vouchers = db.session.scalars(select(Voucher).order_by(Voucher.id)).all()
        assert [v.state for v in vouchers] == ["sent", "sent", "new"]
        assert [send.phone for v in vouchers for send in v.sends] == [
            "+27831234560",
            "+27831234561",
        ]
    assert (
        f": {vouchers[0].code}." in sent[0]["text"] and f": {vouchers[1].code}." in sent[1]["text"]
    )
    assert set(codes) == {v.code for v in vouchers}
    assert admin.get("/admin/vouchers/batch-send?batch=nope").status_code == 404


def test_used_vouchers_are_not_sent(portal_app: Flask, admin: FlaskClient) -> None:
    (code,) = batch(portal_app, 1, "U")
    with portal_app.app_context():
        voucher = db.session.scalar(select(Voucher).where(Voucher.code == code))
        voucher.state = "used"
        db.session.commit()
        voucher_id = voucher.id
    response = admin.post(f"/admin/vouchers/{voucher_id}/send", data={"phone": "+27831234567"})
    assert response.status_code == 400
    assert admin.get("/admin/vouchers/999999").status_code == 404
