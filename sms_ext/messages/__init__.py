"""A message's whole life: composed and queued in the outbox, claimed and delivered by a
worker through the gateways, settled, retried, swept back when a worker or Redis was lost.

Modules: :mod:`.outbox` (compose, queue, enqueue after commit), :mod:`.delivery` (claim,
route, settle), :mod:`.sweeper`, :mod:`.jobs` (RQ entry points), :mod:`.worker`.
"""

from __future__ import annotations

from .outbox import MAX_BODY, compose, queue

__all__ = ["MAX_BODY", "compose", "queue"]
