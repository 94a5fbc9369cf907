"""Admin pages for gateways: list and order them, edit them per type, preview and test them.

Every change goes through :func:`sms_ext.gateway_store.save_gateway`, so the form validates
exactly like the CLI and file imports. Secrets are write-only here: their inputs are always
rendered empty, a blank one keeps the stored value, and pages only ever show a mask.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import requests
from flask import abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_wtf import FlaskForm
from flask_wtf.csrf import CSRFError
from sqlalchemy import func, select, update
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

from ..gateway_store import save_gateway
from ..gateways import GatewayConfigError, OutgoingSMS, PreparedCall, driver_class
from ..gateways.http import summarize
from ..gateways.payload import PLACEHOLDERS
from ..gateways.presets import PRESETS
from ..models import Gateway, Kind, Message, MessageAttempt, Status
from ..phone import PhoneNumberError, normalize_phone
from ..state import get_state
from . import NAV, bp

TYPE_LABELS = {
    "custom": "Custom HTTP",
    "twilio": "Twilio",
    "smsportal": "SMSPortal",
    "sandbox": "Sandbox (sends nothing)",
}
EMPTY_HEADER_ROWS = 2
SAMPLE_PHONE = "+27831234567"
SAMPLE_MESSAGE = "Your Wi-Fi code is 123456"
TEST_MESSAGE = "Test message from the SMS admin: this gateway works."
MASK_DOT = "\u2022"


# -- forms ------------------------------------------------------------------------------------


class HeaderRow(Form):
    """One custom header; nested forms carry no CSRF token of their own."""

    name = StringField("Header name")
    value = StringField("Header value")


class ActionForm(FlaskForm):
    """The CSRF token of a one-button form (toggle, move, order, delete, test)."""


def _secret(label: str) -> PasswordField:
    return PasswordField(label, render_kw={"autocomplete": "new-password"})


class GatewayForm(FlaskForm):
    """Fields every type has; the type's own fields come from the subclasses."""

    layout: tuple[str, ...] = ()
    name = StringField("Name")
    enabled = BooleanField("Enabled", default=True)
    locations = StringField(
        "Locations", description="Comma-separated location keys; blank serves every location."
    )
    sample_phone = StringField("Sample number", default=SAMPLE_PHONE)
    sample_message = StringField("Sample message", default=SAMPLE_MESSAGE)


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
    lua_script = TextAreaField(
        "Lua script (advanced)",
        description="Optional build_request / parse_response functions, run sandboxed.",
    )


class TwilioForm(GatewayForm):
    layout = (
        "account_sid",
        "api_key",
        "api_secret",
        "from_number",
        "status_callback",
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
    status_callback = StringField("Status callback URL")
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


# -- helpers ----------------------------------------------------------------------------------


def _check_csrf(form: FlaskForm) -> None:
    """A failed CSRF check is a 400 (:class:`CSRFError`); fields themselves have no validators."""
    form.validate()
    problems = form.errors.get("csrf_token")
    if problems:
        raise CSRFError(problems[0])


def _action() -> None:
    _check_csrf(ActionForm())


def _ordered() -> list[Gateway]:
    session = get_state().session
    return list(session.scalars(select(Gateway).order_by(Gateway.priority, Gateway.id)))


def _renumber(gateways: list[Gateway]) -> None:
    for position, gateway in enumerate(gateways, start=1):
        gateway.priority = position


def _gateway(gateway_id: int) -> Gateway:
    gateway = get_state().session.get(Gateway, gateway_id)
    if gateway is None:
        abort(404)
    return gateway


def mask(secret: str) -> str:
    """What a page may show of a stored secret: its last 4 characters when it is long."""
    shown = secret[-4:] if len(secret) >= 16 else ""
    return MASK_DOT * 4 + shown


def _stored_hints(kind: str, gateway: Gateway | None) -> dict[str, str]:
    """Per secret field, the hint about the value a blank input keeps (as the store does)."""
    if gateway is None:
        return {}
    stored = get_state().vault.open(gateway.secrets_sealed)
    return {
        name: f"stored: {mask(str(stored[name]))} \u2014 leave blank to keep"
        for name in driver_class(kind).secret_fields
        if stored.get(name)
    }


def _kind(gateway: Gateway | None = None) -> str:
    kind = request.values.get("type") or (gateway.type if gateway else "custom")
    return kind if kind in FORMS else "custom"


def _initial(kind: str, gateway: Gateway | None) -> dict[str, Any]:
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
        }
        if gateway.type == kind:
            data.update(gateway.settings or {})
    for name in driver_class(kind).secret_fields:
        data.pop(name, None)
    if isinstance(data.get("timeout"), float):
        data["timeout"] = f"{data['timeout']:g}"
    return data


def _build_form(kind: str, gateway: Gateway | None, *, submitted: bool) -> GatewayForm:
    form_class = FORMS[kind]
    form = form_class() if submitted else form_class(formdata=None, data=_initial(kind, gateway))
    if "headers" in form_class.layout:
        headers = form["headers"]
        blank = [row for row in headers if not (row["name"].data or row["value"].data)]
        for _ in range(EMPTY_HEADER_ROWS - len(blank)):
            headers.append_entry()
    return form


