"""Settings an admin changes from the settings page, stored in the database.

They override the ``SMS_*`` config defaults. Each process re-reads them at most every
:data:`CACHE_SECONDS`, so a change reaches every web and worker process within seconds
without a restart and without a query per message.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

from sqlalchemy import select

from .models import Setting
from .state import SMSState

log = logging.getLogger("sms_ext")

CACHE_SECONDS = 5.0
MAX_DAYS = 30


@dataclass(frozen=True)
class Runtime:
    sending_enabled: bool
    """Off: new messages are recorded as failed with the reason, nothing is sent."""
    days_to_expire: float
    """A message not sent within this many days fails."""
    debug_logging: bool
    """Log every attempt's request and response (secrets masked) on the ``sms_ext`` logger."""


def _defaults(state: SMSState) -> Runtime:
    return Runtime(
        sending_enabled=state.settings.sending_enabled,
        days_to_expire=state.settings.days_to_expire,
        debug_logging=False,
    )


def current(state: SMSState) -> Runtime:
    """The settings in force, from a per-process cache refreshed every few seconds."""
    cached = state.runtime_cache
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    stored: dict[str, Any] = dict(state.session.execute(select(Setting.key, Setting.value)).all())
    fields = {k: v for k, v in stored.items() if k in Runtime.__dataclass_fields__}
    runtime = replace(_defaults(state), **fields)
    state.runtime_cache = (time.monotonic() + CACHE_SECONDS, runtime)
    return runtime


def validate(values: dict[str, Any]) -> dict[str, str]:
    """Form-style errors for new values (field -> message)."""
    errors = {}
    days = values.get("days_to_expire")
    if not isinstance(days, int | float) or not 0.01 <= days <= MAX_DAYS:
        errors["days_to_expire"] = f"Days to expire must be a number from 0.01 to {MAX_DAYS}."
    return errors


def save(state: SMSState, runtime: Runtime, *, changed_by: str = "") -> None:
    """Store every setting (commits) and drop this process's cache."""
    session = state.session
    for key, value in asdict(runtime).items():
        row = session.get(Setting, key)
        if row is None:
            session.add(Setting(key=key, value=value))
        else:
            row.value = value
    session.commit()
    state.runtime_cache = None
    log.info("SMS settings changed%s: %s", f" by {changed_by}" if changed_by else "", runtime)
