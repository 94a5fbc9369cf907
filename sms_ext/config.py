"""The ``SMS_*`` configuration keys: defaults and start-up validation.

Every key is listed once here (the README's table mirrors :data:`DEFAULTS`). Bad values fail in
``init_app`` with a sentence that says what to fix, not at the first message.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigError, TemplateError
from .keys import GENERATE, weak_key_reason
from .text import templates

REDIS_URL = "SMS_REDIS_URL"
QUEUE = "SMS_QUEUE"
DAYS_TO_EXPIRE = "SMS_DAYS_TO_EXPIRE"
SENDING_ENABLED = "SMS_SENDING_ENABLED"
ENCRYPTION_KEY = "SMS_ENCRYPTION_KEY"
DEFAULT_REGION = "SMS_DEFAULT_REGION"
RETRY_BASE_SECONDS = "SMS_RETRY_BASE_SECONDS"
RETRY_MAX_SECONDS = "SMS_RETRY_MAX_SECONDS"
LEASE_SECONDS = "SMS_LEASE_SECONDS"
SWEEP_INTERVAL = "SMS_SWEEP_INTERVAL"
BATCH_SIZE = "SMS_BATCH_SIZE"
BREAKER_FAILURES = "SMS_BREAKER_FAILURES"
BREAKER_COOLDOWN = "SMS_BREAKER_COOLDOWN"
WORKER_CONCURRENCY = "SMS_WORKER_CONCURRENCY"
GATEWAY_DENY_PRIVATE = "SMS_GATEWAY_DENY_PRIVATE"
ADMIN_URL_PREFIX = "SMS_ADMIN_URL_PREFIX"
ADMIN_FULL_NUMBERS = "SMS_ADMIN_FULL_NUMBERS"
ADMIN_LOGOUT_ENDPOINT = "SMS_ADMIN_LOGOUT_ENDPOINT"
OTP_DIGITS = "SMS_OTP_DIGITS"
OTP_TTL_SECONDS = "SMS_OTP_TTL_SECONDS"
OTP_MAX_ATTEMPTS = "SMS_OTP_MAX_ATTEMPTS"
OTP_RESEND_SECONDS = "SMS_OTP_RESEND_SECONDS"
OTP_MESSAGE = "SMS_OTP_MESSAGE"
OTP_LIMIT_PHONE = "SMS_OTP_LIMIT_PHONE"
OTP_LIMIT_CLIENT = "SMS_OTP_LIMIT_CLIENT"
OTP_LIMIT_LOCATION = "SMS_OTP_LIMIT_LOCATION"
OTP_LIMIT_LOCATION_DAY = "SMS_OTP_LIMIT_LOCATION_DAY"
OTP_LIMIT_COUNTRY = "SMS_OTP_LIMIT_COUNTRY"
OTP_WEBOTP_HOST = "SMS_OTP_WEBOTP_HOST"
OTP_ALLOW_INTERNATIONAL_NETWORKS = "SMS_OTP_ALLOW_INTERNATIONAL_NETWORKS"
ALLOWED_REGIONS = "SMS_ALLOWED_REGIONS"
ALLOW_FIXED_LINE = "SMS_ALLOW_FIXED_LINE"
CAMPAIGN_OPT_OUT_TEXT = "SMS_CAMPAIGN_OPT_OUT_TEXT"
CAMPAIGN_IN_FLIGHT = "SMS_CAMPAIGN_IN_FLIGHT"
CAMPAIGN_LEASE_SECONDS = "SMS_CAMPAIGN_LEASE_SECONDS"
HOOKS_URL_PREFIX = "SMS_HOOKS_URL_PREFIX"
PUBLIC_URL = "SMS_PUBLIC_URL"
BALANCE_UNKNOWN_AFTER = "SMS_BALANCE_UNKNOWN_AFTER"

DEFAULTS: dict[str, Any] = {
    REDIS_URL: None,
    QUEUE: "sms",
    DAYS_TO_EXPIRE: 2,
    SENDING_ENABLED: True,
    ENCRYPTION_KEY: None,
    DEFAULT_REGION: None,
    RETRY_BASE_SECONDS: 30,
    RETRY_MAX_SECONDS: 1800,
    LEASE_SECONDS: 120,
    SWEEP_INTERVAL: 30,
    BATCH_SIZE: 200,
    BREAKER_FAILURES: 3,
    BREAKER_COOLDOWN: 30,
    WORKER_CONCURRENCY: 32,
    GATEWAY_DENY_PRIVATE: False,
    ADMIN_URL_PREFIX: "/sms/admin",
    ADMIN_FULL_NUMBERS: False,
    ADMIN_LOGOUT_ENDPOINT: None,
    OTP_DIGITS: 6,
    OTP_TTL_SECONDS: 300,
    OTP_MAX_ATTEMPTS: 5,
    OTP_RESEND_SECONDS: 30,
    OTP_MESSAGE: "Your Wi-Fi code is {{ code }}",
    OTP_LIMIT_PHONE: "3 per 10 minutes; 10 per day",
    OTP_LIMIT_CLIENT: "10 per hour",
    OTP_LIMIT_LOCATION: "60 per minute",
    OTP_LIMIT_LOCATION_DAY: "500 per day",
    OTP_LIMIT_COUNTRY: "1000 per day",
    OTP_WEBOTP_HOST: None,
    OTP_ALLOW_INTERNATIONAL_NETWORKS: False,
    ALLOWED_REGIONS: (),
    ALLOW_FIXED_LINE: False,
    CAMPAIGN_OPT_OUT_TEXT: "Reply STOP to opt out",
    CAMPAIGN_IN_FLIGHT: 2000,
    CAMPAIGN_LEASE_SECONDS: 30,
    HOOKS_URL_PREFIX: "/sms/hooks",
    PUBLIC_URL: None,
    BALANCE_UNKNOWN_AFTER: 3,
}


@dataclass(frozen=True)
class OtpSettings:
    """How guest verification codes behave (see :mod:`sms_ext.otp`)."""

    digits: int
    ttl_seconds: int
    max_attempts: int
    resend_seconds: int
    message: str
    limit_phone: str
    limit_client: str
    limit_location: str
    limit_location_day: str
    """Daily budget of codes per location ("" = none)."""
    limit_country: str
    """Daily budget of codes per calling code, all locations together ("" = none)."""
    webotp_host: str | None
    """The host of the WebOTP line (``@host #code``); None: the SMS has no such line."""
    allowed_regions: frozenset[str]
    allow_fixed_line: bool
    allow_international_networks: bool
    """Accept +800/+808/+870/+878/+881/+882/+883/+888/+979 (satellite, international
    networks): pumping fraud favours them."""


@dataclass(frozen=True)
class CampaignSettings:
    """How campaigns run (see :mod:`sms_ext.campaigns`)."""

    opt_out_text: str = "Reply STOP to opt out"
    """The ``{{ opt_out }}`` of campaign and notice texts."""
    in_flight: int = 2000
    """Messages of one campaign queued or being sent at once: enough to keep the workers busy,
    few enough that a pause takes effect at once and other bulk work is not starved."""
    lease_seconds: float = 30
    """How long a campaign runner counts as alive after its last sign of life; past it the
    sweeper starts a new one (a killed worker delays a campaign by about this, never loses it)."""


@dataclass(frozen=True)
class Settings:
    """The validated configuration of one app, read once at ``init_app``."""

    redis_url: str | None
    queue: str
    days_to_expire: float
    sending_enabled: bool
    encryption_key: str
    default_region: str | None
    retry_base_seconds: float
    retry_max_seconds: float
    lease_seconds: float
    sweep_interval: float
    batch_size: int
    breaker_failures: int
    """Transient failures in a row after which every worker skips a gateway for a while."""
    breaker_cooldown: float
    """Seconds a gateway is skipped before one message probes it."""
    worker_concurrency: int
    """Gateway requests one worker keeps in flight at once."""
    gateway_deny_private: bool
    """Refuse gateway requests to loopback, link-local and private addresses (egress guard)."""
    admin_url_prefix: str
    admin_full_numbers: bool
    otp: OtpSettings
    campaign: CampaignSettings
    hooks_url_prefix: str
    """Where the webhooks gateways call (delivery receipts, inbound SMS) live."""
    public_url: str | None
    """The app's address as gateways reach it (``https://wifi.example.com``): Twilio sends
    carry a status callback under it, and Twilio signatures are checked against it."""
    balance_unknown_after: int = 3
    """Balance checks failed in a row before the balance is alerted as unknown."""

    @property
    def public_hooks_url(self) -> str | None:
        """Where gateways reach the webhooks from outside; None without ``SMS_PUBLIC_URL``."""
        return f"{self.public_url}{self.hooks_url_prefix}" if self.public_url else None


def _number(config: Mapping[str, Any], key: str, low: float, high: float) -> float:
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        try:
            value = float(str(value))
        except ValueError:
            raise ConfigError(f"{key} must be a number, got {config[key]!r}.") from None
    if not low <= value <= high:
        raise ConfigError(f"{key} must be between {low:g} and {high:g}, got {value!r}.")
    return value


def _flag(config: Mapping[str, Any], key: str) -> bool:
    value = config[key]
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{key} must be true or false, got {value!r}.")


def _text(config: Mapping[str, Any], key: str, check: Callable[[str], bool], need: str) -> str:
    value = str(config[key] or "").strip()
    if not check(value):
        raise ConfigError(f"{key} {need}, got {config[key]!r}.")
    return value


def _limits(config: Mapping[str, Any], key: str, *, optional: bool = False) -> str:
    from limits import parse_many

    value = str(config[key] or "").strip()
    if optional and not value:
        return ""
    try:
        parse_many(value)
    except ValueError:
        raise ConfigError(
            f"{key} must be rate limits like '3 per 10 minutes; 10 per day', got {value!r}."
        ) from None
    return value


def _otp_message(config: Mapping[str, Any]) -> str:
    """Checked like an admin's OTP template: a bad one fails at start, not at a guest's code."""
    value = str(config[OTP_MESSAGE] or "")
    try:
        templates.check(value, "otp")
    except TemplateError as exc:
        raise ConfigError(f"{OTP_MESSAGE} is not a usable template: {exc}") from None
    return value


def _regions(config: Mapping[str, Any]) -> frozenset[str]:
    raw = config[ALLOWED_REGIONS] or ()
    items = raw.split(",") if isinstance(raw, str) else raw
    regions = frozenset(str(item).strip().upper() for item in items if str(item).strip())
    bad = sorted(r for r in regions if len(r) != 2 or not r.isalpha())
    if bad:
        raise ConfigError(f"{ALLOWED_REGIONS} must list two-letter region codes, got {bad}.")
    return regions


_HOST_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


def is_hostname(value: str) -> bool:
    """A DNS host name (letters, digits, hyphens; dot-separated labels of 1-63; at most 253)."""
    labels = value.split(".")
    return len(value) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in labels)


