"""Balance checks over time: run them (on schedule, on demand), keep their history, and alert
when a gateway's balance crosses its minimum, half of it or zero, or cannot be read.

One module per job: :mod:`.levels` (what a balance means), :mod:`.history` (readings kept),
:mod:`.alerts` (one email per crossing), :mod:`.mail` (Flask-Mail), :mod:`.schedule` (once
per period across the fleet), :mod:`.jobs` (the RQ entry points), :mod:`.chart` (the gateway
page's history), :mod:`.cli` (``flask sms balance check``).
"""

from __future__ import annotations

from .levels import ALERTING, Level, current_level, level_of
from .run import check_now

__all__ = ["ALERTING", "Level", "check_now", "current_level", "level_of"]
