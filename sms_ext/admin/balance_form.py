"""The balance check fields of the gateway form: their own form class, nested in every
gateway form as ``balance`` (inputs named ``balance-url``, ``balance-field``...).

Headers are typed one per line (``Authorization: Bearer {api_key}``) and stored as the
``{name, value}`` rows the custom gateway's headers use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wtforms import BooleanField, Form, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice

from ..gateways.balance_checks import DEFAULT_PERIOD, DRIVER_CHECKED, PERIODS
from ..gateways.presets import PRESETS
from ..models import Gateway

ERROR_KEYS = tuple(
    f"balance_{name}"
    for name in (
        "check",
        "enabled",
        "url",
        "method",
        "body",
        "headers",
        "field",
        "pattern",
        "period",
        "emails",
        "dashboard",
        "minimum",
        "currency",
    )
)
"""The keys of balance errors: shown next to their fields, not again at the top."""


class BalanceFields(Form):
    """Nested in the CSRF-protected gateway form, so no token of its own."""

    enabled = BooleanField("Check the balance on schedule")
    period = SelectField(
        "How often",
        choices=[SelectChoice(key, label) for key, (_, label) in PERIODS.items()],
        default=DEFAULT_PERIOD,
        validate_choice=False,
    )
    minimum = StringField(
        "Minimum balance",
        description="Alerts below it, below half of it and at zero; blank: only at zero.",
        render_kw={"inputmode": "decimal", "autocomplete": "off"},
    )
    currency = StringField("Currency", description="E.g. USD, ZAR or credits.")
    emails = StringField(
        "Email alerts to",
        description="Comma-separated addresses; one email per crossing, and on recovery.",
        render_kw={"autocomplete": "off"},
    )
    dashboard = BooleanField("Show a banner on the admin pages while low", default=True)
    url = StringField("Check URL", description="Placeholders: {api_key}, {api_secret}, {from}.")
    method = SelectField("HTTP verb of the check", choices=["GET", "POST"], validate_choice=False)
    body = TextAreaField("Check body (POST)", description="Form (a=1&key={api_key}) or JSON.")
    headers = TextAreaField(
        "Check headers", description="One per line: Authorization: Bearer {api_key}"
    )
    field = StringField(
        "Balance field",
        description="Dotted path into the JSON answer: balance, data.account.balance, "
        "items.0.balance.",
    )
    pattern = StringField(
        "Or a pattern",
        description="For answers that are not JSON: a regular expression with one group, "
        "e.g. Credit: ([0-9.]+)",
    )


def _header_lines(rows: Any) -> str:
    return "\n".join(
        f"{row.get('name', '')}: {row.get('value', '')}"
        for row in rows or []
        if isinstance(row, Mapping)
    )


def initial(kind: str, gateway: Gateway | None, preset: str) -> dict[str, Any]:
    """The fields' values for a GET: the stored check, or a preset's request."""
    stored: Mapping[str, Any] = {}
    if gateway is not None and gateway.type == kind and gateway.balance_check:
        stored = gateway.balance_check
    elif gateway is None and kind == "custom" and preset in PRESETS:
        stored = PRESETS[preset].get("balance", {})
    values = {k: v for k, v in stored.items() if k not in ("headers", "emails")}
    values["headers"] = _header_lines(stored.get("headers"))
    values["emails"] = ", ".join(stored.get("emails") or [])
    values.setdefault("dashboard", True)
    return values


def submitted(form: BalanceFields, kind: str) -> dict[str, Any]:
    """The store's ``balance_check`` entry from the submitted fields."""
    data: dict[str, Any] = {
        "enabled": bool(form.enabled.data),
        "period": form.period.data or DEFAULT_PERIOD,
        "minimum": form.minimum.data or "",
        "currency": form.currency.data or "",
        "emails": form.emails.data or "",
        "dashboard": bool(form.dashboard.data),
    }
    if kind not in DRIVER_CHECKED:
        rows = []
        for line in (form.headers.data or "").splitlines():
            name, _, value = line.partition(":")
            if name.strip() or value.strip():
                rows.append({"name": name.strip(), "value": value.strip()})
        data.update(
            url=form.url.data or "",
            method=form.method.data or "GET",
            body=form.body.data or "",
            headers=rows,
            field=form.field.data or "",
            pattern=form.pattern.data or "",
        )
    return data
