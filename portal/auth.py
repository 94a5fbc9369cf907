"""Admin login for the portal (Flask-Login); tells sms_ext who may use its admin pages.

A session names the admin and their session version (``"7:3"``): logging out or changing the
password bumps the version, so every copy of an older session cookie stops working.
"""

from __future__ import annotations

import math
import re
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import LoginManager, current_user, login_user, logout_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import Field, PasswordField, StringField
from wtforms.validators import DataRequired, Length, ValidationError

from sms_ext.checks import text_problem

from . import login_throttle
from .extensions import db, sms
from .models import Admin, check_dummy_password

bp = Blueprint("auth", __name__, url_prefix="/admin")
login_manager = LoginManager()
login_manager.login_view = "auth.login"
_SESSION_ID = re.compile(r"(?P<id>[0-9]{1,9}):(?P<version>[0-9]{1,9})")


def one_line_text(form: FlaskForm, field: Field) -> None:
    """Refuse what the database cannot compare (a NUL is a PostgreSQL error, not a name)."""
    problem = text_problem(field.data, field.label.text, 80)
    if problem:
        raise ValidationError(problem)


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), one_line_text])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=256)])


class LogoutForm(FlaskForm):
    """No fields: only its CSRF token, so another site cannot log an admin out."""


@login_manager.user_loader
def load_admin(session_id: str) -> Admin | None:
    """The admin of a session id from :meth:`Admin.get_id`, if that session is still current."""
    match = _SESSION_ID.fullmatch(session_id)
    if match is None:  # a session from before session versions, or garbage
        return None
    admin = db.session.get(Admin, int(match["id"]))
    return admin if admin is not None and admin.session_version == int(match["version"]) else None


def lazy_current_user() -> dict[str, Any]:
    """``current_user`` for templates, loaded only when one uses it."""
    return {"current_user": current_user}


@sms.admin_name
def admin_username() -> str | None:
    """The logged-in admin's username, recorded on the test messages and campaigns they send."""
    return current_user.username if current_user.is_authenticated else None


@sms.admin_check
def admins_only() -> bool | ResponseReturnValue:
    """Logged-in portal admins may use the SMS admin; others are sent to the login page."""
    if current_user.is_authenticated:
        return True
    return redirect(url_for("auth.login", next=request.full_path))


def _safe_next(target: str | None) -> str:
    """Only local paths: a login link must not bounce an admin to another site."""
    if target and target.startswith("/") and not target.startswith("//"):
        parts = urlsplit(target)
        if not parts.netloc and not parts.scheme:
            return target
    return url_for("sms_admin.dashboard")


def _throttled(wait: int, form: LoginForm) -> ResponseReturnValue:
    minutes = math.ceil(wait / 60)
    flash(
        "Too many failed logins from here or for this user. "
        f"Try again in {minutes} minute{'s' if minutes != 1 else ''}.",
        "error",
    )
    return render_template("portal/login.html", form=form), 429, {"Retry-After": str(wait)}


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    form = LoginForm()
    if form.validate_on_submit():
        ip, username = request.remote_addr or "", form.username.data
        wait = login_throttle.seconds_to_wait(ip, username)
        if wait:
            return _throttled(wait, form)
        admin = db.session.scalar(select(Admin).where(Admin.username == username))
        if admin is None:
            # An unknown user costs a hash too: timing must not tell real usernames from others.
            check_dummy_password(form.password.data)
        elif admin.check_password(form.password.data):
            login_user(admin)
            return redirect(_safe_next(request.args.get("next")))
        login_throttle.count_failure(ip, username)
        flash("Wrong username or password.", "error")
        return render_template("portal/login.html", form=form), 401
    status = 400 if form.errors else 200
    return render_template("portal/login.html", form=form), status


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    """Ends this admin's sessions everywhere: the version in every copied cookie is now old."""
    if not LogoutForm().validate_on_submit():
        abort(
            400,
            "The logout form expired or came from another site: reload the page and "
            "press Log out again.",
        )
    if current_user.is_authenticated:
        current_user.session_version += 1
        db.session.commit()
        logout_user()
    return redirect(url_for("auth.login"))
