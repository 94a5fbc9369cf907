"""Saving, importing and exporting gateways, with the same validation for forms, CLI and files.

Field names are the admin form's, so an export can be edited and imported back. Secrets are
encrypted on save, never exported, and a blank secret on update keeps the stored one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import requests
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..errors import GatewayConfigError
from ..models import Gateway
from . import Driver, OutgoingSMS, driver_class
from .fields import boolean
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


def parse_locations(raw: Any) -> list[str]:
    """Locations as a clean list; accepts a list or a comma-separated string."""
    items: Iterable[Any] = raw.split(",") if isinstance(raw, str) else (raw or [])
    seen: list[str] = []
    for item in items:
        key = str(item).strip()
        if key and key not in seen:
            seen.append(key)
    return seen


def parse_limit(raw: Any, label: str) -> int | None:
    """A per-gateway limit: a whole number from 1 to :data:`MAX_LIMIT`, or ``None`` (blank: no
    limit). Raises ``ValueError`` with a sentence naming ``label``."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    problem = f"{label} must be a whole number from 1 to {MAX_LIMIT:,}, or blank for no limit."
    if isinstance(raw, bool):
        raise ValueError(problem)
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise ValueError(problem) from None
    if not 1 <= value <= MAX_LIMIT:
        raise ValueError(problem)
    return value


def _common(data: Mapping[str, Any], errors: dict[str, str]) -> dict[str, Any]:
    name = str(data.get("name") or "").strip()
    if not name:
        errors["name"] = "Name is required."
    elif len(name) > MAX_NAME:
        errors["name"] = f"Name must be at most {MAX_NAME} characters."
    priority = data.get("priority")
    if priority not in (None, ""):
        try:
            priority = int(priority)
        except (TypeError, ValueError):
            errors["priority"] = "Priority must be a whole number."
            priority = None
    else:
        priority = None
    raw_locations = data.get("locations")
    if raw_locations is not None and not isinstance(raw_locations, str | list | tuple):
        errors["locations"] = "Locations must be a list of location keys."
        raw_locations = None
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
        "locations": parse_locations(raw_locations),
        **limits,
    }


def gateway_config(gateway: Gateway, vault: Vault) -> dict[str, Any]:
    """The driver config of ``gateway``: its settings with the secrets decrypted."""
    return {**(gateway.settings or {}), **vault.open(gateway.secrets_sealed)}


def _with_kept_secrets(
    vault: Vault, driver: type[Driver], data: Mapping[str, Any], gateway: Gateway | None
) -> dict[str, Any]:
    """The driver's fields from ``data``; a secret left blank keeps the stored one (secrets
    are write-only on the form, so a blank one means "unchanged")."""
    kept = vault.open(gateway.secrets_sealed) if gateway is not None else {}
    config = {name: data.get(name) for name in driver.fields}
    for name in driver.secret_fields:
        if not str(config.get(name) or "").strip() and kept.get(name):
            config[name] = kept[name]
    return config


def preview_request(
    vault: Vault,
    kind: str,
    data: Mapping[str, Any],
    gateway: Gateway | None,
    sms: OutgoingSMS,
) -> str:
    """What a ``kind`` gateway set up with form-shaped ``data`` would send for ``sms``, with
    every secret masked; nothing is saved and nothing is sent.

    :param gateway: the stored gateway being edited, whose secrets fill blank secret fields.
    :raises GatewayConfigError: every problem, by field (``"preview"``: the request itself).
    """
    driver = driver_class(kind)
    config = driver.validate(_with_kept_secrets(vault, driver, data, gateway))
    with requests.Session() as http:
        return driver(config, http).preview(sms)


@dataclass(frozen=True)
class _Checked:
    """A gateway's form data, validated and ready to be written."""

    common: dict[str, Any]
    driver: type[Driver]
    config: dict[str, Any]


def _check(
    session: Session, vault: Vault, data: Mapping[str, Any], gateway: Gateway | None
) -> _Checked:
    """Validate form-shaped ``data`` for a new gateway (or ``gateway``); writes nothing."""
    errors: dict[str, str] = {}
    common = _common(data, errors)
    try:
        driver = driver_class(common["type"])
    except GatewayConfigError as exc:
        errors.update(exc.errors)
        raise GatewayConfigError(errors) from None
    config = _with_kept_secrets(vault, driver, data, gateway)
    if common["name"]:
        clash = session.scalar(select(Gateway).where(Gateway.name == common["name"]))
        if clash is not None and clash is not gateway:
            errors["name"] = f"A gateway named {common['name']!r} already exists."
    try:
        config = driver.validate(config)
    except GatewayConfigError as exc:
        errors.update(exc.errors)
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
    gateway.settings = {k: v for k, v in config.items() if k not in driver.secret_fields}
    gateway.secrets_sealed = vault.seal({k: config.get(k) or "" for k in driver.secret_fields})
    return gateway


def save_gateway(
    session: Session, vault: Vault, data: Mapping[str, Any], gateway: Gateway | None = None
) -> Gateway:
    """Create (or update ``gateway``) from form-shaped ``data``; raises with every problem
    before changing anything.

    Not committed: the caller owns the transaction.
    """
    return _write(session, vault, _check(session, vault, data, gateway), gateway)


def import_gateways(
    session: Session, vault: Vault, items: Sequence[Mapping[str, Any]]
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
        name = str(item.get("name") or "").strip()
        if name in first_entry:
            errors[f"{number}.name"] = f"Entry {first_entry[name]} already has the name {name!r}."
            continue
        first_entry.setdefault(name, number)
        existing = session.scalar(select(Gateway).where(Gateway.name == name)) if name else None
        try:
            planned.append((_check(session, vault, item, existing), existing))
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
        }
        for name in driver.fields:
            entry[name] = "" if name in driver.secret_fields else gateway.settings.get(name)
        exported.append(entry)
    return exported
