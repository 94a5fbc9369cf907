"""SMS templates: checks before saving, the sandbox, capped output, picking by language, and
the guest code SMS taken from the OTP template of the guest's language."""

from __future__ import annotations

import re
import time

import pytest
from flask import Flask
from sqlalchemy import select

from sms_ext import SMS, ConfigError, Message, MessageTemplate, TemplateError
from sms_ext.messages import secrecy, template_store
from sms_ext.text import gsm, templates
from sms_ext.text.segments import GSM7_CHARS, is_gsm7
from tests.conftest import _empty_tables, drain, make_app
from tests.helpers import custom_gateway
from tests.otp_app import build


def refused(body: str, kind: str = "personal") -> str:
    with pytest.raises(TemplateError) as caught:
        templates.check(body, kind)
    return str(caught.value)


# -- checks ------------------------------------------------------------------------------------


def test_a_good_template_gives_its_sample_text() -> None:
    body = (
        "Hi {{ name|default('guest') }}, welcome to {{ venue }}.\n"
        "{% if opt_out %}{{ opt_out }}{% endif %}"
    )
    assert templates.check(body, "personal") == (
        "Hi Alex, welcome to Harbour Café.\nReply STOP to opt out"
    )


def test_syntax_error_names_its_line() -> None:
    assert refused("Hello\n{{ name }\nbye").startswith("Line 2: unexpected '}'")
    assert refused("Hi\n\n{% if name %}x").startswith("Line 3: Unexpected end of template")


def test_unknown_variable_is_named_with_its_line() -> None:
    message = refused("Hi {{ name }}\nYour voucher: {{ voucher }}\n{{ voucher }}")
    assert message.startswith("Line 2: unknown variable 'voucher'")
    assert "can use location, name, opt_out, phone, venue" in message
    # Each kind has its own variables: a code only in OTP and voucher templates.
    assert refused("{{ code }}", "notice").startswith("Line 1: unknown variable 'code'")
    assert templates.check("{{ code }} {{ duration }}", "voucher") == "482913 2 hours"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("{{ ''.__class__ }}", "Line 1: reading an attribute"),
        ("{{ name.__class__.__mro__ }}", "Line 1: reading an attribute"),
        ("x\n{{ name['__class__'] }}", "Line 2: reading an item"),
        ("{{ name.upper() }}", "Line 1: calling a function"),
        ("{{ cycler.__init__.__globals__ }}", "Line 1: reading an attribute"),
        ("{{ lipsum() }}", "Line 1: calling a function"),
        ("{% for i in name %}{{ i }}{% endfor %}", "Line 1: a {% for %} loop"),
        ("{% set x = name %}{{ x }}", "Line 1: {% set %}"),
        ("{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}", "Line 1: a {% macro %}"),
        ("{% include 'sms/admin/base.html' %}", "Line 1: {% include %}"),
        ("{{ name|attr('__class__') }}", "Line 1: unknown filter 'attr'"),
        ("{{ name|center(1000000000) }}", "Line 1: unknown filter 'center'"),
    ],
)
def test_sandbox_escapes_are_refused_with_their_line(body: str, expected: str) -> None:
    assert refused(body).startswith(expected)


def test_unknown_names_cannot_reach_python() -> None:
    # Jinja's globals are removed: range, dict, lipsum, cycler... are unknown variables.
    assert refused("{{ range }}").startswith("Line 1: unknown variable 'range'")
    assert refused("{{ self }}").startswith("Line 1: unknown variable 'self'")
    assert templates.render("[{{ range }}{{ config }}{{ request }}]", {}) == "[]"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("{{ 'x' * 10**9 }}", "would be over 1600 characters"),
        ("{{ 10**9 * name }}", "would be over 1600 characters"),
        ("{{ 10 ** 10 ** 10 }}", "the number is too large"),
        ("{{ '%999999999s' % name }}", "'%' formatting is not available"),
        ("{{ 'x' * 900 }}{{ 'y' * 900 }}", "The text would be longer than 1600 characters"),
    ],
)
def test_huge_output_is_refused_quickly(body: str, expected: str) -> None:
    started = time.perf_counter()
    assert expected in refused(body)
    assert time.perf_counter() - started < 1


def test_output_is_capped_when_rendering_with_long_values() -> None:
    assert len(templates.render("{{ name }}", {"name": "a" * 1600})) == 1600
    with pytest.raises(TemplateError, match="longer than 1600"):
        templates.render("{{ name }}!", {"name": "a" * 1600})


def test_otp_template_must_show_the_code() -> None:
    assert refused("Your Wi-Fi code", "otp") == (
        "An OTP template must show the code: put {{ code }} in it."
    )
    assert refused("{% if false %}{{ code }}{% endif %}", "otp").startswith("An OTP template")
    assert templates.check("Code {{ code }} ({{ minutes }} min)", "otp") == "Code 482913 (10 min)"


def test_unknown_kind_and_empty_body() -> None:
    assert refused("hi", "spam").startswith("Unknown kind 'spam'")
    assert refused("  \n", "notice") == "The template is empty."
    assert refused("x" * 2001).startswith("The template is longer than 2000")


def test_the_otp_config_is_checked_by_the_same_rules(service_urls, redis) -> None:
    with pytest.raises(ConfigError, match=r"SMS_OTP_MESSAGE .*unknown variable 'kode'"):
        make_app(*service_urls, SMS_OTP_MESSAGE="Code {{ kode }}")
    with pytest.raises(ConfigError, match=r"SMS_OTP_MESSAGE .*reading an attribute"):
        make_app(*service_urls, SMS_OTP_MESSAGE="{{ code.__class__ }} {{ code }}")


