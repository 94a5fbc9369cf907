"""Each check's result, kept as a reading and as the gateway's latest figure.

The counters change with single UPDATE statements (``balance_failures + 1``), so two workers
recording at once count both failures. History is bounded: readings older than
:data:`KEEP_DAYS` go in the same transaction as a new one.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, update

from ..gateways.balance import Readout
from ..models import BalanceReading, Gateway, utcnow
from ..state import SMSState

KEEP_DAYS = 90


def record(
    state: SMSState, gateway_id: int, readout: Readout, *, now: datetime | None = None
) -> None:
    """Store ``readout`` as a reading and as the gateway's latest; commits.

    A failed check keeps the last figure (the page shows it with the error next to it) and
    counts the failure; a good one resets the count.
    """
    now = now or utcnow()
    session = state.session
    session.add(
        BalanceReading(
            gateway_id=gateway_id,
            checked_at=now,
            value=readout.value,
            currency=readout.currency,
            error=readout.error or None if readout.value is None else None,
        )
    )
    latest = update(Gateway).where(Gateway.id == gateway_id)
    if readout.value is not None:
        latest = latest.values(
            balance=readout.value, balance_error=None, balance_checked_at=now, balance_failures=0
        )
    else:
        latest = latest.values(
            balance_error=readout.error or "no balance in the answer",
            balance_checked_at=now,
            balance_failures=Gateway.balance_failures + 1,
        )
    session.execute(latest)
    cutoff = now - timedelta(days=KEEP_DAYS)
    session.execute(
        delete(BalanceReading).where(
            BalanceReading.gateway_id == gateway_id, BalanceReading.checked_at < cutoff
        )
    )
    session.commit()