def _webotp_host(config: Mapping[str, Any]) -> str | None:
    """``SMS_OTP_WEBOTP_HOST``, else the host of ``SERVER_NAME``, else None (no WebOTP line).

    Never the request's Host header: anyone can send any Host, and the line is the part of
    the venue's SMS that names a website.
    """
    explicit = str(config[OTP_WEBOTP_HOST] or "").strip().lower()
    if explicit:
        if not is_hostname(explicit):
            raise ConfigError(
                f"{OTP_WEBOTP_HOST} must be a host name such as 'wifi.example.com' "
                f"(no scheme, port or path), got {config[OTP_WEBOTP_HOST]!r}."
            )
        return explicit
    server = str(config.get("SERVER_NAME") or "").strip().lower()
    host = server.rsplit(":", 1)[0] if server.count(":") == 1 else server
    return host if host and is_hostname(host) else None


def _otp(config: Mapping[str, Any]) -> OtpSettings:
    return OtpSettings(
        digits=int(_number(config, OTP_DIGITS, 4, 10)),
        ttl_seconds=int(_number(config, OTP_TTL_SECONDS, 30, 600)),
        max_attempts=int(_number(config, OTP_MAX_ATTEMPTS, 1, 10)),
        resend_seconds=int(_number(config, OTP_RESEND_SECONDS, 5, 600)),
        message=_otp_message(config),
        limit_phone=_limits(config, OTP_LIMIT_PHONE),
        limit_client=_limits(config, OTP_LIMIT_CLIENT),
        limit_location=_limits(config, OTP_LIMIT_LOCATION),
        limit_location_day=_limits(config, OTP_LIMIT_LOCATION_DAY, optional=True),
        limit_country=_limits(config, OTP_LIMIT_COUNTRY, optional=True),
        webotp_host=_webotp_host(config),
        allowed_regions=_regions(config),
        allow_fixed_line=_flag(config, ALLOW_FIXED_LINE),
        allow_international_networks=_flag(config, OTP_ALLOW_INTERNATIONAL_NETWORKS),
    )


