"""Saving, importing and exporting gateways, with the same validation for forms, CLI and files.

Field names are the admin form's, so an export can be edited and imported back. Secrets are
encrypted on save and never exported. A blank secret on update keeps the stored one, but only
while the gateway still sends to where the secret was typed for: changing the type, the URL
(base URL, or the Lua script that may choose one) asks for the secrets again, so a stored
secret can never be redirected to another host. A preview never uses stored secrets at all.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import requests
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..checks import text_problem
from ..errors import GatewayConfigError
from ..models import Gateway
from . import Driver, OutgoingSMS, balance_checks, driver_class, hook_fields
from .egress import literal_refusal
from .entries import text_errors, whole_number
from .fields import boolean
from .masking import STORED_MASK
from .vault import Vault

COMMON_FIELDS = (
    "name",
    "type",
    "enabled",
    "priority",
    "locations",
    "max_per_second",
    "max_in_flight",
)
MAX_NAME = 80
LIMIT_FIELDS = {
    "max_per_second": "Max messages per second",
    "max_in_flight": "Max requests at once",
}
"""The per-gateway limits (enforced across every worker), with their form labels."""
MAX_LIMIT = 100_000
MAX_PRIORITY = 1_000_000
"""Priorities are renumbered 1, 2, 3... by the admin; the cap keeps a new gateway's default
(the highest plus one) inside the column."""
MAX_LOCATION_KEY = 80
"""As long as a message's ``location``."""
COLUMN_FIELDS = ("lua_enabled",)
"""Driver fields kept in a column of their own rather than in ``Gateway.settings``."""
URL_FIELDS = {"url": "URL", "base_url": "Base URL"}
"""Fields that name where requests go, checked by the egress guard when saving."""


def parse_locations(raw: Any, errors: dict[str, str]) -> list[str]:
    """Locations as a clean list of keys; accepts a list or a comma-separated string."""
    if raw is not None and not isinstance(raw, str | list | tuple):
        errors["locations"] = "Locations must be a list of location keys."
        return []
    items: Iterable[Any] = raw.split(",") if isinstance(raw, str) else (raw or [])
    seen: list[str] = []
    for item in items:
        if not isinstance(item, str):
            errors["locations"] = "Locations must be a list of location keys."
            return []
        key = item.strip()
        if problem := text_problem(key, "A location key", MAX_LOCATION_KEY):
            errors["locations"] = problem
            return []
        if key and key not in seen:
            seen.append(key)
    return seen


