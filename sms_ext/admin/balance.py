"""Balance on the admin pages: the gateway's "Check now" button, the history on its page and
the low-balance banner at the top of every admin page.

"Check now" asks the provider within the request (as the old "Check" did: the admin waits for
one answer) but any alert email is left to a worker job: a page never talks to SMTP.
"""

from __future__ import annotations

import contextlib

from flask import flash, redirect, request, url_for
from flask.typing import ResponseReturnValue
from redis.exceptions import RedisError

from ..balance import ALERTING, Level, current_level
from ..balance.chart import History, history
from ..balance.run import check_now
from ..balance.schedule import enqueue_settle
from ..gateways.balance import checkable
from ..gateways.balance_checks import BalanceCheck
from ..models import Gateway
from ..state import get_state
from . import bp
from .gateway_forms import TYPE_LABELS, check_action
from .gateways import _gateway

BANNER_TEXT = {
    Level.MIN: "below its minimum",
    Level.HALF: "below half its minimum",
    Level.ZERO: "at zero: messages through it will fail",
    Level.UNKNOWN: "unknown: its balance checks keep failing",
}


def balance_alerts() -> list[tuple[Gateway, str]]:
    """Gateways whose balance check shows on the dashboard and that are low or unknown now,
    with the words for the banner."""
    state = get_state()
    alerts = []
    for gateway in state.session.scalars(Gateway.in_order()):
        check = BalanceCheck.stored(gateway.balance_check)
        if not (check.enabled and check.dashboard):
            continue
        level = current_level(gateway, state.settings.balance_unknown_after)
        if level in ALERTING:
            alerts.append((gateway, BANNER_TEXT[level]))
    return alerts


def balance_history(gateway: Gateway) -> History:
    return history(get_state().session, gateway)


@bp.app_context_processor
def balance_helpers() -> dict[str, object]:
    """Callables, so only the admin pages that show them pay for the queries."""
    return {
        "sms_balance_alerts": balance_alerts,
        "sms_balance_history": balance_history,
        "sms_balance_checkable": checkable,
    }


@bp.post("/gateways/<int:gateway_id>/balance")
def gateway_balance(gateway_id: int) -> ResponseReturnValue:
    """Ask the provider for the balance now; a crossing is emailed by a worker."""
    check_action()
    gateway = _gateway(gateway_id)
    back = request.form.get("back") == "edit"
    target = (
        url_for(".gateway_edit", gateway_id=gateway.id, _anchor="balance")
        if back
        else url_for(".gateways")
    )
    if not checkable(gateway):
        label = TYPE_LABELS.get(gateway.type, gateway.type)
        flash(
            f"{gateway.name}: {label} gateways do not report a balance. Configure a balance "
            "check on the gateway's page.",
            "error",
        )
        return redirect(target, 303)
    state = get_state()
    readout = check_now(state, gateway, alert=False)
    if BalanceCheck.stored(gateway.balance_check).enabled:
        with contextlib.suppress(RedisError):  # else the next scheduled check alerts
            enqueue_settle(state, gateway.id)
    if readout.value is None:
        flash(f"{gateway.name}: no balance. {readout.error}", "error")
    else:
        flash(f"{gateway.name}: balance {readout.value.normalize():f}.", "ok")
    return redirect(target, 303)
