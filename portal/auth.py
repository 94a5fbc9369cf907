"""Admin login for the portal (Flask-Login); tells sms_ext who may use its admin pages."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import LoginManager, current_user, login_user, logout_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from .extensions import db, sms
from .models import Admin

bp = Blueprint("auth", __name__, url_prefix="/admin")
login_manager = LoginManager()
login_manager.login_view = "auth.login"


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=80)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=256)])


@login_manager.user_loader
def load_admin(admin_id: str) -> Admin | None:
    return db.session.get(Admin, int(admin_id)) if admin_id.isdigit() else None


def lazy_current_user() -> dict[str, Any]:
    """``current_user`` for templates, loaded only when one uses it."""
    return {"current_user": current_user}


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


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    form = LoginForm()
    if form.validate_on_submit():
        admin = db.session.scalar(select(Admin).where(Admin.username == form.username.data))
        if admin is not None and admin.check_password(form.password.data):
            login_user(admin)
            return redirect(_safe_next(request.args.get("next")))
        flash("Wrong username or password.", "error")
        return render_template("portal/login.html", form=form), 401
    status = 400 if form.errors else 200
    return render_template("portal/login.html", form=form), status


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    logout_user()
    return redirect(url_for("auth.login"))
