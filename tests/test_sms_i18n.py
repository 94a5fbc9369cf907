"""The extension's guest pages and messages in the guest's language (sms_ext.i18n).

An integrator app without Flask-Babel gets English whatever the browser asks; the same app with
Flask-Babel initialised gets the extension's Spanish catalog when its selector picks ``es``.
"""

from __future__ import annotations

import html
import re
import subprocess
import sys

import pytest
from flask import Flask, request
from flask.testing import FlaskClient
from flask_babel import Babel
from sqlalchemy import update

from sms_ext import Gateway
from sms_ext.errors import OtpRateLimited, wait_text
from sms_ext.i18n import gettext, html_lang, ngettext
from tests.test_otp_flow import PAGE, ask_code, latest_code

SPANISH = {"Accept-Language": "es-ES,es;q=0.9,en;q=0.5"}


def with_babel(app: Flask) -> Flask:
    """The integrator adds Flask-Babel with a browser-language selector."""
    Babel(app, locale_selector=lambda: request.accept_languages.best_match(["en", "es"]))
    return app


def browser(app: Flask, languages: str = SPANISH["Accept-Language"]) -> FlaskClient:
    """A test client whose every request carries ``Accept-Language: languages``."""
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = languages
    return client


def page_text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def test_without_babel_everything_stays_english(otp_app: Flask, simulator) -> None:
    assert "babel" not in otp_app.extensions
    client = browser(otp_app)
    bad = client.post(PAGE, data={"phone": "12"})
    assert bad.status_code == 400 and "This number is too short for South Africa." in page_text(bad)
    page = ask_code(client)
    text = page_text(page)
    assert page.status_code == 200 and '<html lang="en">' in text
    assert "Enter your code" in text and "We sent a 6-digit code by text message to" in text
    assert "<strong>+27 83 123 4567</strong>" in text
    wrong = client.post(PAGE, data={"sms_step": "code", "code": "000000"})
    assert "That code is not right. 4 tries left." in page_text(wrong)
    early = client.post(PAGE, data={"sms_step": "resend"})
    assert re.search(r"Please try again in (29|30) seconds\.", page_text(early))
    with otp_app.test_request_context(headers=SPANISH):
        assert gettext("Code") == "Code" and html_lang() == "en"
        assert ngettext("%(num)d minute", "%(num)d minutes", 1) == "1 minute"


def test_with_babel_the_code_page_speaks_spanish(otp_app: Flask, simulator) -> None:
    client = browser(with_babel(otp_app))
    bad = client.post(PAGE, data={"phone": "12"})
    assert "Este número es demasiado corto para Sudáfrica." in page_text(bad)
    page = ask_code(client)
    text = page_text(page)
    assert page.status_code == 200 and '<html lang="es">' in text
    assert "<title>Introduce tu código</title>" in text
    assert (
        "Hemos enviado un código de 6 cifras por SMS al <strong>+27 83 123 4567</strong>." in text
    )
    assert '<label for="code">Código</label>' in text and ">Conectar</button>" in text
    assert "Podrás pedir un código nuevo en 30 s." in text and "Usar otro número" in text
    assert 'data-waiting="Podrás pedir un código nuevo en {s} s."' in text
    wrong = client.post(PAGE, data={"sms_step": "code", "code": "000000"})
    assert "Ese código no es correcto. Te quedan 4 intentos." in page_text(wrong)
    short = client.post(PAGE, data={"sms_step": "code", "code": "12"})
    assert "Introduce el código de 6 cifras del SMS." in page_text(short)
    early = client.post(PAGE, data={"sms_step": "resend"})
    assert early.status_code == 429
    assert "Se han pedido demasiados códigos. Vuelve a intentarlo en" in page_text(early)
    code = latest_code(otp_app, simulator)
    assert client.post(PAGE, data={"sms_step": "code", "code": code}).status_code == 303
    english = browser(otp_app, "en-GB")
    assert "Enter your code" in page_text(ask_code(english, "+27831234568"))


def test_error_page_in_spanish(otp_app: Flask, simulator) -> None:
    with_babel(otp_app)
    with otp_app.app_context():  # no gateway: no code can come
        session = otp_app.extensions["sms"].session
        session.execute(update(Gateway).values(enabled=False))
        session.commit()
    page = ask_code(browser(otp_app))
    text = page_text(page)
    assert page.status_code == 503
    assert "<h1>Los códigos por SMS no están disponibles en este momento</h1>" in text
    assert "Ahora mismo no se puede enviar ningún SMS." in text and ">Volver</a>" in text


@pytest.mark.parametrize(
    ("seconds", "english", "spanish"),
    [
        (1, "1 second", "1 segundo"),
        (45, "45 seconds", "45 segundos"),
        (60, "1 minute", "1 minuto"),
        (600, "10 minutes", "10 minutos"),
        (7200, "2 hours", "2 horas"),
    ],
)
def test_wait_text_plurals(otp_app: Flask, seconds: int, english: str, spanish: str) -> None:
    with otp_app.test_request_context(headers=SPANISH):
        assert wait_text(seconds) == english
        assert OtpRateLimited(seconds).description.endswith(f"in {english}.")
    with_babel(otp_app)
    with otp_app.test_request_context(headers=SPANISH):
        assert wait_text(seconds) == spanish
        assert OtpRateLimited(seconds).description.endswith(f"en {spanish}.")


NO_BABEL = """
import sys
sys.modules["flask_babel"] = None  # as if it were not installed: importing it fails
from flask import Flask, render_template
from sms_ext import PhoneNumberError, i18n
from sms_ext.errors import OtpRateLimited
from sms_ext.text.phone import normalize_phone

app = Flask(__name__)
app.jinja_env.globals["csrf_token"] = lambda: "t"
app.jinja_loader = __import__("jinja2").PackageLoader("sms_ext")
with app.test_request_context(headers={"Accept-Language": "es"}):
    try:
        normalize_phone("12", default_region="ZA")
    except PhoneNumberError as exc:
        print(exc)
    print(OtpRateLimited(120).description)
    page = render_template(
        "sms/otp/code.html", phone="+27 83 123 4567", digits=6, resend_wait=0, action="/",
        error="", notice="", dead=False, branding={}, **i18n.template_context()
    )
    print(page.split("<title>")[1].split("</title>")[0], page.count('lang="en"'))
"""


def test_without_flask_babel_installed_the_extension_speaks_english() -> None:
    done = subprocess.run(
        [sys.executable, "-c", NO_BABEL], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.splitlines() == [
        "This number is too short for South Africa.",
        "Too many codes were requested. Please try again in 2 minutes.",
        "Enter your code 1",
    ]
