"""One balance check from start to end: ask, record, alert."""

from __future__ import annotations

from ..gateways.balance import Readout, read_balance
from ..models import Gateway
from ..state import SMSState
from . import alerts, history


def check_now(state: SMSState, gateway: Gateway, *, alert: bool = True) -> Readout:
    """Ask ``gateway``'s provider now and record the answer; with ``alert``, email a crossing
    from here (workers and the CLI; a web request leaves that to a job)."""
    readout = read_balance(state, gateway)
    history.record(state, gateway.id, readout)
    state.session.refresh(gateway)
    if alert:
        alerts.settle(state, gateway.id)
    return readout
