"""Global SMS settings: sending on/off, days to expire, debug logging.

Days to expire is a whole number of days on this page (``SMS_DAYS_TO_EXPIRE`` may still give
a fraction, e.g. for tests): an admin thinks in days, and a number input with steps of one
says so before the form is sent.
"""

from __future__ import annotations

from dataclasses import replace

from flask import flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_wtf import FlaskForm
from wtforms import BooleanField, IntegerField
from wtforms.validators import InputRequired, NumberRange

from .. import runtime
from ..state import get_state
from . import bp


class SettingsForm(FlaskForm):
    sending_enabled = BooleanField("Send SMS")
    days_to_expire = IntegerField(
        "Days to expire",
        validators=[
            InputRequired("Days to expire is required."),
            NumberRange(1, runtime.MAX_DAYS, f"Use a whole number from 1 to {runtime.MAX_DAYS}."),
        ],
    )
    debug_logging = BooleanField("Debug logging")


@bp.route("/settings", methods=["GET", "POST"])
def settings() -> ResponseReturnValue:
    state = get_state()
    current = runtime.current(state)
    days = current.days_to_expire
    shown = int(days) if float(days).is_integer() else days  # "2", not "2.0"
    form = SettingsForm(data={**current.__dict__, "days_to_expire": shown})
    if form.validate_on_submit():
        updated = replace(
            current,
            sending_enabled=form.sending_enabled.data,
            days_to_expire=float(form.days_to_expire.data),
            debug_logging=form.debug_logging.data,
        )
        runtime.save(state, updated)
        flash("Settings saved. Other processes apply them within a few seconds.", "ok")
        return redirect(url_for("sms_admin.settings"))
    status = 400 if form.errors else 200
    return render_template("sms/admin/settings.html", form=form, max_days=runtime.MAX_DAYS), status
