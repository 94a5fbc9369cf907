"""The portal's own admin pages (locations and splash pages, guests, vouchers).

They sit beside the extension's SMS admin: same login, same header and menu (each area
registers itself with ``sms.admin_page``), templates extending ``sms/admin/base.html``. Every
request needs a logged-in admin; forms carry CSRF tokens (Flask-WTF).
"""

from __future__ import annotations

from flask import Blueprint, redirect, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from flask_wtf import FlaskForm
from flask_wtf.csrf import CSRFError

bp = Blueprint("portal_admin", __name__, url_prefix="/admin")


class TokenOnly(FlaskForm):
    """No fields: only the CSRF token every admin form carries."""


@bp.before_request
def require_admin() -> ResponseReturnValue | None:
    """Deny by default: anyone not logged in goes to the login page, and comes back after;
    every write needs this session's CSRF token (400 with the reason), whichever page it is."""
    if not current_user.is_authenticated:
        return redirect(url_for("auth.login", next=request.full_path))
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        form = TokenOnly()
        if not form.validate():
            raise CSRFError(
                "; ".join(form.errors.get("csrf_token", ["The CSRF token is missing."]))
            )
    return None


# Each area registers its routes and its menu entry on import.
from . import guests, locations, vouchers  # noqa: E402,F401