def _submitted(form: GatewayForm, kind: str) -> dict[str, Any]:
    """The store's form-shaped data from a submitted form."""
    data: dict[str, Any] = {
        "name": form.name.data or "",
        "type": kind,
        "enabled": bool(form.enabled.data),
        "locations": form.locations.data or "",
    }
    for name in driver_class(kind).fields:
        value = form[name].data
        if name == "headers":
            value = [{"name": row["name"] or "", "value": row["value"] or ""} for row in value]
        data[name] = value
    return data


def _page(
    form: GatewayForm,
    kind: str,
    gateway: Gateway | None,
    *,
    errors: Mapping[str, str] | None = None,
    preview: str | None = None,
    status: int = 200,
) -> ResponseReturnValue:
    errors = dict(errors or {})
    shown = {"name", "enabled", "locations", "sample_phone", "sample_message", *form.layout}
    test_message, refresh = _test_message(gateway)
    typed_secret = any(form[name].data for name in driver_class(kind).secret_fields)
    html = render_template(
        "sms/admin/gateways/form.html",
        form=form,
        kind=kind,
        gateway=gateway,
        errors=errors,
        other_errors={k: v for k, v in errors.items() if k not in shown},
        hints=_stored_hints(kind, gateway),
        secret_fields=driver_class(kind).secret_fields,
        type_labels=TYPE_LABELS,
        presets=PRESETS,
        placeholders=PLACEHOLDERS,
        preview=preview,
        secrets_dropped=typed_secret and (preview is not None or bool(errors)),
        test_message=test_message,
        refresh=refresh,
        test_form=ActionForm(formdata=None),
    )
    headers = {"Refresh": "2"} if refresh else {}
    return html, status, headers


def _test_message(gateway: Gateway | None) -> tuple[Message | None, bool]:
    """The test message named in ``?test=`` when it went through this gateway."""
    if gateway is None:
        return None, False
    try:
        message_id = int(request.args.get("test", ""))
    except ValueError:
        return None, False
    message = get_state().session.get(Message, message_id)
    if message is None or message.gateway_id != gateway.id or message.kind != Kind.TEST:
        return None, False
    return message, message.status in (Status.QUEUED, Status.SENDING)


# -- list and order ---------------------------------------------------------------------------


@bp.get("/gateways/")
def gateways() -> str:
    """Every gateway in the order they are tried, with its last result."""
    session = get_state().session
    latest = (
        select(func.max(MessageAttempt.id))
        .where(MessageAttempt.gateway_id.is_not(None))
        .group_by(MessageAttempt.gateway_id)
    )
    last = {
        attempt.gateway_id: attempt
        for attempt in session.scalars(select(MessageAttempt).where(MessageAttempt.id.in_(latest)))
    }
    return render_template(
        "sms/admin/gateways/list.html",
        gateways=_ordered(),
        last=last,
        type_labels=TYPE_LABELS,
        presets=PRESETS,
    )


@bp.post("/gateways/<int:gateway_id>/toggle")
def gateway_toggle(gateway_id: int) -> ResponseReturnValue:
    _action()
    gateway = _gateway(gateway_id)
    gateway.enabled = not gateway.enabled
    get_state().session.commit()
    flash(f"{gateway.name} {'enabled' if gateway.enabled else 'disabled'}.", "ok")
    return redirect(url_for(".gateways"), 303)


@bp.post("/gateways/<int:gateway_id>/move")
def gateway_move(gateway_id: int) -> ResponseReturnValue:
    _action()
    gateway = _gateway(gateway_id)
    step = {"up": -1, "down": 1}.get(request.form.get("direction", ""))
    if step is None:
        abort(400, "direction must be up or down")
    ordered = _ordered()
    index = ordered.index(gateway)
    other = index + step
    if 0 <= other < len(ordered):
        ordered[index], ordered[other] = ordered[other], ordered[index]
    _renumber(ordered)
    get_state().session.commit()
    return redirect(url_for(".gateways", _anchor=f"gateway-{gateway.id}"), 303)


@bp.post("/gateways/order")
def gateway_order() -> ResponseReturnValue:
    """Put the posted ids first, in that order (drag and drop); others keep theirs after."""
    _action()
    wanted: list[int] = []
    for raw in request.form.getlist("ids"):
        for part in raw.split(","):
            if part.strip().isdigit() and int(part) not in wanted:
                wanted.append(int(part))
    ordered = _ordered()
    by_id = {gateway.id: gateway for gateway in ordered}
    first = [by_id[i] for i in wanted if i in by_id]
    _renumber(first + [gateway for gateway in ordered if gateway not in first])
    get_state().session.commit()
    return redirect(url_for(".gateways"), 303)


# -- create, edit, delete ---------------------------------------------------------------------


