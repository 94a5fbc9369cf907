"""Admin pages: vouchers — generate a batch, list and filter, print a sheet, export CSV, and
send by SMS (one voucher, or one per number of a pasted list)."""

from __future__ import annotations

from collections.abc import Iterator

from flask import (
    Response,
    abort,
    flash,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_login import current_user
from sqlalchemy import select

from sms_ext import Message, SMSError
from sms_ext.admin.logs import mask_phone, show_full_numbers
from sms_ext.models import utcnow

from ..extensions import db, sms
from ..models import Location, Voucher
from ..vouchers import VoucherError
from ..vouchers.durations import describe_duration, format_duration, parse_duration
from ..vouchers.export import csv_lines
from ..vouchers.generate import BatchSpec, generate_batch
from ..vouchers.listing import MAX_ROWS, STATES, VoucherFilter, printable
from ..vouchers.sending import send_batch, send_voucher
from . import bp

sms.admin_page("portal_admin.vouchers", "Vouchers")


def _int(name: str, default: int | None) -> int | None:
    """A whole number from the form; empty gives ``default``."""
    raw = request.form.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or len(raw) > 9:
        raise VoucherError(f"{name.replace('_', ' ').capitalize()} must be a whole number.")
    return int(raw)


def _spec() -> BatchSpec:
    return BatchSpec(
        count=_int("count", 0) or 0,
        duration_minutes=parse_duration(request.form.get("duration", "")),
        data_limit_mb=_int("data_limit", None),
        devices_allowed=_int("devices", 1) or 0,
        valid_days=_int("valid_days", 30) or 0,
        location_slugs=request.form.getlist("location"),
        batch=request.form.get("batch", ""),
    )


def _list_page(error: str | None = None, status: int = 200) -> ResponseReturnValue:
    flt = VoucherFilter.from_args(request.args)
    now = utcnow()
    vouchers = db.session.scalars(flt.query(now).limit(MAX_ROWS + 1)).all()
    return render_template(
        "portal/admin/vouchers.html",
        vouchers=vouchers[:MAX_ROWS],
        more=len(vouchers) > MAX_ROWS,
        flt=flt,
        states=STATES,
        now=now,
        locations=db.session.scalars(select(Location).order_by(Location.name)).all(),
        error=error,
        form=request.form,
        format_duration=format_duration,
    ), status


@bp.get("/vouchers")
def vouchers() -> ResponseReturnValue:
    """The list with its filters, and the form that generates a batch."""
    return _list_page()


@bp.post("/vouchers")
def vouchers_generate() -> ResponseReturnValue:
    try:
        batch = generate_batch(_spec())
    except VoucherError as exc:
        return _list_page(str(exc), 400)
    flash(f"Generated {len(batch)} vouchers in batch {batch[0].batch!r}.", "ok")
    return redirect(url_for(".vouchers", batch=batch[0].batch), 303)


@bp.get("/vouchers/export.csv")
def vouchers_export() -> Response:
    flt = VoucherFilter.from_args(request.args)
    now = utcnow()

    def lines() -> Iterator[str]:
        # Queried while the response streams, in the request's session (kept by the context).
        yield from csv_lines(
            db.session.scalars(flt.query(now).execution_options(yield_per=500)), now
        )

    response = Response(stream_with_context(lines()), mimetype="text/csv")
    response.headers["Content-Disposition"] = "attachment; filename=vouchers.csv"
    return response


@bp.get("/vouchers/sheet")
def vouchers_sheet() -> ResponseReturnValue:
    """The filtered vouchers as cards on a page made for printing (unused ones only)."""
    flt = VoucherFilter.from_args(request.args)
    now = utcnow()
    vouchers = [
        voucher
        for voucher in db.session.scalars(flt.query(now).limit(MAX_ROWS))
        if voucher.state_at(now) in ("new", "sent")
    ]
    return render_template(
        "portal/admin/voucher_sheet.html",
        vouchers=vouchers,
        venues=db.session.scalars(select(Location.name).order_by(Location.name)).all(),
        describe_duration=describe_duration,
    )


def _voucher(voucher_id: int) -> Voucher:
    voucher = db.session.get(Voucher, voucher_id)
    if voucher is None:
        abort(404)
    return voucher


def _voucher_page(
    voucher: Voucher, error: str | None = None, status: int = 200
) -> ResponseReturnValue:
    ids = [send.message_id for send in voucher.sends if send.message_id]
    rows = db.session.execute(select(Message.id, Message.status).where(Message.id.in_(ids)))
    statuses = {message_id: status for message_id, status in rows}
    show = (lambda number: number) if show_full_numbers() else mask_phone
    return render_template(
        "portal/admin/voucher.html",
        voucher=voucher,
        state=voucher.state_at(utcnow()),
        statuses=statuses,
        show_phone=show,
        error=error,
        phone=request.form.get("phone", "")[:64],
        describe_duration=describe_duration,
    ), status


@bp.get("/vouchers/<int:voucher_id>")
def voucher(voucher_id: int) -> ResponseReturnValue:
    """One voucher: its settings, devices, and where it was sent, with the send form."""
    return _voucher_page(_voucher(voucher_id))


@bp.post("/vouchers/<int:voucher_id>/send")
def voucher_send(voucher_id: int) -> ResponseReturnValue:
    voucher = _voucher(voucher_id)
    if voucher.state_at(utcnow()) in ("used", "expired"):
        return _voucher_page(voucher, "This voucher is used or expired: send another one.", 400)
    try:
        send = send_voucher(voucher, request.form.get("phone", ""), current_user.username)
    except SMSError as exc:
        db.session.rollback()
        return _voucher_page(voucher, str(exc), 400)
    flash(f"Voucher {voucher.code} queued to {mask_phone(send.phone)}.", "ok")
    return redirect(url_for(".voucher", voucher_id=voucher.id), 303)


def _batch_page(batch: str, errors: list[str], default_region: str) -> ResponseReturnValue:
    return render_template(
        "portal/admin/voucher_batch_send.html",
        batch=batch,
        errors=errors,
        numbers=request.form.get("numbers", ""),
        region=request.form.get("region", default_region),
    ), 400 if errors else 200


@bp.route("/vouchers/batch-send", methods=["GET", "POST"])
def vouchers_batch_send() -> ResponseReturnValue:
    """One unused voucher of a batch per pasted number."""
    batch = printable(request.values.get("batch", ""), 64)
    first = db.session.scalar(select(Voucher).where(Voucher.batch == batch).limit(1))
    if first is None:
        abort(404)
    default_region = first.locations[0].region if first.locations else ""
    if request.method == "GET":
        return _batch_page(batch, [], default_region)
    region = request.form.get("region", "").strip().upper()[:2] or None
    try:
        result = send_batch(batch, request.form.get("numbers", ""), current_user.username, region)
    except SMSError as exc:
        return _batch_page(batch, [str(exc)], default_region)
    if result.errors:
        return _batch_page(batch, result.errors, default_region)
    flash(f"Sent {len(result.sends)} vouchers of batch {batch!r}.", "ok")
    return redirect(url_for(".vouchers", batch=batch), 303)
