"""A minimal integrator app for OTP tests: one splash blueprint protected by ``sms.protect``.

It does not use ``portal/``: it is what the README's integrator example describes.
"""

from __future__ import annotations

from urllib.parse import urlencode

from flask import Blueprint, Flask, redirect, render_template_string, request

from sms_ext import SMS, PhoneNumberError
from tests.conftest import make_app

FORM = """<form method=post action="{{ request.full_path.rstrip('?') }}">
<input type=hidden name=csrf_token value="{{ csrf_token() }}">
<input name=phone type=tel autocomplete=tel value="{{ typed }}">{{ error }}
<button>Send code</button></form>"""


def build(database_url: str, redis_url: str, *, protect_first: bool = False, **config) -> Flask:
    """The app; ``settings["otp"]`` toggles the OTP step like a splash page's switch."""
    sms = SMS()
    app = make_app(database_url, redis_url, sms=sms, **config)
    splash = Blueprint("splash", __name__)
    app.config["SPLASH_OTP"] = True
    verified: list[tuple[str, bool, dict]] = []
    app.extensions["verified_guests"] = verified

    @splash.route("/s/<slug>/", methods=["GET", "POST"])
    def page(slug: str):
        if request.method == "GET":
            return render_template_string(FORM, typed="", error="")
        try:
            return sms.verify_phone(request.form.get("phone", ""))
        except PhoneNumberError as exc:
            return render_template_string(FORM, typed=request.form.get("phone", ""), error=exc), 400

    def on_verified(phone: str, by_otp: bool):
        verified.append((phone, by_otp, dict(request.args)))
        login = request.args.get("login_url")
        if login:
            return redirect(f"{login}?{urlencode(list(request.args.items(multi=True)))}", 303)
        return f"connected {phone}"

    def protect() -> None:
        sms.protect(
            splash,
            on_verified=on_verified,
            required=lambda: app.config["SPLASH_OTP"],
            location=lambda: request.view_args["slug"],
            region=lambda: "ZA",
            language=lambda: request.args.get("lang"),
        )

    if protect_first:
        protect()
    app.register_blueprint(splash)
    if not protect_first:
        protect()
    return app