def parse_limit(raw: Any, label: str) -> int | None:
    """A per-gateway limit: a whole number from 1 to :data:`MAX_LIMIT`, or ``None`` (blank: no
    limit). Raises ``ValueError`` with a sentence naming ``label``."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    try:
        return whole_number(raw, 1, MAX_LIMIT)
    except ValueError:
        raise ValueError(
            f"{label} must be a whole number from 1 to {MAX_LIMIT:,}, or blank for no limit."
        ) from None


def _name(data: Mapping[str, Any], errors: dict[str, str]) -> str:
    raw = data.get("name")
    name = raw.strip() if isinstance(raw, str) else ""
    if raw is not None and not isinstance(raw, str):
        errors["name"] = "Name must be text."
    elif not name:
        errors["name"] = "Name is required."
    elif problem := text_problem(name, "Name", MAX_NAME):
        errors["name"] = problem
    return name


def _priority(data: Mapping[str, Any], errors: dict[str, str]) -> int | None:
    raw = data.get("priority")
    if raw is None or raw == "":
        return None
    try:
        return whole_number(raw, 0, MAX_PRIORITY)
    except ValueError:
        errors["priority"] = f"Priority must be a whole number from 0 to {MAX_PRIORITY:,}."
        return None


def _common(data: Mapping[str, Any], errors: dict[str, str]) -> dict[str, Any]:
    name = _name(data, errors)
    priority = _priority(data, errors)
    locations = parse_locations(data.get("locations"), errors)
    limits: dict[str, int | None] = {}
    for field, label in LIMIT_FIELDS.items():
        try:
            limits[field] = parse_limit(data.get(field), label)
        except ValueError as exc:
            errors[field] = str(exc)
            limits[field] = None
    return {
        "name": name,
        "type": str(data.get("type") or "").strip().lower(),
        "enabled": boolean(data, "enabled", True),
        "priority": priority,
        "locations": locations,
        **limits,
    }


def gateway_settings(gateway: Gateway) -> dict[str, Any]:
    """The non-secret settings of ``gateway`` as its driver and form name them."""
    return {**(gateway.settings or {}), "lua_enabled": bool(gateway.lua_enabled)}


def gateway_config(gateway: Gateway, vault: Vault) -> dict[str, Any]:
    """The driver config of ``gateway``: its settings with the secrets decrypted."""
    return {**gateway_settings(gateway), **vault.open(gateway.secrets_sealed)}


def _form_config(
    vault: Vault, driver: type[Driver], data: Mapping[str, Any], gateway: Gateway | None
) -> tuple[dict[str, Any], dict[str, str], str]:
    """The driver's fields from ``data``; the stored secrets its blank secret fields stand for;
    and why those may not be kept ("" when they may).

    Secrets are write-only on the form, so a blank one means "unchanged"; but a stored secret
    only goes where it was typed for: same type, same :meth:`Driver.destination`.
    """
    config = {name: data.get(name) for name in driver.fields}
    stored = vault.open(gateway.secrets_sealed) if gateway is not None else {}
    blanks = {
        name: str(stored[name])
        for name in driver.secret_fields
        if stored.get(name) and not str(config.get(name) or "").strip()
    }
    why = ""
    if gateway is not None and blanks:
        if gateway.type != driver.kind:
            why = "the gateway type changed"
        elif driver.destination(data) != driver.destination(gateway_settings(gateway)):
            why = "where the gateway sends requests changed"
    return config, blanks, why


def preview_request(
    vault: Vault,
    kind: str,
    data: Mapping[str, Any],
    gateway: Gateway | None,
    sms: OutgoingSMS,
) -> str:
    """What a ``kind`` gateway set up with form-shaped ``data`` would send for ``sms``, with
    every secret masked; nothing is saved and nothing is sent.

    Only typed secrets are used (a script could otherwise print a stored one in some disguise
    that no mask recognises); where a stored secret would go, the preview shows
    :data:`STORED_MASK`.

    :param gateway: the stored gateway being edited, whose stored secrets the mask stands for.
    :raises GatewayConfigError: every problem, by field (``"preview"``: the request itself).
    """
    driver = driver_class(kind)
    config, blanks, why = _form_config(vault, driver, data, gateway)
    if not why:
        config.update(dict.fromkeys(blanks, STORED_MASK))
    config = driver.validate(config)
    with requests.Session() as http:
        return driver(config, http).preview(sms)


@dataclass(frozen=True)
class _Checked:
    """A gateway's form data, validated and ready to be written."""

    common: dict[str, Any]
    driver: type[Driver]
    config: dict[str, Any]


def _check(
    session: Session,
    vault: Vault,
    data: Mapping[str, Any],
    gateway: Gateway | None,
    *,
    deny_private: bool = False,
) -> _Checked:
    """Validate form-shaped ``data`` for a new gateway (or ``gateway``); writes nothing."""
    errors: dict[str, str] = {}
    common = _common(data, errors)
    try:
        driver = driver_class(common["type"])
    except GatewayConfigError as exc:
        errors.update(exc.errors)
        raise GatewayConfigError(errors) from None
    if unusable := text_errors(driver.fields, data):  # before any check reads the text
        raise GatewayConfigError({**errors, **unusable})
    config, blanks, why = _form_config(vault, driver, data, gateway)
    if not why:
        config.update(blanks)
    if common["name"] and "name" not in errors:
        clash = session.scalar(select(Gateway).where(Gateway.name == common["name"]))
        if clash is not None and clash is not gateway:
            errors["name"] = f"A gateway named {common['name']!r} already exists."
    try:
        config = driver.validate(config)
    except GatewayConfigError as exc:
        errors.update(exc.errors)
    for name in blanks:
        if why and name in errors:  # the stored secret would have done: say why it did not
            errors[name] = f"Type this secret again: {why}, and a stored secret is not sent on."
    if deny_private:
        for name, label in URL_FIELDS.items():
            if name in driver.fields and (problem := literal_refusal(str(config.get(name)), label)):
                errors[name] = problem
    common["balance_check"] = balance_checks.entry(
        data,
        driver.kind,
        gateway.balance_check if gateway is not None else None,
        errors,
        keeps_stored_secrets=bool(blanks) and not why,
        deny_private=deny_private,
    )
    common["hooks"] = hook_fields.entry(data, driver.kind, errors)
    if errors:
        raise GatewayConfigError(errors)
    return _Checked(common, driver, config)


