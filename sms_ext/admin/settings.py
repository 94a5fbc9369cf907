"""Global SMS settings: sending on/off, days to expire, debug logging."""

from __future__ import annotations

from dataclasses import replace

from flask import flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_wtf import FlaskForm
from wtforms import BooleanField, DecimalField
from wtforms.validators import InputRequired, NumberRange

from .. import runtime
from ..state import get_state
from . import bp


class SettingsForm(FlaskForm):
    sending_enabled = BooleanField("Send SMS")
    days_to_expire = DecimalField(
        "Days to expire",
        places=2,
        validators=[
            InputRequired("Days to expire is required."),
            NumberRange(0.01, runtime.MAX_DAYS, f"Use a number from 0.01 to {runtime.MAX_DAYS}."),
        ],
    )
    debug_logging = BooleanField("Debug logging")


@bp.route("/settings", methods=["GET", "POST"])
def settings() -> ResponseReturnValue:
    state = get_state()
    current = runtime.current(state)
    form = SettingsForm(data={**current.__dict__})
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
    return render_template("sms/admin/settings.html", form=form), status