def _public_url(config: Mapping[str, Any]) -> str | None:
    """``SMS_PUBLIC_URL`` without its trailing slash: an absolute http(s) URL with no query."""
    value = str(config[PUBLIC_URL] or "").strip()
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or " " in value:
        raise ConfigError(
            f"{PUBLIC_URL} must be the app's address as gateways reach it, such as "
            f"'https://wifi.example.com', got {config[PUBLIC_URL]!r}."
        )
    return value.rstrip("/")


def _campaign(config: Mapping[str, Any]) -> CampaignSettings:
    opt_out = str(config[CAMPAIGN_OPT_OUT_TEXT] or "").strip()
    if not opt_out or len(opt_out) > 160 or any(ord(ch) < 32 for ch in opt_out):
        raise ConfigError(
            f"{CAMPAIGN_OPT_OUT_TEXT} must be one line of 1 to 160 characters, "
            f"got {config[CAMPAIGN_OPT_OUT_TEXT]!r}."
        )
    return CampaignSettings(
        opt_out_text=opt_out,
        in_flight=int(_number(config, CAMPAIGN_IN_FLIGHT, 1, 100_000)),
        lease_seconds=_number(config, CAMPAIGN_LEASE_SECONDS, 3, 3600),
    )


def load(config: MutableMapping[str, Any]) -> Settings:
    """Apply defaults to ``config`` and return the validated :class:`Settings`."""
    for key, default in DEFAULTS.items():
        config.setdefault(key, default)
    secret = config[ENCRYPTION_KEY] or config.get("SECRET_KEY")
    weakness = weak_key_reason(str(secret or ""))
    if weakness:
        raise ConfigError(
            "Gateway secrets are encrypted at rest: set SMS_ENCRYPTION_KEY (or SECRET_KEY) to a "
            f"random string ({weakness}). Generate one with: {GENERATE}"
        )
    redis_url = config[REDIS_URL] or None
    if redis_url and not str(redis_url).startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(
            f"{REDIS_URL} must start with redis://, rediss:// or unix://, got {redis_url!r}."
        )
    region = config[DEFAULT_REGION]
    if region is not None:
        region = _text(
            config,
            DEFAULT_REGION,
            lambda v: len(v) == 2 and v.isalpha(),
            "must be a two-letter region code such as 'ZA' or 'DE'",
        ).upper()
    if config[ADMIN_LOGOUT_ENDPOINT] is not None:
        # The admin menu posts its "Log out" button there (read by sms/admin/base.html).
        _text(
            config,
            ADMIN_LOGOUT_ENDPOINT,
            lambda v: bool(v) and " " not in v,
            "must be the endpoint name of the host's POST logout view, such as 'auth.logout'",
        )
    settings = Settings(
        redis_url=redis_url,
        queue=_text(
            config,
            QUEUE,
            lambda v: v.replace("-", "").replace("_", "").isalnum(),
            "must be a queue name of letters, digits, - and _",
        ),
        days_to_expire=_number(config, DAYS_TO_EXPIRE, 0.01, 30),
        sending_enabled=_flag(config, SENDING_ENABLED),
        encryption_key=str(secret),
        default_region=region,
        retry_base_seconds=_number(config, RETRY_BASE_SECONDS, 1, 3600),
        retry_max_seconds=_number(config, RETRY_MAX_SECONDS, 1, 86400),
        lease_seconds=_number(config, LEASE_SECONDS, 10, 3600),
        sweep_interval=_number(config, SWEEP_INTERVAL, 1, 3600),
        batch_size=int(_number(config, BATCH_SIZE, 1, 5000)),
        breaker_failures=int(_number(config, BREAKER_FAILURES, 1, 100)),
        breaker_cooldown=_number(config, BREAKER_COOLDOWN, 1, 3600),
        worker_concurrency=int(_number(config, WORKER_CONCURRENCY, 1, 512)),
        gateway_deny_private=_flag(config, GATEWAY_DENY_PRIVATE),
        admin_url_prefix=_text(
            config,
            ADMIN_URL_PREFIX,
            lambda v: v.startswith("/") and " " not in v,
            "must be a URL path starting with /",
        ).rstrip("/"),
        admin_full_numbers=_flag(config, ADMIN_FULL_NUMBERS),
        otp=_otp(config),
        campaign=_campaign(config),
        hooks_url_prefix=_text(
            config,
            HOOKS_URL_PREFIX,
            lambda v: v.startswith("/") and " " not in v,
            "must be a URL path starting with /",
        ).rstrip("/"),
        public_url=_public_url(config),
        balance_unknown_after=int(_number(config, BALANCE_UNKNOWN_AFTER, 1, 100)),
    )
    if settings.retry_max_seconds < settings.retry_base_seconds:
        raise ConfigError(f"{RETRY_MAX_SECONDS} must not be below {RETRY_BASE_SECONDS}.")
    return settings
