"""The gateway forms of the admin: one form class per gateway type, and the helpers that fill
them from a gateway or a preset and read them back into the store's form-shaped data.

Secrets are write-only: a page never renders a stored secret, only a mask. What the admin typed
is rendered back into its (password) input when the same form comes back with a preview or an
error, so a preview followed by "Save" keeps it.
"""

from __future__ import annotations

from typing import Any

from flask import request
from flask_wtf import FlaskForm
from flask_wtf.csrf import CSRFError
from wtforms import (
    BooleanField,
    FieldList,
    Form,
    FormField,
    PasswordField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.widgets import PasswordInput

from ..gateways import driver_class
from ..gateways.presets import PRESETS
from ..gateways.store import LIMIT_FIELDS, gateway_settings
from ..models import Gateway
from ..state import get_state
from . import balance_form, hook_form
from .balance_form import BalanceFields
from .hook_form import HookFields

TYPE_LABELS = {
    "custom": "Custom HTTP",
    "twilio": "Twilio",
    "smsportal": "SMSPortal",
    "sandbox": "Sandbox (sends nothing)",
}
EMPTY_HEADER_ROWS = 2
SAMPLE_PHONE = "+27831234567"
SAMPLE_MESSAGE = "Your Wi-Fi code is 123456"
MASK_DOT = "\u2022"


# -- forms ------------------------------------------------------------------------------------


class HeaderRow(Form):
    """One custom header; nested forms carry no CSRF token of their own."""

    name = StringField("Header name")
    value = StringField("Header value")


class ActionForm(FlaskForm):
    """The CSRF token of a one-button form (toggle, move, order, delete, test)."""


def _secret(label: str, description: str = "") -> PasswordField:
    """A write-only secret input: empty on a fresh page, the typed value on a re-rendered one."""
    return PasswordField(
        label,
        description=description,
        widget=PasswordInput(hide_value=False),
        render_kw={"autocomplete": "new-password"},
    )


class GatewayForm(FlaskForm):
    """Fields every type has; the type's own fields come from the subclasses."""

    layout: tuple[str, ...] = ()
    name = StringField("Name")
    enabled = BooleanField("Enabled", default=True)
    locations = StringField(
        "Locations", description="Comma-separated location keys; blank serves every location."
    )
    max_per_second = StringField(
        LIMIT_FIELDS["max_per_second"],
        description="Requests per second from every worker together (a bulk request counts "
        "once); blank: no limit.",
        render_kw={"inputmode": "numeric", "autocomplete": "off"},
    )
    max_in_flight = StringField(
        LIMIT_FIELDS["max_in_flight"],
        description="Requests waiting for an answer at the same time; blank: no limit.",
        render_kw={"inputmode": "numeric", "autocomplete": "off"},
    )
    sample_phone = StringField("Sample number", default=SAMPLE_PHONE)
    sample_message = StringField("Sample message", default=SAMPLE_MESSAGE)
    balance = FormField(BalanceFields, label="Balance check")
    hooks = FormField(HookFields, label="Webhooks")


class CustomForm(GatewayForm):
    layout = (
        "url",
        "method",
        "content_type",
        "payload",
        "success_response",
        "headers",
        "api_key",
        "api_secret",
        "from_number",
        "timeout",
        "verify_ssl",
        "lua_enabled",
        "lua_script",
    )
    url = StringField("URL", description="Placeholders are allowed, e.g. /send?to={phone}.")
    method = SelectField("Method", choices=["POST", "GET"], validate_choice=False)
    content_type = SelectField(
        "Content type",
        choices=["form", "json"],
        validate_choice=False,
        description="form: x-www-form-urlencoded (with GET: the query string). json: needs POST.",
    )
    payload = TextAreaField(
        "Payload", description='Form: a=1&b={message}. JSON: {"text": "{message}"}.'
    )
    verify_ssl = BooleanField("Verify the TLS certificate", default=True)
    success_response = StringField(
        "Success response", description="Text a successful answer contains; blank: any 2xx."
    )
    headers = FieldList(FormField(HeaderRow), label="Custom headers")
    timeout = StringField("Timeout (seconds)", description="0.1 to 60; default 10.")
    api_key = _secret("API key")
    api_secret = _secret("API secret")
    from_number = StringField("From / sender ID", description="Fills {from}.")
    lua_enabled = BooleanField(
        "Use custom Lua script",
        description="Off: the script below is kept but not run.",
    )
    lua_script = TextAreaField(
        "Lua script (advanced)",
        description="build_request(msg, cfg) and/or parse_response(resp, cfg), run sandboxed; "
        "msg has the placeholders' names (msg.phone, msg.message...), cfg the API key and secret.",
    )


class TwilioForm(GatewayForm):
    layout = (
        "account_sid",
        "api_key",
        "api_secret",
        "from_number",
        "status_callback",
        "auth_token",
        "base_url",
        "timeout",
    )
    account_sid = StringField("Account SID", description="AC followed by 32 hex characters.")
    api_key = StringField(
        "API key SID", description="SK… (recommended); blank to use the Auth Token."
    )
    api_secret = _secret("API secret (or Auth Token)")
    from_number = StringField(
        "From", description="E.164 number, alphanumeric sender ID or Messaging Service SID."
    )
    status_callback = StringField(
        "Status callback URL", description="Blank: this app's receipt webhook (SMS_PUBLIC_URL)."
    )
    auth_token = _secret(
        "Auth Token (for webhooks)",
        "Checks the signature of Twilio's callbacks; needed only with an API key.",
    )
    base_url = StringField("Base URL", description="Blank: https://api.twilio.com")
    timeout = StringField("Timeout (seconds)")


class SMSPortalForm(GatewayForm):
    layout = ("client_id", "api_secret", "base_url", "timeout")
    client_id = StringField("Client ID")
    api_secret = _secret("API secret")
    base_url = StringField("Base URL", description="Blank: https://rest.smsportal.com/v1")
    timeout = StringField("Timeout (seconds)")


class SandboxForm(GatewayForm):
    layout = ()


FORMS: dict[str, type[GatewayForm]] = {
    "custom": CustomForm,
    "twilio": TwilioForm,
    "smsportal": SMSPortalForm,
    "sandbox": SandboxForm,
}


def check_csrf(form: FlaskForm) -> None:
    """A failed CSRF check is a 400 (:class:`CSRFError`); fields themselves have no validators."""
    form.validate()
    problems = form.errors.get("csrf_token")
    if problems:
        raise CSRFError(problems[0])


def check_action() -> None:
    check_csrf(ActionForm())


def mask(secret: str) -> str:
    """What a page may show of a stored secret: its last 4 characters when it is long."""
    shown = secret[-4:] if len(secret) >= 16 else ""
    return MASK_DOT * 4 + shown


def stored_hints(kind: str, gateway: Gateway | None) -> dict[str, str]:
    """Per secret field, the hint about the value a blank input keeps (as the store does)."""
    if gateway is None:
        return {}
    stored = get_state().vault.open(gateway.secrets_sealed)
    return {
        name: f"stored: {mask(str(stored[name]))} \u2014 leave blank to keep it (changing where "
        "requests go asks for it again)"
        for name in driver_class(kind).secret_fields
        if stored.get(name)
    }


def form_kind(gateway: Gateway | None = None) -> str:
    kind = request.values.get("type") or (gateway.type if gateway else "custom")
    return kind if kind in FORMS else "custom"


def initial_data(kind: str, gateway: Gateway | None) -> dict[str, Any]:
    """Form data for a GET: the gateway's values, or a preset's, without any secret."""
    if gateway is None:
        data: dict[str, Any] = {"enabled": True}
        preset = PRESETS.get(request.args.get("preset", ""))
        if kind == "custom" and preset:
            data.update(preset["config"])
            data["name"] = preset["label"]
    else:
        data = {
            "name": gateway.name,
            "enabled": gateway.enabled,
            "locations": ", ".join(gateway.locations or []),
            **{
                name: "" if getattr(gateway, name) is None else str(getattr(gateway, name))
                for name in LIMIT_FIELDS
            },
        }
        if gateway.type == kind:
            data.update(gateway_settings(gateway))
    data["balance"] = balance_form.initial(kind, gateway, request.args.get("preset", ""))
    data["hooks"] = hook_form.initial(gateway if gateway and gateway.type == kind else None)
    for name in driver_class(kind).secret_fields:
        data.pop(name, None)
    if isinstance(data.get("timeout"), float):
        data["timeout"] = f"{data['timeout']:g}"
    return data


def build_form(kind: str, gateway: Gateway | None, *, submitted: bool) -> GatewayForm:
    form_class = FORMS[kind]
    form = (
        form_class() if submitted else form_class(formdata=None, data=initial_data(kind, gateway))
    )
    if "headers" in form_class.layout:
        headers = form["headers"]
        blank = [row for row in headers if not (row["name"].data or row["value"].data)]
        for _ in range(EMPTY_HEADER_ROWS - len(blank)):
            headers.append_entry()
    return form


def submitted_data(form: GatewayForm, kind: str) -> dict[str, Any]:
    """The store's form-shaped data from a submitted form."""
    data: dict[str, Any] = {
        "name": form.name.data or "",
        "type": kind,
        "enabled": bool(form.enabled.data),
        "locations": form.locations.data or "",
        **{name: form[name].data or "" for name in LIMIT_FIELDS},
        "balance_check": balance_form.submitted(form.balance, kind),
        "hooks": hook_form.submitted(form.hooks.data),
    }
    for name in driver_class(kind).fields:
        value = form[name].data
        if name == "headers":
            value = [{"name": row["name"] or "", "value": row["value"] or ""} for row in value]
        data[name] = value
    return data
