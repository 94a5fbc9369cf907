"""Gateway drivers by type; one module per type."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import requests

from ..errors import GatewayConfigError
from .base import Driver, OutgoingSMS, PreparedCall, SendResult
from .custom import CustomDriver
from .sandbox import SandboxDriver
from .smsportal import SMSPortalDriver
from .twilio import TwilioDriver

DRIVERS: dict[str, type[Driver]] = {
    driver.kind: driver for driver in (CustomDriver, TwilioDriver, SMSPortalDriver, SandboxDriver)
}


def driver_class(kind: str) -> type[Driver]:
    """The driver of a gateway type; unknown types raise :class:`GatewayConfigError`."""
    try:
        return DRIVERS[kind]
    except KeyError:
        known = ", ".join(sorted(DRIVERS))
        message = f"Unknown gateway type {kind!r}; use one of {known}."
        raise GatewayConfigError({"type": message}) from None


def make_driver(kind: str, config: Mapping[str, Any], session: requests.Session) -> Driver:
    """A driver ready to send with ``config`` (settings and decrypted secrets merged)."""
    return driver_class(kind)(config, session)


__all__ = [
    "DRIVERS",
    "Driver",
    "GatewayConfigError",
    "OutgoingSMS",
    "PreparedCall",
    "SendResult",
    "driver_class",
    "make_driver",
]