def _save(kind: str, gateway: Gateway | None) -> ResponseReturnValue:
    form = _build_form(kind, gateway, submitted=True)
    _check_csrf(form)
    state = get_state()
    try:
        saved = save_gateway(state.session, state.vault, _submitted(form, kind), gateway)
        state.session.commit()
    except GatewayConfigError as exc:
        state.session.rollback()
        return _page(form, kind, gateway, errors=exc.errors, status=400)
    flash(f"Gateway {saved.name} saved.", "ok")
    return redirect(url_for(".gateway_edit", gateway_id=saved.id), 303)


@bp.route("/gateways/new", methods=["GET", "POST"])
def gateway_new() -> ResponseReturnValue:
    kind = _kind()
    if request.method == "POST":
        return _save(kind, None)
    return _page(_build_form(kind, None, submitted=False), kind, None)


@bp.route("/gateways/<int:gateway_id>/", methods=["GET", "POST"])
def gateway_edit(gateway_id: int) -> ResponseReturnValue:
    gateway = _gateway(gateway_id)
    kind = _kind(gateway)
    if request.method == "POST":
        return _save(kind, gateway)
    return _page(_build_form(kind, gateway, submitted=False), kind, gateway)


@bp.post("/gateways/<int:gateway_id>/delete")
def gateway_delete(gateway_id: int) -> ResponseReturnValue:
    _action()
    gateway = _gateway(gateway_id)
    if request.form.get("confirm") != "yes":
        flash("Tick the confirmation box to delete the gateway.", "error")
        return redirect(url_for(".gateway_edit", gateway_id=gateway.id, _anchor="delete"), 303)
    session = get_state().session
    # Explicit, so SQLite without foreign-key enforcement ends up like PostgreSQL.
    for model in (Message, MessageAttempt):
        session.execute(update(model).where(model.gateway_id == gateway.id).values(gateway_id=None))
    session.delete(gateway)
    session.commit()
    _renumber(_ordered())
    session.commit()
    flash(f"Gateway {gateway.name} deleted.", "ok")
    return redirect(url_for(".gateways"), 303)


# -- preview and test -------------------------------------------------------------------------


def _prepared(driver: Any, sms: OutgoingSMS) -> PreparedCall:
    kind = driver.kind
    if kind == "smsportal":
        call = driver.prepare([sms])
        call.headers["Authorization"] = "Bearer <token from GET /Authentication>"
        return call
    return driver.prepare(sms)


@bp.post("/gateways/preview")
def gateway_preview() -> ResponseReturnValue:
    """The masked request the form's current values would send, without saving anything."""
    gateway_id = request.args.get("gateway", "")
    gateway = _gateway(int(gateway_id)) if gateway_id.isdigit() else None
    kind = _kind(gateway)
    form = _build_form(kind, gateway, submitted=True)
    _check_csrf(form)
    state = get_state()
    driver_type = driver_class(kind)
    data = _submitted(form, kind)
    kept = state.vault.open(gateway.secrets_sealed) if gateway is not None else {}
    for name in driver_type.secret_fields:
        if not str(data.get(name) or "").strip() and kept.get(name):
            data[name] = kept[name]
    errors: dict[str, str] = {}
    try:
        phone = normalize_phone(
            form.sample_phone.data or SAMPLE_PHONE,
            default_region=state.settings.default_region,
        )
    except PhoneNumberError as exc:
        errors["sample_phone"] = str(exc)
    try:
        config = driver_type.validate({name: data.get(name) for name in driver_type.fields})
    except GatewayConfigError as exc:
        errors.update(exc.errors)
    if errors:
        return _page(form, kind, gateway, errors=errors, status=400)
    if kind == "sandbox":
        text = "The sandbox sends no request: messages stay in the database."
    else:
        sms = OutgoingSMS("1", phone, form.sample_message.data or SAMPLE_MESSAGE)
        with requests.Session() as http:
            driver = driver_type(config, http)
            try:
                text = summarize(_prepared(driver, sms), driver.secrets)
            except Exception as exc:  # a Lua script or a header may refuse to build
                message = str(exc)
                for secret in driver.secrets:
                    message = message.replace(secret, "****")
                return _page(form, kind, gateway, errors={"preview": message}, status=400)
    return _page(form, kind, gateway, preview=text)


@bp.post("/gateways/<int:gateway_id>/test")
def gateway_test(gateway_id: int) -> ResponseReturnValue:
    """Send a test SMS through this gateway only (even when disabled)."""
    _action()
    gateway = _gateway(gateway_id)
    state = get_state()
    try:
        message = state.extension.send(
            request.form.get("phone", ""), TEST_MESSAGE, kind=Kind.TEST, gateway=gateway
        )
    except (PhoneNumberError, ValueError) as exc:
        flash(f"Test not sent: {exc}", "error")
        return redirect(url_for(".gateway_edit", gateway_id=gateway.id, _anchor="test"), 303)
    return redirect(
        url_for(".gateway_edit", gateway_id=gateway.id, test=message.id, _anchor="test"), 303
    )


NAV.append(("sms_admin.gateways", "Gateways"))
