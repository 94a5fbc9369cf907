"""The admin pages of the extension, one module per area, on one blueprint.

Access is denied by default: every request asks the host's ``@sms.admin_check`` callback,
and without one every page answers 403.
"""

from __future__ import annotations

from flask import Blueprint, abort
from flask.typing import ResponseReturnValue

from ..state import get_state

bp = Blueprint("sms_admin", __name__)

MENU: tuple[tuple[str, str], ...] = (
    ("sms_admin.dashboard", "Dashboard"),
    ("sms_admin.gateways", "Gateways"),
    ("sms_admin.logs", "SMS logs"),
    ("sms_admin.templates", "Templates"),
    ("sms_admin.campaigns", "Campaigns"),
    ("sms_admin.opt_outs", "Opt-outs"),
    ("sms_admin.settings", "Settings"),
)
"""(endpoint, label) of each admin area, in menu order."""


@bp.app_context_processor
def navigation() -> dict[str, object]:
    """The menu for every page extending ``sms/admin/base.html``, the host's included."""
    return {"sms_admin_nav": MENU + tuple(get_state().registrations.admin_pages)}


@bp.before_request
def require_admin() -> ResponseReturnValue | None:
    """Ask the host; ``True`` lets the request through, a response (e.g. a redirect to the
    host's login page) is returned as is, anything else is a 403."""
    check = get_state().registrations.admin_callback
    verdict = check() if check is not None else False
    if verdict is True:
        return None
    if verdict:
        return verdict
    abort(403)
    return None


def acting_admin() -> str | None:
    """The name the host gives the admin making this request (``@sms.admin_name``), cut to
    what the ``sent_by``/``created_by`` columns hold; None without a callback."""
    name = get_state().registrations.admin_name
    who = name() if name is not None else None
    return str(who)[:120] if who else None


# Each area registers its routes on import.
from . import (  # noqa: E402,F401
    balance,
    campaigns,
    dashboard,
    gateways,
    logs,
    opt_outs,
    settings,
    templates,
)
