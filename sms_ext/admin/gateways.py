"""Admin pages for gateways: list and order them, edit them per type, preview and test them.

Every change goes through :func:`sms_ext.gateway_store.save_gateway`, so the form validates
exactly like the CLI and file imports. Secrets are write-only here: a stored one is never
rendered (pages show a mask), a blank input keeps it while the destination stays the same, and
what the admin typed survives a preview or a refused save in its input.
"""

from __future__ import annotations

from collections.abc import Mapping

from flask import abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import func, select, update

from ..checks import INT32_MAX, parse_id
from ..errors import GatewayConfigError, MessageError, PhoneNumberError
from ..gateways import OutgoingSMS, driver_class
from ..gateways.health import describe
from ..gateways.payload import PLACEHOLDERS
from ..gateways.presets import PRESETS
from ..gateways.store import LIMIT_FIELDS, preview_request, save_gateway
from ..messages import outbox
from ..models import Gateway, Kind, Message, MessageAttempt, utcnow
from ..state import get_state
from ..text.phone import normalize_phone
from . import acting_admin, bp
from .balance_form import ERROR_KEYS as BALANCE_ERRORS
from .gateway_forms import (
    SAMPLE_MESSAGE,
    SAMPLE_PHONE,
    TYPE_LABELS,
    ActionForm,
    GatewayForm,
    build_form,
    check_action,
    check_csrf,
    form_kind,
    stored_hints,
    submitted_data,
)
from .gateway_test_panel import REFRESH_SECONDS, TEST_EXPIRES, GatewayTestPanel, panel_for
from .hook_form import ERROR_KEYS as HOOK_ERRORS
from .webhooks import hook_urls

TEST_MESSAGE = "Test message from the SMS admin: this gateway works."

# -- helpers ----------------------------------------------------------------------------------


def _ordered() -> list[Gateway]:
    session = get_state().session
    return list(session.scalars(Gateway.in_order()))


def _renumber(gateways: list[Gateway]) -> None:
    for position, gateway in enumerate(gateways, start=1):
        gateway.priority = position


def _gateway(gateway_id: int | str) -> Gateway:
    """The gateway of a URL, or 404 (also for ids no ``Integer`` column holds)."""
    known = parse_id(gateway_id, INT32_MAX)
    gateway = get_state().session.get(Gateway, known) if known is not None else None
    if gateway is None:
        abort(404)
    return gateway


def _page(
    form: GatewayForm,
    kind: str,
    gateway: Gateway | None,
    *,
    errors: Mapping[str, str] | None = None,
    preview: str | None = None,
    test: GatewayTestPanel | None = None,
    status: int = 200,
) -> ResponseReturnValue:
    errors = dict(errors or {})
    shown = {
        "name",
        "enabled",
        "locations",
        "sample_phone",
        "sample_message",
        *LIMIT_FIELDS,
        *form.layout,
        *BALANCE_ERRORS,
        *HOOK_ERRORS,
    }
    test = test or panel_for(gateway)
    refresh = test is not None and test.refresh
    typed_secret = any(form[name].data for name in driver_class(kind).secret_fields)
    html = render_template(
        "sms/admin/gateways/form.html",
        form=form,
        kind=kind,
        gateway=gateway,
        errors=errors,
        other_errors={k: v for k, v in errors.items() if k not in shown},
        hints=stored_hints(kind, gateway),
        secret_fields=driver_class(kind).secret_fields,
        type_labels=TYPE_LABELS,
        presets=PRESETS,
        placeholders=PLACEHOLDERS,
        preview=preview,
        test=test,
        refresh_seconds=REFRESH_SECONDS,
        test_form=ActionForm(formdata=None),
        hook_urls=hook_urls(gateway) if gateway else [],
    )
    # An explicit target: refreshing a URL with a #fragment is only a jump within the page.
    headers = {"Refresh": f"{REFRESH_SECONDS}; url={request.full_path}"} if refresh else {}
    if typed_secret:  # rendered back into its input: keep the page out of every cache
        headers["Cache-Control"] = "no-store"
    return html, status, headers


# -- list and order ---------------------------------------------------------------------------


@bp.get("/gateways/")
def gateways() -> str:
    """Every gateway in the order they are tried, with its last result and its health (paused,
    skipped by the breaker) as every worker sees it; nothing when Redis cannot be asked."""
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
    ordered = _ordered()
    views = get_state().gateway_health.views(gateway.id for gateway in ordered)
    return render_template(
        "sms/admin/gateways/list.html",
        gateways=ordered,
        last=last,
        health={gateway_id: describe(view) for gateway_id, view in views.items()},
        type_labels=TYPE_LABELS,
        presets=PRESETS,
        moved=_moved(),
    )


def _moved() -> tuple[int, str] | None:
    """The gateway just moved with ↑/↓ and the way it went (``?moved=3&direction=up``): its
    button gets the keyboard focus back after the page reloads."""
    moved, direction = request.args.get("moved", ""), request.args.get("direction", "")
    gateway_id = parse_id(moved, INT32_MAX)
    if gateway_id is not None and direction in ("up", "down"):
        return gateway_id, direction
    return None