# -- GSM-7 look-alikes -------------------------------------------------------------------------


def test_lookalikes_are_gsm7_and_fix_typical_pasted_text() -> None:
    assert all(GSM7_CHARS.issuperset(plain) for plain in gsm.LOOKALIKES.values())
    pasted = "\u201cWelcome\u201d \u2013 it\u2019s free\u2026\u00a0\u00abenjoy\u00bb"
    assert not is_gsm7(pasted)
    assert gsm.plain(pasted) == '"Welcome" - it\'s free... "enjoy"'
    assert is_gsm7(gsm.plain(pasted))
    assert gsm.plain("Café ç 😀") == "Café ç 😀"  # no faithful stand-in: kept


# -- store and public API ----------------------------------------------------------------------


def add(sms_app: Flask, kind: str, language: str, body: str, name: str = "main") -> int:
    session = sms_app.extensions["sms"].session
    template = template_store.save(
        session, {"name": name, "kind": kind, "language": language, "body": body}
    )
    session.commit()
    return template.id


def test_render_template_picks_language_then_english(app: Flask, sms: SMS) -> None:
    with app.app_context():
        with pytest.raises(TemplateError, match="There is no voucher template in es"):
            sms.render_template("voucher", {"code": "X"}, language="es")
        add(app, "voucher", "en", "Voucher {{ code }}")
        add(app, "voucher", "es", "Bono {{ code }}", name="b")
        add(app, "voucher", "es", "Cupón {{ code }}", name="a")
        other = add(app, "campaign", "es", "Hola {{ name }}")
        assert sms.render_template("voucher", {"code": "X"}, language="es") == "Cupón X"
        assert sms.render_template("voucher", {"code": "X"}, language="es-MX") == "Cupón X"
        assert sms.render_template("voucher", {"code": "X"}, language="de") == "Voucher X"
        assert sms.render_template("voucher", {"code": "X"}) == "Voucher X"
        assert sms.render_template("voucher", {"name": "Ana"}, template_id=other) == "Hola Ana"
        with pytest.raises(TemplateError, match="no template #999"):
            sms.render_template("voucher", {}, template_id=999)
        with pytest.raises(TemplateError, match="Unknown kind"):
            sms.render_template("spam", {})
        assert [t.name for t in sms.templates("voucher", "es")] == ["a", "b"]
        assert [t.kind for t in sms.templates(language="es")] == ["campaign", "voucher", "voucher"]
        assert all(isinstance(t, MessageTemplate) for t in sms.templates())


def test_save_refuses_duplicates_bad_language_and_applies_lookalikes(app: Flask) -> None:
    with app.app_context():
        session = app.extensions["sms"].session
        add(app, "notice", "en", "Closed today")
        with pytest.raises(TemplateError, match="already a notice template named 'main' in 'en'"):
            add(app, "notice", "EN", "Again")
        session.rollback()
        with pytest.raises(TemplateError, match="not a language tag"):
            add(app, "notice", "english!", "x")
        saved = template_store.save(
            session,
            {
                "name": "q",
                "kind": "notice",
                "language": "pt_BR",
                "body": "It\u2019s \u201cok\u201d",
                "plain": True,
            },
        )
        assert (saved.language, saved.body) == ("pt-br", 'It\'s "ok"')
        with pytest.raises(TemplateError, match="not valid Unicode"):
            add(app, "notice", "en", "Hi \ud800", name="bad")


# -- the guest code SMS ------------------------------------------------------------------------


def test_otp_sms_comes_from_the_language_template_else_the_config(
    service_urls, redis, simulator
) -> None:
    app = build(*service_urls, WTF_CSRF_ENABLED=False, SMS_OTP_WEBOTP_HOST="wifi.example.com")
    try:
        with app.app_context():
            _empty_tables(app.extensions["sqlalchemy"])
            custom_gateway(app, simulator, "otp")
        client = app.test_client()

        phones = iter(range(1, 10))

        def sent(page: str) -> str:  # a new phone each time: the per-phone limit stays away
            client.post(page, data={"phone": f"+2783123456{next(phones)}"})
            with app.app_context():
                drain(app)
            return simulator.requests_for("custom")[-1].json["text"]

        text = sent("/s/cafe/?lang=es")  # no template yet: the config
        assert re.fullmatch(r"Your Wi-Fi code is (\d{6})\n\n@wifi.example.com #\1", text)
        with app.app_context():
            add(app, "otp", "es", "Tu código: {{ code }} (válido {{ minutes }} min)")
        client = app.test_client()
        text = sent("/s/cafe/?lang=es")
        code = re.search(r"\d{6}", text)[0]
        assert text == f"Tu código: {code} (válido 5 min)\n\n@wifi.example.com #{code}"
        # The stored body is masked; only the sealed copy holds the code.
        with app.app_context():
            message = (
                app.extensions["sms"]
                .session.scalars(select(Message).order_by(Message.id.desc()))
                .first()
            )
            hidden = secrecy.masked(code)
            assert (
                message.body == f"Tu código: {hidden} (válido 5 min)\n\n@wifi.example.com #{hidden}"
            )
            assert code not in message.body
        client = app.test_client()
        assert sent("/s/cafe/?lang=fr").startswith("Your Wi-Fi code is")  # no en template
        with app.app_context():
            add(app, "otp", "en", "Code {{ code }}")
        client = app.test_client()
        assert sent("/s/cafe/?lang=fr").startswith("Code ")  # English template first
    finally:
        with app.app_context():
            app.extensions["sqlalchemy"].engine.dispose()