def _write(session: Session, vault: Vault, checked: _Checked, gateway: Gateway | None) -> Gateway:
    common, driver, config = checked.common, checked.driver, checked.config
    priority = common["priority"]
    if gateway is None:
        if priority is None:
            highest = session.scalar(select(func.max(Gateway.priority)))
            priority = (highest or 0) + 1
        gateway = Gateway()
        session.add(gateway)
    gateway.name = common["name"]
    gateway.type = common["type"]
    gateway.enabled = common["enabled"]
    if priority is not None:
        gateway.priority = priority
    gateway.locations = common["locations"]
    gateway.max_per_second = common["max_per_second"]
    gateway.max_in_flight = common["max_in_flight"]
    if common["balance_check"] is not None:  # an entry without one keeps the stored check
        gateway.balance_check = common["balance_check"]
    gateway.lua_enabled = bool(config.get("lua_enabled"))
    gateway.settings = {
        k: v for k, v in config.items() if k not in driver.secret_fields and k not in COLUMN_FIELDS
    }
    gateway.secrets_sealed = vault.seal({k: config.get(k) or "" for k in driver.secret_fields})
    if common["hooks"] is not None:
        gateway.hooks = common["hooks"]
    if gateway.hook_token is None:  # the secret part of its webhook URLs
        gateway.hook_token = secrets.token_urlsafe(32)
    return gateway


def save_gateway(
    session: Session,
    vault: Vault,
    data: Mapping[str, Any],
    gateway: Gateway | None = None,
    *,
    deny_private: bool = False,
) -> Gateway:
    """Create (or update ``gateway``) from form-shaped ``data``; raises with every problem
    before changing anything.

    Not committed: the caller owns the transaction.

    :param deny_private: refuse URLs that name a private address (``SMS_GATEWAY_DENY_PRIVATE``).
    """
    checked = _check(session, vault, data, gateway, deny_private=deny_private)
    return _write(session, vault, checked, gateway)


def import_gateways(
    session: Session,
    vault: Vault,
    items: Sequence[Mapping[str, Any]],
    *,
    deny_private: bool = False,
) -> list[Gateway]:
    """Create or update (by name) every gateway in ``items``, all or nothing: every entry is
    checked before any is written, so a refused file leaves the session as it was.

    Errors name the entry: ``"2.url"`` is the ``url`` field of the second entry.
    """
    if not isinstance(items, list | tuple):
        raise GatewayConfigError({"file": "The file must hold a JSON list of gateways."})
    planned: list[tuple[_Checked, Gateway | None]] = []
    errors: dict[str, str] = {}
    first_entry: dict[str, int] = {}
    for number, item in enumerate(items, start=1):
        if not isinstance(item, Mapping):
            errors[f"{number}"] = "Each gateway must be a JSON object."
            continue
        raw_name = item.get("name")
        name = raw_name.strip() if isinstance(raw_name, str) else ""
        if text_problem(name, "Name", MAX_NAME):
            name = ""  # no lookup by a name the database cannot compare; _check says why
        if name in first_entry:
            errors[f"{number}.name"] = f"Entry {first_entry[name]} already has the name {name!r}."
            continue
        existing = None
        if name:
            first_entry[name] = number
            existing = session.scalar(select(Gateway).where(Gateway.name == name))
        try:
            checked = _check(session, vault, item, existing, deny_private=deny_private)
            planned.append((checked, existing))
        except GatewayConfigError as exc:
            errors.update({f"{number}.{field}": text for field, text in exc.errors.items()})
    if errors:
        raise GatewayConfigError(errors)
    saved = []
    for checked, existing in planned:
        saved.append(_write(session, vault, checked, existing))
        session.flush()  # the next new gateway's default priority counts this one
    return saved


def export_gateways(session: Session) -> list[dict[str, Any]]:
    """Every gateway as form-shaped JSON, in priority order, without its secrets."""
    rows = session.scalars(Gateway.in_order())
    exported = []
    for gateway in rows:
        driver = driver_class(gateway.type)
        entry: dict[str, Any] = {
            "name": gateway.name,
            "type": gateway.type,
            "enabled": gateway.enabled,
            "priority": gateway.priority,
            "locations": list(gateway.locations or []),
            "max_per_second": gateway.max_per_second,
            "max_in_flight": gateway.max_in_flight,
            "balance_check": dict(gateway.balance_check or {}),
            "hooks": dict(gateway.hooks or {}),
        }
        settings = gateway_settings(gateway)
        for name in driver.fields:
            entry[name] = "" if name in driver.secret_fields else settings.get(name)
        exported.append(entry)
    return exported
