"""The portal's guest pages in the guest's language (portal.i18n, Flask-Babel).

The location's language comes first, then the browser's ``Accept-Language`` among the shipped
languages, then English; the extension's code page and the OTP text follow the same choice.
"""

from __future__ import annotations

import html
import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine
from sqlalchemy import text as sql

from portal import create_app
from portal.extensions import db
from portal.i18n import BROWSER, guest_language
from portal.models import Location
from portal.splash import forget_venue
from sms_ext import Gateway, MessageTemplate
from tests.conftest import PG_URL, TEST_KEY, drain
from tests.helpers import custom_gateway
from tests.simulator import GatewaySimulator
from tests.test_portal_splash import add_location

SPANISH = "es-ES,es;q=0.9,en;q=0.5"
ENGLISH = "en-GB,en;q=0.9"


def browser(app: Flask, languages: str) -> FlaskClient:
    """A test client whose every request carries ``Accept-Language: languages``."""
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = languages
    return client


def text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def set_language(app: Flask, slug: str, language: str) -> None:
    with app.app_context():
        location = db.session.query(Location).filter_by(slug=slug).one()
        location.language = language
        db.session.commit()


def test_the_browser_language_picks_the_splash_page_language(portal_app: Flask) -> None:
    add_location(portal_app)
    set_language(portal_app, "cafe", BROWSER)
    spanish = text(browser(portal_app, SPANISH).get("/s/cafe/"))
    assert '<html lang="es">' in spanish
    assert "Introduce tu número de móvil para conectarte." in spanish
    assert "Los números sin + se leen como de Sudáfrica (+27)." in spanish
    assert "Acepto las condiciones de uso" in spanish
    assert "Quiero recibir noticias y ofertas de Café Central por SMS (opcional)" in spanish
    assert ">Conectar</button>" in spanish
    english = text(browser(portal_app, ENGLISH).get("/s/cafe/"))
    assert '<html lang="en">' in english and "Enter your mobile number to get online." in english
    # Not shipped: English, the default.
    assert '<html lang="en">' in text(browser(portal_app, "de-DE,de;q=0.9").get("/s/cafe/"))


@pytest.mark.parametrize(
    ("location_language", "browser_language", "shown"),
    [
        ("es", ENGLISH, "es"),
        ("en", SPANISH, "en"),
        (BROWSER, SPANISH, "es"),
        (BROWSER, ENGLISH, "en"),
        ("de", SPANISH, "es"),
        ("de", ENGLISH, "en"),
    ],
)
def test_the_location_language_overrides_the_browser(
    portal_app: Flask, location_language: str, browser_language: str, shown: str
) -> None:
    add_location(portal_app)
    set_language(portal_app, "cafe", location_language)
    page = text(browser(portal_app, browser_language).get("/s/cafe/"))
    assert f'<html lang="{shown}">' in page
    wanted = {"es": "Acepto las condiciones de uso", "en": "I accept the terms of use"}
    assert wanted[shown] in page


def test_guest_messages_and_the_404_page_in_spanish(portal_app: Flask) -> None:
    add_location(portal_app)
    set_language(portal_app, "cafe", BROWSER)
    client = browser(portal_app, SPANISH)
    no_terms = client.post("/s/cafe/", data={"phone": "0831234567"})
    assert no_terms.status_code == 400
    assert "Acepta las condiciones de uso para continuar." in text(no_terms)
    bad = client.post("/s/cafe/", data={"phone": "12", "terms": "yes"})
    assert "Este número es demasiado corto para Sudáfrica." in text(bad)
    missing = client.get("/s/nowhere/")
    assert missing.status_code == 404 and "Página de Wi-Fi no encontrada" in text(missing)
    assert '<html lang="es">' in text(missing)
    bad_login = client.get("/s/cafe/?login_url=javascript:alert(1)")
    assert bad_login.status_code == 400 and "Este enlace no se puede usar" in text(bad_login)
    connected = client.post("/s/cafe/", data={"phone": "0831234567", "terms": "yes"})
    assert "Ya tienes conexión" in text(connected)
    assert "Disfruta del Wi-Fi gratis en Café Central." in text(connected)


def test_code_page_and_code_sms_follow_the_location_language(
    portal_app: Flask, simulator: GatewaySimulator
) -> None:
    add_location(portal_app, otp=True)
    set_language(portal_app, "cafe", "es")
    with portal_app.app_context():
        custom_gateway(portal_app, simulator, "otp")
        session = portal_app.extensions["sms"].session
        session.add(
            MessageTemplate(
                name="OTP", kind="otp", language="es", body="Tu código de Wi-Fi es {{ code }}"
            )
        )
        session.commit()
    client = browser(portal_app, ENGLISH)  # the location's language wins
    page = client.post("/s/cafe/", data={"phone": "0831234567", "terms": "yes"})
    assert page.status_code == 200
    code_page = text(page)
    assert '<html lang="es">' in code_page and "<h1>Introduce tu código</h1>" in code_page
    assert "Wi-Fi gratis" in code_page and "Usar otro número" in code_page
    wrong = client.post("/s/cafe/", data={"sms_step": "code", "code": "12"})
    assert "Introduce el código de 6 cifras del SMS." in text(wrong)
    with portal_app.app_context():
        drain(portal_app)
    sms_text = simulator.requests_for("custom")[-1].json["text"]
    code = re.fullmatch(r"Tu código de Wi-Fi es (\d{6})", sms_text)[1]
    done = client.post("/s/cafe/", data={"sms_step": "code", "code": code})
    assert done.status_code == 200 and "Ya tienes conexión" in text(done)


def test_guest_language_outside_a_request_is_english(portal_app: Flask) -> None:
    with portal_app.app_context():
        assert guest_language() == "en"


@pytest.mark.skipif(not PG_URL, reason="needs PostgreSQL (SMS_TEST_DATABASE_URL)")
@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_stalled_database_while_choosing_the_language_is_a_503(
    portal_app: Flask, database_urls: dict[str, str], redis_url: str
) -> None:
    """The language is chosen from the location, read from the database: when that read
    times out, the guest still gets the "try again soon" page (in the browser's language),
    not a server error."""
    add_location(portal_app, otp=True)
    with portal_app.app_context():
        db.session.add(Gateway(name="sandbox", type="sandbox", priority=1))
        db.session.commit()
    app = create_app(
        {
            "SECRET_KEY": TEST_KEY,
            "SQLALCHEMY_DATABASE_URI": database_urls["postgresql"],
            "SMS_REDIS_URL": redis_url,
            "WTF_CSRF_ENABLED": False,
            "PORTAL_DB_STATEMENT_TIMEOUT": 1,
        }
    )
    client = browser(app, SPANISH)
    asked = client.post("/s/cafe/", data={"phone": "0831234567", "terms": "yes"})
    assert asked.status_code == 200
    with app.app_context():
        forget_venue()  # the next request reads the location again
    locker = create_engine(database_urls["postgresql"])
    try:
        with locker.begin() as connection:
            connection.execute(sql("SET LOCAL idle_in_transaction_session_timeout = '8s'"))
            connection.execute(sql("LOCK TABLE location IN ACCESS EXCLUSIVE MODE"))
            response = client.post("/s/cafe/", data={"sms_step": "code", "code": "12"})
    finally:
        locker.dispose()
        with app.app_context():
            db.engine.dispose()
    assert response.status_code == 503
    page = text(response)
    assert '<html lang="es">' in page and "no está disponible en este momento" in page
