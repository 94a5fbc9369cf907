"""The admin pages of the extension, one module per area, on one blueprint.

Access is denied by default: every request asks the host's ``@sms.admin_check`` callback,
and without one every page answers 403.
"""

from __future__ import annotations

from flask import Blueprint, abort, current_app
from flask.typing import ResponseReturnValue

bp = Blueprint("sms_admin", __name__)

NAV: list[tuple[str, str]] = [("sms_admin.dashboard", "Dashboard")]
"""(endpoint, label) of each admin area, in menu order; areas add themselves on import."""


MENU_ORDER = ("dashboard", "gateways", "logs", "settings")


@bp.context_processor
def navigation() -> dict[str, object]:
    """The menu in a fixed order, whatever order the areas were imported in."""

    def rank(entry: tuple[str, str]) -> int:
        area = entry[0].rsplit(".", 1)[-1]
        return MENU_ORDER.index(area) if area in MENU_ORDER else len(MENU_ORDER)

    return {"sms_admin_nav": sorted(NAV, key=rank)}


@bp.before_request
def require_admin() -> ResponseReturnValue | None:
    """Ask the host; ``True`` lets the request through, a response (e.g. a redirect to the
    host's login page) is returned as is, anything else is a 403."""
    check = current_app.extensions["sms"].extension.admin_callback
    verdict = check() if check is not None else False
    if verdict is True:
        return None
    if verdict:
        return verdict
    abort(403)
    return None


# Each area registers its routes and menu entry on import.
from . import dashboard, gateways, logs, settings  # noqa: E402,F401
