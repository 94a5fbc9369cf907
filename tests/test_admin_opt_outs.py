"""The opt-out admin page: deny by default, add, search, remove, import and export CSV, with
numbers masked unless SMS_ADMIN_FULL_NUMBERS, bad input answered with 400 and the reason."""

from __future__ import annotations

import io
import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from sms_ext import SMS
from sms_ext.models import OptOut
from tests.conftest import make_app

URL = "/sms/admin/opt-outs/"
PHONE = "+447911123456"
MASKED = "+44 79 \u2022\u2022\u2022 3456"


def entries(app: Flask) -> dict[str, str]:
    """Phone -> source of every entry."""
    with app.app_context():
        session = app.extensions["sms"].session
        return {row.phone: row.source for row in session.scalars(select(OptOut))}


def page(client: FlaskClient, path: str = URL, status: int = 200) -> str:
    response = client.get(path)
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_data(as_text=True)


def test_pages_are_denied_without_admin_check(app: Flask, sms: SMS) -> None:
    client = app.test_client()
    for method, path in [
        ("get", URL),
        ("post", f"{URL}add"),
        ("post", f"{URL}remove"),
        ("post", f"{URL}import"),
        ("get", f"{URL}export.csv"),
    ]:
        assert getattr(client, method)(path).status_code == 403


def test_menu_entry(admin: FlaskClient) -> None:
    assert f'href="{URL}"' in page(admin, "/sms/admin/")
    assert re.search(r'aria-current="page">Opt-outs<', page(admin))


def test_add_masks_the_number_and_keeps_the_first_entry(app: Flask, admin: FlaskClient) -> None:
    done = admin.post(f"{URL}add", data={"phone": "+44 7911 123456", "note": "asked by phone"})
    assert (done.status_code, done.headers["Location"]) == (303, URL)
    assert entries(app) == {PHONE: "admin"}
    listing = page(admin)
    assert f"{MASKED} is on the opt-out list" in listing
    assert MASKED in listing and PHONE not in listing and "asked by phone" in listing
    again = admin.post(f"{URL}add", data={"phone": PHONE}, follow_redirects=True)
    assert f"{MASKED} was already on the opt-out list." in again.get_data(as_text=True)
    assert entries(app) == {PHONE: "admin"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"phone": ""}, "Please enter your phone number."),
        ({"phone": "hello"}, "phone number"),
        ({"phone": PHONE, "note": "x" * 201}, "The note must be at most 200 characters."),
        ({"phone": PHONE, "note": "a\x00b"}, "The note"),
    ],
)
def test_bad_additions_answer_400_next_to_the_field(
    app: Flask, admin: FlaskClient, data: dict[str, str], message: str
) -> None:
    response = admin.post(f"{URL}add", data=data)
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert 'id="add-error"' in html and message in html
    assert 'aria-describedby="add-error"' in html and 'aria-invalid="true"' in html
    assert entries(app) == {}


def test_remove_only_from_a_search_for_the_whole_number(app: Flask, admin: FlaskClient) -> None:
    admin.post(f"{URL}add", data={"phone": PHONE}, follow_redirects=True)
    admin.post(f"{URL}add", data={"phone": "+34612345671"}, follow_redirects=True)
    listing = page(admin)
    # Masked numbers: the list carries no whole number, so no remove button either.
    assert PHONE not in listing and "+34612345671" not in listing
    assert 'action="/sms/admin/opt-outs/remove"' not in listing
    found = page(admin, f"{URL}?q=%2B44+7911+123456")
    assert 'action="/sms/admin/opt-outs/remove"' in found and "1 number found" in found
    done = admin.post(f"{URL}remove", data={"phone": PHONE}, follow_redirects=True)
    assert f"{MASKED} is off the opt-out list" in done.get_data(as_text=True)
    assert entries(app) == {"+34612345671": "admin"}
    gone = admin.post(f"{URL}remove", data={"phone": PHONE}, follow_redirects=True)
    assert "was not on the opt-out list" in gone.get_data(as_text=True)


def test_masked_search_needs_the_whole_number(admin: FlaskClient) -> None:
    html = page(admin, f"{URL}?q=0123", status=400)
    assert "numbers are masked" in html
    assert "out of date" in page(admin, f"{URL}?page=0", status=400)
    assert "out of date" in page(admin, f"{URL}?page=abc", status=400)


def test_full_numbers_are_searchable_by_digits_and_removable(
    backend: str, database_urls: dict[str, str], redis_url: str, app: Flask
) -> None:
    sms = SMS()
    sms.admin_check(lambda: True)
    full = make_app(database_urls[backend], redis_url, sms=sms, SMS_ADMIN_FULL_NUMBERS=True)
    full.config["WTF_CSRF_ENABLED"] = False
    client = full.test_client()
    try:
        client.post(f"{URL}add", data={"phone": PHONE}, follow_redirects=True)
        client.post(f"{URL}add", data={"phone": "+34612345671"}, follow_redirects=True)
        listing = page(client, f"{URL}?q=911123")
        assert PHONE in listing and "+34612345671" not in listing
        everyone = page(client)
        assert 'action="/sms/admin/opt-outs/remove"' in everyone and "+34612345671" in everyone
    finally:
        with full.app_context():
            full.extensions["sqlalchemy"].engine.dispose()


def csv_upload(client: FlaskClient, content: bytes, name: str = "list.csv") -> tuple[int, str]:
    response = client.post(
        f"{URL}import",
        data={"file": (io.BytesIO(content), name)},
        content_type="multipart/form-data",
    )
    return response.status_code, response.get_data(as_text=True)


def test_import_counts_added_already_and_invalid_lines(app: Flask, admin: FlaskClient) -> None:
    admin.post(f"{URL}add", data={"phone": PHONE})
    status, html = csv_upload(
        admin, b"phone,name\n+447911123456,Ann\n+34 612 345 671,Ben\nnot a number,Cy\n"
    )
    assert status == 200
    assert "1 added, 1 already on the list, 1 invalid." in html
    assert re.search(r"<li>Line 4: [^<]+</li>", html)
    assert entries(app) == {PHONE: "admin", "+34612345671": "import"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xff\xfe\x00+", "The file is not UTF-8 text"),
        (b"+447911123456\n" * 80_000, "The file is larger than 1024 KiB"),
    ],
)
def test_bad_imports_answer_400(
    app: Flask, admin: FlaskClient, content: bytes, message: str
) -> None:
    status, html = csv_upload(admin, content)
    assert status == 400 and message in html and 'id="import-error"' in html
    assert entries(app) == {}


def test_import_without_a_file_says_so(admin: FlaskClient) -> None:
    response = admin.post(f"{URL}import", data={}, content_type="multipart/form-data")
    assert response.status_code == 400
    assert "Choose a CSV file to import." in response.get_data(as_text=True)


def test_export_masks_like_the_screen(app: Flask, admin: FlaskClient) -> None:
    admin.post(f"{URL}add", data={"phone": PHONE, "note": "=HYPERLINK(1)"})
    response = admin.get(f"{URL}export.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    lines = response.get_data(as_text=True).lstrip("\ufeff").splitlines()
    assert lines[0] == "phone,source,note,created_at"
    assert lines[1].startswith(f"{MASKED},admin,'=HYPERLINK(1),")


def test_writes_need_the_csrf_token(app: Flask, admin_client: FlaskClient) -> None:
    for path in ("add", "remove", "import"):
        response = admin_client.post(f"{URL}{path}", data={"phone": PHONE})
        assert response.status_code == 400
    assert entries(app) == {}
