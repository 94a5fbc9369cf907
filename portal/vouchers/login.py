"""The splash page's voucher form: a guest types a code instead of a phone number.

The splash view hands a POST carrying ``voucher`` here. A good code lets the guest online by
the same way as a verified phone (:func:`portal.splash.let_online`, query string kept as it
came); anything else shows the splash page again with one sentence by the voucher form.
"""

from __future__ import annotations

from flask import Response, request
from flask_babel import gettext, ngettext

from sms_ext.models import utcnow

from .. import splash
from .redeem import VoucherRefused, redeem
from .throttle import VoucherLoginsUnavailable, seconds_to_wait


def voucher_login() -> Response:
    """Answer the voucher form of ``/s/<slug>/``."""
    location, page = splash.current_venue()
    login_target = splash.login_url()
    if page.terms.strip() and not request.form.get("voucher_terms"):
        return splash.phone_form(
            status=400, voucher_error=gettext("Please accept the terms of use to continue.")
        )
    mac = splash.client_mac()
    try:
        wait = seconds_to_wait(location.slug, splash.client_ip(), mac)
    except VoucherLoginsUnavailable:
        return splash.phone_form(
            status=503,
            voucher_error=gettext(
                "Voucher login is unavailable right now. Please try again shortly."
            ),
        )
    if wait is not None:
        minutes = -(-wait // 60)
        return splash.phone_form(
            status=429,
            voucher_error=ngettext(
                "Too many attempts. Please try again in %(num)d minute.",
                "Too many attempts. Please try again in %(num)d minutes.",
                minutes,
            ),
        )
    try:
        redeem(request.form.get("voucher", ""), location.id, mac, utcnow())
    except VoucherRefused as refused:
        return splash.phone_form(status=400, voucher_error=str(refused))
    return splash.let_online(login_target)
