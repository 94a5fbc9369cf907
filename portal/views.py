"""The portal's public landing page."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template, url_for

from .cli import DEMO_SLUG
from .demo_pages import splash_query

bp = Blueprint("portal", __name__)


@bp.get("/")
def index() -> str:
    """Links only: anyone can open it, so it shows no gateway, number, count or error."""
    splash_url = None
    if current_app.config["PORTAL_DEMO"]:
        controller = url_for("demo.controller_login", _external=True)
        splash_url = f"{url_for('splash.splash', slug=DEMO_SLUG)}?{splash_query(controller)}"
    return render_template("portal/index.html", splash_url=splash_url)
