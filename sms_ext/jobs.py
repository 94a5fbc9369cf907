"""RQ entry points. Jobs carry message ids only and run inside the app context the worker
provides; outcomes are written to the database inside the job, never left to RQ callbacks."""

from __future__ import annotations

from . import delivery, sweeper
from .state import get_state


def deliver_messages(message_ids: list[int]) -> dict[str, int]:
    """Deliver the still-queued, due messages among ``message_ids`` (one or a campaign chunk)."""
    return delivery.deliver(get_state(), message_ids)


def sweep_outbox() -> dict[str, int]:
    """Re-enqueue messages whose job was lost and take back those stuck in ``sending``."""
    return sweeper.sweep(get_state())
