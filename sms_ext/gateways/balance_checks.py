"""The settings of a gateway's scheduled balance check (``Gateway.balance_check``), validated
once, when the gateway is saved, so a check never fails for a reason the form could have named.

A check is stored as plain JSON (``enabled``, ``url``, ``method``, ``body``, ``headers``,
``field`` or ``pattern``, ``period``, ``emails``, ``dashboard``, ``minimum``, ``currency``).
Twilio and SMSPortal know their own balance endpoint: for them the request fields are ignored
and the driver asks. A custom gateway describes the request with the placeholders of its own
secrets (``{api_key}``, ``{api_secret}``, ``{from}``); presets fill it for known providers.

Field errors are keyed ``balance_<name>``, the admin form's names, so one save shows them all.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from ..checks import text_problem
from ..errors import GatewayConfigError
from . import fields, payload
from .balance_answer import check_pattern
from .custom import _headers as parse_headers
from .egress import literal_refusal

PERIODS: dict[str, tuple[int, str]] = {
    "15min": (15 * 60, "Every 15 minutes"),
    "hour": (60 * 60, "Every hour"),
    "6hours": (6 * 60 * 60, "Every 6 hours"),
    "day": (24 * 60 * 60, "Every day"),
}
"""Period key -> (seconds, label). Checks run once per period across every worker."""
DEFAULT_PERIOD = "hour"
PLACEHOLDERS = ("api_key", "api_secret", "from")
"""What a balance request may use: the gateway's secrets and sender (no message, no phone)."""
SECRET_PLACEHOLDERS = ("api_key", "api_secret")
DRIVER_CHECKED = frozenset({"twilio", "smsportal"})
"""Types whose driver knows the balance endpoint and the field of the answer."""
MAX_EMAILS = 10
MAX_FIELD = 200
MAX_MINIMUM = Decimal(10) ** 10
EMAIL = re.compile(r"[^@\s,;<>]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
FIELD_PART = re.compile(r"[^.\s]+")
CURRENCY = re.compile(r"[A-Za-z]{0,8}")


@dataclass(frozen=True)
class BalanceCheck:
    """A validated check, as the scheduler, the request and the alerts read it."""

    enabled: bool
    url: str
    method: str
    body: str
    headers: tuple[tuple[str, str], ...]
    field: str
    pattern: str
    period: str
    emails: tuple[str, ...]
    dashboard: bool
    minimum: Decimal | None
    currency: str

    @property
    def seconds(self) -> int:
        """The period in seconds."""
        return PERIODS.get(self.period, PERIODS[DEFAULT_PERIOD])[0]

    @classmethod
    def stored(cls, raw: Mapping[str, Any] | None) -> BalanceCheck:
        """The check of a gateway's stored JSON (validated on save; read leniently)."""
        raw = raw or {}
        minimum = raw.get("minimum")
        return cls(
            enabled=bool(raw.get("enabled")),
            url=str(raw.get("url") or ""),
            method=str(raw.get("method") or "GET"),
            body=str(raw.get("body") or ""),
            headers=tuple(
                (str(row.get("name")), str(row.get("value")))
                for row in raw.get("headers") or []
                if isinstance(row, Mapping)
            ),
            field=str(raw.get("field") or ""),
            pattern=str(raw.get("pattern") or ""),
            period=str(raw.get("period") or DEFAULT_PERIOD),
            emails=tuple(str(e) for e in raw.get("emails") or []),
            dashboard=bool(raw.get("dashboard", True)),
            minimum=Decimal(str(minimum)) if minimum not in (None, "") else None,
            currency=str(raw.get("currency") or ""),
        )


def _emails(raw: Any, errors: dict[str, str]) -> list[str]:
    items = raw if isinstance(raw, list | tuple) else re.split(r"[,;\s]+", str(raw or ""))
    emails = [str(item).strip() for item in items if str(item).strip()]
    for email in emails:
        if len(email) > 254 or not EMAIL.fullmatch(email):
            errors["balance_emails"] = f"'{email[:60]}' is not an email address."
            return []
    if len(emails) > MAX_EMAILS:
        errors["balance_emails"] = f"At most {MAX_EMAILS} email addresses."
    return list(dict.fromkeys(emails))


def _minimum(raw: Any, errors: dict[str, str]) -> str | None:
    """Kept as text: JSON has no decimal type, and a float would turn 0.1 into 0.1000000001."""
    text = "" if raw is None or isinstance(raw, bool) else str(raw).strip()
    if not text:
        return None
    try:
        value = Decimal(text.replace(",", ""))
    except InvalidOperation:
        value = None
    if value is None or not value.is_finite() or not 0 <= value < MAX_MINIMUM:
        errors["balance_minimum"] = "Minimum balance must be a number from 0, e.g. 25 or 10.50."
        return None
    return f"{value.normalize():f}"


def _field(raw: Any, errors: dict[str, str]) -> str:
    text = str(raw or "").strip()
    parts = text.split(".")
    if text and (len(text) > MAX_FIELD or not all(FIELD_PART.fullmatch(p) for p in parts)):
        errors["balance_field"] = (
            "Field must be a dotted path into the JSON answer, e.g. balance, "
            "data.account.balance or items.0.balance."
        )
    return text


def _template(text: str, name: str, label: str, errors: dict[str, str]) -> None:
    """Only the balance placeholders: a check has no message, phone or reference."""
    unknown = [n for n in payload.PLACEHOLDER.findall(text) if n not in PLACEHOLDERS]
    if unknown:
        known = ", ".join("{" + n + "}" for n in PLACEHOLDERS)
        errors[name] = f"{label}: {{{unknown[0]}}} has no value in a balance check; use {known}."


def body_type(body: str) -> str:
    """A body that looks like JSON is JSON; anything else is a form (``a=1&b={api_key}``)."""
    return payload.JSON if body.lstrip().startswith(("{", "[")) else payload.FORM


def _request(config: Mapping[str, Any], errors: dict[str, str], required: bool) -> dict[str, Any]:
    method = fields.text(config, "method").upper() or "GET"
    if method not in ("GET", "POST"):
        errors["balance_method"] = "Method must be GET or POST."
    url = fields.text(config, "url")
    if required and not url:
        errors["balance_url"] = "Check URL is required for a custom gateway's balance check."
    elif url:
        _template(url, "balance_url", "Check URL", errors)
        if "balance_url" not in errors:
            sample = dict.fromkeys(PLACEHOLDERS, "x")
            fields.http_url(payload.render_url(url, sample), "balance_url", "Check URL", errors)
    body = str(config.get("body") or "").strip()
    if body:
        if method == "GET":
            errors["balance_body"] = "A request body needs the POST method."
        _template(body, "balance_body", "Body", errors)
        try:
            if body_type(body) == payload.JSON:
                payload.parse_json_template(body)
            else:
                payload.parse_form_template(body)
        except payload.TemplateError as exc:
            errors["balance_body"] = str(exc)
    header_errors: dict[str, str] = {}
    headers = parse_headers(config.get("headers"), header_errors)
    for row in headers:
        _template(row["value"], "balance_headers", "Headers", header_errors)
    if header_errors:
        errors["balance_headers"] = next(iter(header_errors.values()))
    field = _field(config.get("field"), errors)
    pattern = str(config.get("pattern") or "").strip()
    if pattern and (problem := check_pattern(pattern)):
        errors["balance_pattern"] = problem
    if field and pattern:
        errors["balance_pattern"] = "Give a field or a pattern, not both."
    elif required and not field and not pattern:
        errors["balance_field"] = (
            "Give the field of the balance in the JSON answer (e.g. data.balance), "
            "or a pattern for an answer that is not JSON."
        )
    return {
        "url": url,
        "method": method,
        "body": body,
        "headers": headers,
        "field": field,
        "pattern": pattern,
    }


def validate(raw: Mapping[str, Any] | None, kind: str) -> dict[str, Any]:
    """The stored JSON of the check ``raw`` (form-shaped) describes for a ``kind`` gateway;
    ``{}`` when it is blank. Raises :class:`GatewayConfigError` naming every bad field.

    A switched-off check keeps what was typed (an admin may park it) but is still checked, so
    switching it on later cannot fail.
    """
    if not raw or not isinstance(raw, Mapping):
        return {}
    errors: dict[str, str] = {}
    enabled = fields.boolean(raw, "enabled", False)
    if enabled and kind == "sandbox":
        errors["balance_enabled"] = "A sandbox gateway has no balance to check."
    by_driver = kind in DRIVER_CHECKED
    request = {} if by_driver else _request(raw, errors, required=enabled)
    period = fields.text(raw, "period") or DEFAULT_PERIOD
    if period not in PERIODS:
        errors["balance_period"] = "Period must be one of: " + ", ".join(PERIODS) + "."
    currency = fields.text(raw, "currency")
    if not CURRENCY.fullmatch(currency):
        errors["balance_currency"] = "Currency must be up to 8 letters, e.g. USD or credits."
    checked = {
        "enabled": enabled,
        **request,
        "period": period,
        "emails": _emails(raw.get("emails"), errors),
        "dashboard": fields.boolean(raw, "dashboard", True),
        "minimum": _minimum(raw.get("minimum"), errors),
        "currency": currency.upper() if len(currency) == 3 else currency,
    }
    if errors:
        raise GatewayConfigError(errors)
    return checked


def sends_secrets(check: Mapping[str, Any]) -> bool:
    """Whether the check's request carries one of the gateway's secrets."""
    texts = [str(check.get("url") or ""), str(check.get("body") or "")]
    texts += [str(row.get("value") or "") for row in check.get("headers") or []]
    used = {name for text in texts for name in payload.PLACEHOLDER.findall(text)}
    return bool(used & set(SECRET_PLACEHOLDERS))


def moved_secrets(new: Mapping[str, Any], old: Mapping[str, Any] | None) -> bool:
    """Whether ``new`` would send the stored secrets to a URL they were not sent to before:
    like the gateway's own URL, a changed check URL asks for the secrets again."""
    if not sends_secrets(new):
        return False
    before = old or {}
    was = fields.destination_url(before, "url") if sends_secrets(before) else None
    return fields.destination_url(new, "url") != was


TEXT_LIMITS = {
    "url": ("Check URL", 2_000, False),
    "field": ("Field", MAX_FIELD, False),
    "pattern": ("Pattern", 1_000, False),
    "body": ("Body", 20_000, True),
    "emails": ("Emails", 4_000, False),
    "currency": ("Currency", 40, False),
    "period": ("Period", 40, False),
    "minimum": ("Minimum balance", 40, False),
}
"""Text cells of a check and their limits, checked before anything reads them."""


def _unusable(raw: Mapping[str, Any]) -> dict[str, str]:
    errors: dict[str, str] = {}
    for name, (label, limit, multiline) in TEXT_LIMITS.items():
        value = raw.get(name)
        if not isinstance(value, str):
            continue
        if problem := text_problem(value, label, limit, multiline=multiline):
            errors[f"balance_{name}"] = problem
    return errors


def entry(
    data: Mapping[str, Any],
    kind: str,
    previous: Mapping[str, Any] | None,
    errors: dict[str, str],
    *,
    keeps_stored_secrets: bool,
    deny_private: bool = False,
) -> dict[str, Any] | None:
    """The check to store from a gateway entry (form, import file, API), or ``None`` when the
    entry has none (an export from before balance checks: the stored one stays). Problems go
    into ``errors``.

    :param keeps_stored_secrets: the save keeps stored secrets for blank inputs; they may not
        follow a check URL to a new place.
    """
    if "balance_check" not in data:
        return None
    raw = data["balance_check"]
    if raw is not None and not isinstance(raw, Mapping):
        errors["balance_check"] = "balance_check must be an object of balance check settings."
        return None
    if unusable := _unusable(raw or {}):
        errors.update(unusable)
        return None
    try:
        check = validate(raw, kind)
    except GatewayConfigError as exc:
        errors.update(exc.errors)
        return None
    if keeps_stored_secrets and moved_secrets(check, previous):
        errors["balance_url"] = (
            "Type the gateway's secrets again: this check URL would send them somewhere new, "
            "and a stored secret is not sent on."
        )
    url = str(check.get("url") or "")
    if deny_private and url:
        sample = payload.render_url(url, dict.fromkeys(PLACEHOLDERS, "x"))
        if problem := literal_refusal(sample, "Check URL"):
            errors["balance_url"] = problem
    return check
