"""The yardstick of ``bench/otp_http.py``: a bare Flask endpoint at the splash page's URL.

Served by gunicorn exactly like the portal (``bench.otp_bare:app``, same flags). Its POST reads
the ``phone`` form field and answers a tiny page: Flask, Werkzeug's form parsing and gunicorn,
with no database, Redis, session, CSRF or template. A module of its own so the gunicorn workers
import nothing but Flask (``otp_http`` pulls in the test helpers and SQLAlchemy).
"""

from __future__ import annotations

from flask import Flask, request
from markupsafe import escape

MARKER = "bare-ok"
"""Every answer of the endpoint contains this; the load generator checks for it."""

app = Flask(__name__)


@app.route("/s/<slug>/", methods=["GET", "POST"])
def splash(slug: str) -> str:
    phone = request.form.get("phone", "") if request.method == "POST" else ""
    return f"<!doctype html><title>{MARKER}</title><p>{escape(slug)}: {escape(phone)}</p>"
