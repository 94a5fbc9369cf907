"""RQ entry points of balance checks, enqueued by dotted path; they take ids only."""

from __future__ import annotations

from ..models import Gateway
from ..state import get_state
from . import alerts
from .run import check_now


def check(gateway_id: int) -> str:
    """The scheduled check of one gateway (HTTP happens here, in a worker)."""
    state = get_state()
    gateway = state.session.get(Gateway, gateway_id)
    if gateway is None:
        return "gone"
    readout = check_now(state, gateway)
    return "ok" if readout.value is not None else readout.error


def settle(gateway_id: int) -> str | None:
    """Email the crossing a check made from a web page found (the page never sends mail)."""
    return alerts.settle(get_state(), gateway_id)
