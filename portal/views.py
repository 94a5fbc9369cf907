"""Pages of the demo portal. The guest splash flow arrives with the OTP issue."""

from __future__ import annotations

from flask import Blueprint, render_template
from sqlalchemy import func, select

from sms_ext import Gateway, Message

from .extensions import db

bp = Blueprint("portal", __name__)


@bp.get("/")
def index() -> str:
    """A landing page that tells a new user what runs and what to try."""
    gateways = db.session.scalars(Gateway.in_order()).all()
    counts = dict(
        db.session.execute(select(Message.status, func.count()).group_by(Message.status)).all()
    )
    recent = db.session.scalars(select(Message).order_by(Message.id.desc()).limit(10)).all()
    return render_template("portal/index.html", gateways=gateways, counts=counts, recent=recent)
