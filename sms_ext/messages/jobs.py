"""RQ entry points, enqueued by dotted path (``sms_ext.messages.jobs.deliver``).

Jobs carry message ids only (or none: the urgent job claims what is due) and run inside the
app context the worker provides; outcomes are written to the database inside the job, never
left to RQ callbacks.
"""

from __future__ import annotations

from ..state import get_state
from . import engine


def deliver(message_ids: list[int]) -> dict[str, int]:
    """Deliver the still-queued, due messages among ``message_ids`` (one or a campaign chunk)."""
    return engine.deliver(get_state(), message_ids)


def deliver_urgent() -> dict[str, int]:
    """Deliver every due guest code and test send (one job for a burst of them)."""
    return engine.deliver_urgent(get_state())
