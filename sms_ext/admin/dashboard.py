"""Admin landing page (the full dashboard arrives with its own module's work)."""

from __future__ import annotations

from flask import render_template
from sqlalchemy import func, select

from ..models import Gateway, Message
from ..state import get_state
from . import bp


@bp.get("/")
def dashboard() -> str:
    """Counts an admin looks at first."""
    session = get_state().session
    statuses = dict(
        session.execute(select(Message.status, func.count()).group_by(Message.status)).all()
    )
    enabled = session.scalar(
        select(func.count()).select_from(Gateway).where(Gateway.enabled.is_(True))
    )
    return render_template("sms/admin/dashboard.html", statuses=statuses, enabled=enabled)