@bp.post("/gateways/<int:gateway_id>/toggle")
def gateway_toggle(gateway_id: int) -> ResponseReturnValue:
    check_action()
    gateway = _gateway(gateway_id)
    gateway.enabled = not gateway.enabled
    get_state().session.commit()
    flash(f"{gateway.name} {'enabled' if gateway.enabled else 'disabled'}.", "ok")
    return redirect(url_for(".gateways"), 303)


@bp.post("/gateways/<int:gateway_id>/move")
def gateway_move(gateway_id: int) -> ResponseReturnValue:
    check_action()
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
    # No #fragment: browsers ignore autofocus on a page opened at one, and the focused
    # button scrolls into view by itself.
    direction = request.form["direction"]
    return redirect(url_for(".gateways", moved=gateway.id, direction=direction), 303)


@bp.post("/gateways/order")
def gateway_order() -> ResponseReturnValue:
    """Put the posted ids first, in that order (drag and drop); others keep theirs after."""
    check_action()
    wanted: list[int] = []
    for raw in request.form.getlist("ids"):
        for part in raw.split(","):
            gateway_id = parse_id(part, INT32_MAX)
            if gateway_id is not None and gateway_id not in wanted:
                wanted.append(gateway_id)
    ordered = _ordered()
    by_id = {gateway.id: gateway for gateway in ordered}
    first = [by_id[i] for i in wanted if i in by_id]
    _renumber(first + [gateway for gateway in ordered if gateway not in first])
    get_state().session.commit()
    return redirect(url_for(".gateways"), 303)


# -- create, edit, delete ---------------------------------------------------------------------


def _save(kind: str, gateway: Gateway | None) -> ResponseReturnValue:
    form = build_form(kind, gateway, submitted=True)
    check_csrf(form)
    state = get_state()
    try:
        data = submitted_data(form, kind)
        deny_private = state.settings.gateway_deny_private
        saved = save_gateway(state.session, state.vault, data, gateway, deny_private=deny_private)
        state.session.commit()
    except GatewayConfigError as exc:
        state.session.rollback()
        return _page(form, kind, gateway, errors=exc.errors, status=400)
    flash(f"Gateway {saved.name} saved.", "ok")
    return redirect(url_for(".gateway_edit", gateway_id=saved.id), 303)


@bp.route("/gateways/new", methods=["GET", "POST"])
def gateway_new() -> ResponseReturnValue:
    kind = form_kind()
    if request.method == "POST":
        return _save(kind, None)
    return _page(build_form(kind, None, submitted=False), kind, None)


@bp.route("/gateways/<int:gateway_id>/", methods=["GET", "POST"])
def gateway_edit(gateway_id: int) -> ResponseReturnValue:
    gateway = _gateway(gateway_id)
    kind = form_kind(gateway)
    if request.method == "POST":
        return _save(kind, gateway)
    return _page(build_form(kind, gateway, submitted=False), kind, gateway)


@bp.post("/gateways/<int:gateway_id>/delete")
def gateway_delete(gateway_id: int) -> ResponseReturnValue:
    check_action()
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


@bp.post("/gateways/preview")
def gateway_preview() -> ResponseReturnValue:
    """The masked request the form's current values would send, without saving anything."""
    gateway_id = request.args.get("gateway", "")
    gateway = _gateway(gateway_id) if gateway_id else None
    kind = form_kind(gateway)
    form = build_form(kind, gateway, submitted=True)
    check_csrf(form)
    state = get_state()
    errors: dict[str, str] = {}
    try:
        phone = normalize_phone(
            form.sample_phone.data or SAMPLE_PHONE,
            default_region=state.settings.default_region,
        )
    except PhoneNumberError as exc:
        errors["sample_phone"] = str(exc)
        phone = SAMPLE_PHONE  # still preview, to report every other problem at once
    sms = OutgoingSMS("1", phone, form.sample_message.data or SAMPLE_MESSAGE)
    try:
        text = preview_request(state.vault, kind, submitted_data(form, kind), gateway, sms)
    except GatewayConfigError as exc:
        errors.update(exc.errors)
    if errors:
        return _page(form, kind, gateway, errors=errors, status=400)
    return _page(form, kind, gateway, preview=text)


@bp.post("/gateways/<int:gateway_id>/test")
def gateway_test(gateway_id: int) -> ResponseReturnValue:
    """Send a test SMS through this gateway only (even when disabled), tried once.

    A refused number is shown next to the test form, the typed number kept in the field.
    """
    check_action()
    gateway = _gateway(gateway_id)
    state = get_state()
    phone = request.form.get("phone", "").strip()
    try:
        row = outbox.compose(
            state,
            phone,
            TEST_MESSAGE,
            kind=Kind.TEST,
            gateway=gateway,
            expires_at=utcnow() + TEST_EXPIRES,
            sent_by=acting_admin(),
        )
        message = outbox.queue_one(state, row, commit=True)
    except (PhoneNumberError, MessageError) as exc:
        state.session.rollback()
        kind = form_kind(gateway)
        form = build_form(kind, gateway, submitted=False)
        panel = GatewayTestPanel(phone=phone[:40], error=str(exc))
        return _page(form, kind, gateway, test=panel, status=400)
    return redirect(
        url_for(".gateway_edit", gateway_id=gateway.id, test=message.id, _anchor="test"), 303
    )
