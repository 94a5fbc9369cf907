"""Rate limits on voucher logins, per client (IP and MAC) and per location, in the app's Redis.

Every attempt counts, good codes too, with the extension's all-or-none limiter (a refused
attempt uses up nothing, a burst cannot slip between test and hit). Codes are guessed by
trying many: the client limit stops one device, the location limit a crowd of spoofed MACs.

If Redis cannot be asked, voucher logins are refused (fail closed, like the SMS code step):
unthrottled, the codes could be guessed, and a guessed code is free Wi-Fi that someone paid
for.
"""

from __future__ import annotations

from flask import Flask, current_app
from limits import parse_many
from redis.exceptions import RedisError

from sms_ext import ConfigError
from sms_ext.otp.limits import Limiter
from sms_ext.state import get_state

LIMIT_CLIENT = "PORTAL_VOUCHER_LIMIT_CLIENT"
LIMIT_LOCATION = "PORTAL_VOUCHER_LIMIT_LOCATION"
DEFAULTS = {LIMIT_CLIENT: "10 per 15 minutes; 30 per day", LIMIT_LOCATION: "300 per hour"}


class VoucherLoginsUnavailable(Exception):
    """Redis cannot be asked, so attempts cannot be counted."""


def init_app(app: Flask) -> None:
    """Check the limits now: a typo fails at start-up, not at a guest's login."""
    for key, default in DEFAULTS.items():
        value = app.config.setdefault(key, default)
        try:
            parse_many(str(value or ""))
        except ValueError:
            raise ConfigError(
                f"{key} must be rate limits like {default!r}, got {value!r}."
            ) from None


def seconds_to_wait(location: str, ip: str | None, mac: str | None) -> int | None:
    """Count this attempt and return ``None``, or the seconds to wait when a limit is reached.

    Raises :class:`VoucherLoginsUnavailable` without Redis.
    """
    config = current_app.config
    try:
        limiter = Limiter(
            get_state().redis,
            {
                "ip": config[LIMIT_CLIENT],
                "mac": config[LIMIT_CLIENT],
                "location": config[LIMIT_LOCATION],
            },
            prefix="portal_voucher",
        )
        refusal = limiter.hit([("ip", ip), ("mac", mac), ("location", location)])
    except RedisError as exc:
        raise VoucherLoginsUnavailable() from exc
    return refusal.wait if refusal else None
