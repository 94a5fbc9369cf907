"""Admin page for the opt-out list: search, add one, remove one, import and export CSV.

Numbers are masked like the SMS log unless ``SMS_ADMIN_FULL_NUMBERS``; with masked numbers a
search needs the whole number (matching fragments would let anyone read the hidden digits
back one search at a time), and a row can be removed only from such a search, so the page
never carries a number the admin did not type. Writes go through ``sms.opt_outs`` (the same
calls as the CLI), and every one is a POST with the form's CSRF token.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

from flask import Response, flash, redirect, render_template, request, stream_with_context, url_for
from flask.typing import ResponseReturnValue
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from sqlalchemy import func, select
from wtforms import HiddenField, StringField

from ..campaigns import OptOuts
from ..campaigns.api import host_region
from ..checks import text_problem
from ..errors import PhoneNumberError
from ..models import OptOut, utcnow
from ..state import get_state
from ..text.phone import normalize_phone
from . import bp
from .gateway_forms import check_csrf
from .logs import mask_phone, neutralise, recipient_cell, show_full_numbers

PAGE_SIZE = 50
MAX_PAGE = 10_000
MAX_QUERY = 40
MAX_NOTE = 200
MAX_IMPORT_BYTES = 1024 * 1024
"""Largest CSV accepted (about 50,000 numbers): bigger lists go through ``flask sms optout
import``, which streams the file."""
SOURCE_LABELS = {
    "admin": "Admin",
    "guest": "Guest page",
    "stop": "STOP reply",
    "import": "CSV import",
}


class AddForm(FlaskForm):
    phone = StringField("Phone number")
    note = StringField("Note (optional)")


class RemoveForm(FlaskForm):
    phone = HiddenField()


class ImportForm(FlaskForm):
    file = FileField("CSV file")


def _normalized(raw: str) -> str:
    """E.164 of a typed number; landlines too (a STOP may come from any number)."""
    return normalize_phone(raw, default_region=host_region(get_state()), allow_fixed_line=True)


def _search(raw: str, errors: list[str]) -> tuple[object | None, bool]:
    """The condition for the search box, and whether it names one whole number."""
    query = raw.strip()
    if not query:
        return None, False
    problem = text_problem(query, "The search", MAX_QUERY)
    if problem is not None:
        errors.append(problem)
        return None, False
    if show_full_numbers() and not query.startswith("+"):
        digits = "".join(ch for ch in query if ch.isdigit())
        if digits:
            return OptOut.phone.contains(digits, autoescape=True), False
    try:
        return OptOut.phone == _normalized(query), True
    except PhoneNumberError:
        errors.append(
            "Search with the whole number, starting with + and the country code"
            + (", or some of its digits." if show_full_numbers() else ": numbers are masked.")
        )
        return None, False


def _page_number(errors: list[str]) -> int:
    raw = request.args.get("page", "1").strip() or "1"
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        errors.append("That page link is out of date: start again from the first page.")
        return 1
    return int(raw)


def _listing(
    status: int = 200,
    *,
    add_form: AddForm | None = None,
    add_error: str = "",
    import_error: str = "",
    imported: object | None = None,
) -> ResponseReturnValue:
    session = get_state().session
    errors: list[str] = []
    condition, exact = _search(request.args.get("q", ""), errors)
    page = _page_number(errors)
    rows: list[OptOut] = []
    total = 0
    if not errors:
        stmt = select(OptOut)
        count = select(func.count()).select_from(OptOut)
        if condition is not None:
            stmt, count = stmt.where(condition), count.where(condition)  # type: ignore[arg-type]
        total = session.scalar(count) or 0
        rows = list(
            session.scalars(
                stmt.order_by(OptOut.created_at.desc(), OptOut.phone)
                .offset((page - 1) * PAGE_SIZE)
                .limit(PAGE_SIZE)
            )
        )
    full = show_full_numbers()
    return render_template(
        "sms/admin/opt_outs/list.html",
        rows=rows,
        total=total,
        page=page,
        more=page * PAGE_SIZE < total,
        errors=errors,
        q=request.args.get("q", ""),
        shown=(lambda number: number) if full else mask_phone,
        removable=full or exact,
        sources=SOURCE_LABELS,
        add_form=add_form or AddForm(formdata=None),
        add_error=add_error,
        import_form=ImportForm(formdata=None),
        import_error=import_error,
        imported=imported,
        max_import_kib=MAX_IMPORT_BYTES // 1024,
    ), (400 if errors else status)


@bp.get("/opt-outs/", endpoint="opt_outs")
def opt_outs_list() -> ResponseReturnValue:
    """The list, newest first, 50 a page; 400 with the reason for a bad search."""
    return _listing()


@bp.post("/opt-outs/add")
def opt_out_add() -> ResponseReturnValue:
    form = AddForm()
    check_csrf(form)
    note = (form.note.data or "").strip()
    problem = text_problem(note, "The note", MAX_NOTE) if note else None
    if problem is not None:
        return _listing(400, add_form=form, add_error=problem)
    try:
        phone = _normalized(form.phone.data or "")
    except PhoneNumberError as exc:
        return _listing(400, add_form=form, add_error=str(exc))
    shown = phone if show_full_numbers() else mask_phone(phone)
    if OptOuts().add(phone, source="admin", note=note):
        flash(f"{shown} is on the opt-out list: campaigns will not reach it.", "ok")
    else:
        flash(f"{shown} was already on the opt-out list.", "ok")
    return redirect(url_for(".opt_outs"), 303)


@bp.post("/opt-outs/remove")
def opt_out_remove() -> ResponseReturnValue:
    form = RemoveForm()
    check_csrf(form)
    try:
        phone = _normalized(form.phone.data or "")
    except PhoneNumberError as exc:
        flash(f"Nothing removed: {exc}", "error")
        return redirect(url_for(".opt_outs"), 303)
    shown = phone if show_full_numbers() else mask_phone(phone)
    if OptOuts().remove(phone):
        flash(f"{shown} is off the opt-out list: campaigns may reach it again.", "ok")
    else:
        flash(f"{shown} was not on the opt-out list.", "error")
    return redirect(url_for(".opt_outs"), 303)


@bp.post("/opt-outs/import")
def opt_out_import() -> ResponseReturnValue:
    """Add every number of an uploaded CSV; the page lists the lines it could not read."""
    form = ImportForm()
    check_csrf(form)
    upload = form.file.data
    if upload is None or not getattr(upload, "filename", ""):
        return _listing(400, import_error="Choose a CSV file to import.")
    data = upload.stream.read(MAX_IMPORT_BYTES + 1)
    if len(data) > MAX_IMPORT_BYTES:
        return _listing(
            400,
            import_error=f"The file is larger than {MAX_IMPORT_BYTES // 1024} KiB: split it, "
            "or use 'flask sms optout import'.",
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return _listing(400, import_error="The file is not UTF-8 text: save it as CSV (UTF-8).")
    result = OptOuts().import_csv(io.StringIO(text, newline=""), source="import")
    return _listing(imported=result)


@bp.get("/opt-outs/export.csv")
def opt_outs_export() -> Response:
    """The whole list as CSV; numbers follow the screen's rule (masked unless
    ``SMS_ADMIN_FULL_NUMBERS``), as the SMS log's export does."""
    session = get_state().session
    shown = (lambda number: number) if show_full_numbers() else mask_phone
    stmt = select(OptOut).order_by(OptOut.created_at.desc(), OptOut.phone)

    def generate() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        buffer.write("\ufeff")  # BOM: Excel then reads the file as UTF-8
        writer.writerow(["phone", "source", "note", "created_at"])
        for entry in session.scalars(stmt.execution_options(yield_per=1000)):
            writer.writerow(
                [
                    recipient_cell(shown(entry.phone)),
                    entry.source,
                    neutralise(entry.note),
                    entry.created_at.isoformat(timespec="seconds") + "Z",
                ]
            )
            if buffer.tell() > 64 * 1024:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()
        session.rollback()  # end the read transaction

    filename = f"sms-opt-outs-{utcnow().date().isoformat()}.csv"
    return Response(
        stream_with_context(generate()),
        mimetype="text/csv",
        headers={
            "Content-Disposition": f"attachment; filename={filename}",
            "Cache-Control": "no-store",
        },
    )
