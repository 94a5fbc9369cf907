"""The templates admin pages: deny by default, CRUD, bad input answered with 400 and the
reason, CSRF, and the counter rendered on the server (no JavaScript needed)."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from sms_ext import SMS, MessageTemplate
from sms_ext.text.segments import analyze

URL = "/sms/admin/templates"
GOOD = {"name": "Welcome", "kind": "personal", "language": "en", "body": "Hi {{ name }}!"}


def count(app: Flask) -> int:
    with app.app_context():
        return app.extensions["sms"].session.scalar(select(func.count(MessageTemplate.id)))


def stored(app: Flask) -> list[tuple[str, str, str, str]]:
    with app.app_context():
        rows = app.extensions["sms"].session.scalars(select(MessageTemplate)).all()
        return [(t.name, t.kind, t.language, t.body) for t in rows]


def test_pages_are_denied_without_admin_check(app: Flask, sms: SMS) -> None:
    client = app.test_client()
    for method, path in [
        ("get", URL),
        ("get", f"{URL}/new"),
        ("post", f"{URL}/new"),
        ("get", f"{URL}/1"),
        ("post", f"{URL}/1/delete"),
        ("post", f"{URL}/preview"),
    ]:
        assert getattr(client, method)(path, data=GOOD).status_code == 403, path
    assert count(app) == 0


def test_create_list_edit_delete(app: Flask, admin: FlaskClient) -> None:
    empty = admin.get(URL)
    assert empty.status_code == 200 and "No template yet" in empty.get_data(as_text=True)
    assert 'href="/sms/admin/templates"' in empty.get_data(as_text=True)  # in the menu
    created = admin.post(f"{URL}/new", data=GOOD)
    assert created.status_code == 303 and created.headers["Location"].endswith(URL)
    assert stored(app) == [("Welcome", "personal", "en", "Hi {{ name }}!")]
    page = admin.get(URL).get_data(as_text=True)
    assert "Welcome" in page and "Personal (1:1)" in page and "Hi {{ name }}!" in page
    [template_id] = [int(i) for i in re.findall(r'/sms/admin/templates/(\d+)"', page)]
    edit = admin.get(f"{URL}/{template_id}").get_data(as_text=True)
    assert "Hi {{ name }}!" in edit and "{{ opt_out }}" in edit  # the kind's variables
    admin.post(f"{URL}/{template_id}", data={**GOOD, "language": "es", "body": "Hola {{ name }}"})
    assert stored(app) == [("Welcome", "personal", "es", "Hola {{ name }}")]
    deleted = admin.post(f"{URL}/{template_id}/delete")
    assert deleted.status_code == 303 and count(app) == 0
    assert admin.get(f"{URL}/{template_id}").status_code == 404
    assert admin.post(f"{URL}/{template_id}/delete").status_code == 404


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"body": "Hi\n{{ name }"}, "Line 2: unexpected &#39;}&#39;"),
        (
            {"body": "Hi {{ name }}\n{{ voucher_code }}"},
            "Line 2: unknown variable &#39;voucher_code&#39;",
        ),
        ({"body": "{{ &#39;&#39;.__class__ }}".replace("&#39;", "'")}, "reading an attribute"),
        ({"body": "{{ 'x' * 10**9 }}"}, "would be over 1600 characters"),
        ({"kind": "otp", "body": "Welcome"}, "An OTP template must show the code"),
        ({"kind": "spam"}, "Unknown kind &#39;spam&#39;"),
        ({"kind": ""}, "Unknown kind"),
        ({"name": "  "}, "The name is required."),
        ({"name": "n" * 81}, "The name must be at most 80 characters."),
        ({"name": "a\tb"}, "The name must not contain line breaks or control characters."),
        ({"body": "Hi\x00 {{ name }}"}, "The template must not contain NUL characters."),
        ({"language": ""}, "The language is required"),
        ({"language": "<b>"}, "&#39;&lt;b&gt;&#39; is not a language tag"),
        ({"body": ""}, "The template is empty."),
        ({"body": "x" * 2001}, "The template must be at most 2,000 characters."),
    ],
)
def test_bad_input_is_a_400_with_the_reason(
    app: Flask, admin: FlaskClient, changes: dict[str, str], message: str
) -> None:
    response = admin.post(f"{URL}/new", data={**GOOD, **changes})
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert message in html
    assert 'aria-invalid="true"' in html
    assert count(app) == 0


def test_a_duplicate_name_is_refused_on_create_and_on_rename(
    app: Flask, admin: FlaskClient
) -> None:
    admin.post(f"{URL}/new", data=GOOD)
    admin.post(f"{URL}/new", data={**GOOD, "name": "Other"})
    again = admin.post(f"{URL}/new", data=GOOD)
    assert again.status_code == 400
    assert "already a personal template named &#39;Welcome&#39; in &#39;en&#39;" in again.get_data(
        as_text=True
    )
    with app.app_context():
        other = app.extensions["sms"].session.scalar(
            select(MessageTemplate.id).where(MessageTemplate.name == "Other")
        )
    assert admin.post(f"{URL}/{other}", data=GOOD).status_code == 400
    assert admin.post(f"{URL}/{other}", data={**GOOD, "name": "Other"}).status_code == 303
    assert count(app) == 2


@pytest.mark.parametrize("template_id", ["abc", "0", "-1", "99999999999999999999", "²"])
def test_bad_ids_are_404(admin: FlaskClient, template_id: str) -> None:
    assert admin.get(f"{URL}/{template_id}").status_code == 404
    assert admin.post(f"{URL}/{template_id}", data=GOOD).status_code == 404
    assert admin.post(f"{URL}/{template_id}/delete").status_code == 404


def test_csrf_is_required(app: Flask, admin_client: FlaskClient) -> None:
    assert admin_client.post(f"{URL}/new", data=GOOD).status_code == 400
    assert admin_client.post(f"{URL}/preview", data=GOOD).status_code == 400
    assert count(app) == 0


def test_the_counter_is_rendered_on_the_server(app: Flask, admin: FlaskClient) -> None:
    fresh = admin.get(f"{URL}/new?kind=otp").get_data(as_text=True)
    assert 'id="counter-chars">0<' in fresh and 'class="counter-error"' not in fresh
    assert '<option selected value="otp">' in fresh
    body = "{{ name }}: " + "a" * 155  # "Alex: " + 155 = 161 characters: two parts
    preview = admin.post(f"{URL}/new", data={**GOOD, "body": body, "action": "preview"})
    assert preview.status_code == 200 and count(app) == 0  # "Preview" does not save
    html = preview.get_data(as_text=True)
    assert re.search(r'id="counter-chars">161<.*id="counter-encoding">GSM-7<', html, re.S)
    assert 'id="counter-parts">2<' in html and "145 septets left" in html
    curly = admin.post(f"{URL}/preview", data={**GOOD, "body": "It\u2019s {{ name }} \u2013 hi"})
    html = curly.get_data(as_text=True)
    info = analyze("It\u2019s Alex \u2013 hi")
    assert (info.encoding, info.segments) == ("ucs2", 1)
    assert 'id="counter-encoding">UCS-2<' in html
    assert (
        "<mark>\u2019</mark> <code>U+2019</code>, <mark>\u2013</mark> <code>U+2013</code>" in html
    )
    assert "It<mark>\u2019</mark>s Alex <mark>\u2013</mark> hi" in html
    fixed = admin.post(f"{URL}/preview", data={**GOOD, "body": "It\u2019s", "plain": "y"})
    assert 'id="counter-encoding">GSM-7<' in fixed.get_data(as_text=True)
    error = admin.post(f"{URL}/preview", data={**GOOD, "body": "{{ nam }}"})
    assert error.status_code == 200
    assert "Line 1: unknown variable &#39;nam&#39;" in error.get_data(as_text=True)


def test_the_list_shows_the_parts_of_the_sample(app: Flask, admin: FlaskClient) -> None:
    admin.post(f"{URL}/new", data={**GOOD, "body": "\u201c{{ name }}\u201d " + "a" * 70})
    row = admin.get(URL).get_data(as_text=True)
    assert re.search(r"<td>2</td>", row)  # 77 UCS-2 units: two parts
    saved = admin.post(
        f"{URL}/new",
        data={**GOOD, "name": "plain", "body": "\u201c{{ name }}\u201d \u2014 ok", "plain": "y"},
    )
    assert saved.status_code == 303
    assert ("plain", "personal", "en", '"{{ name }}" - ok') in stored(app)
