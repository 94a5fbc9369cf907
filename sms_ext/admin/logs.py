"""SMS logs: the message table with filters, one page per message, and the CSV export.

Pages go by keyset (``?before=<id>`` / ``?after=<id>``, newest first), never ``OFFSET`` or a
``COUNT(*)`` of the table, so the 20,000th page costs what the first does. Every filter is a
plain predicate an index can serve (``created_at`` ranges, ``to`` prefix as a range, location and
gateway equality). The export walks the same filters in id batches, so a million rows stream out
without being held in memory.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from flask import Response, abort, render_template, request, stream_with_context
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from ..checks import parse_id
from ..models import Gateway, Kind, Message, MessageAttempt, Status, utcnow
from ..state import get_state
from . import bp
from .log_filter import LogFilter, parse_filters

PAGE_SIZE = 50
EXPORT_BATCH = 1000
MASK = "•••"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""Cell openings a spreadsheet may run as a formula (OWASP's CSV-injection list)."""

_PHONE_CELL = re.compile(rf"\+[0-9 {MASK[0]}]*")

KIND_LABELS = {
    Kind.OTP: "OTP",
    Kind.PERSONAL: "Personal",
    Kind.VOUCHER: "Voucher",
    Kind.CAMPAIGN: "Campaign",
    Kind.TEST: "Test",
    Kind.NOTICE: "Notice",
}
"""How pages name message types ("OTP", which capitalising the stored value would not give)."""

EXPORT_COLUMNS = (
    "message_id",
    "created_utc",
    "sent_utc",
    "status",
    "kind",
    "recipient",
    "location",
    "gateway",
    "provider_message_id",
    "encoding",
    "segments",
    "attempts",
    "last_error",
    "customer",
    "sent_by",
    "delivered_utc",
    "error_code",
)


def show_full_numbers() -> bool:
    """Whether admins see whole phone numbers (``SMS_ADMIN_FULL_NUMBERS``), on screen and in
    exports alike."""
    return get_state().settings.admin_full_numbers


def mask_phone(number: str) -> str:
    """``+27831234567`` -> ``+27 83 ••• 4567``: enough to tell numbers apart, not to dial."""
    digits = number.lstrip("+")
    if not digits.isdigit():
        return MASK
    country, national = "", digits
    for size in (1, 2, 3):  # country codes are prefix-free: the first match is the one
        if int(digits[:size]) in COUNTRY_CODE_TO_REGION_CODE:
            country, national = digits[:size], digits[size:]
            break
    if len(national) <= 6:
        return f"+{country} {MASK} {national[-2:]}"
    return f"+{country} {national[:2]} {MASK} {national[-4:]}"


def gateway_names(session: Session) -> dict[int, str]:
    return dict(session.execute(select(Gateway.id, Gateway.name).order_by(Gateway.name)).all())


def _rows_query(flt: LogFilter) -> Select[*tuple[Any, ...]]:
    return select(
        Message.id,
        Message.created_at,
        Message.sent_at,
        Message.to,
        Message.kind,
        Message.status,
        Message.segments,
        Message.location,
        Message.gateway_id,
        Message.delivered_at,
        Message.failed_at,
        Message.error_code,
    ).where(*flt.conditions())


def _cursor(name: str, errors: list[str]) -> int | None:
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    cursor = parse_id(raw)
    if cursor is None:
        errors.append(f"'{name}' must be a message id.")
    return cursor


@bp.get("/logs/")
def logs() -> tuple[str, int]:
    """The table, newest first, 50 rows a page."""
    session = get_state().session
    names = gateway_names(session)
    flt, errors = parse_filters(request.args, names)
    before, after = _cursor("before", errors), _cursor("after", errors)
    rows: list[Any] = []
    newer = older = False
    if not errors:
        stmt = _rows_query(flt)
        if after is not None:
            stmt = stmt.where(Message.id > after).order_by(Message.id.asc())
        else:
            if before is not None:
                stmt = stmt.where(Message.id < before)
            stmt = stmt.order_by(Message.id.desc())
        rows = list(session.execute(stmt.limit(PAGE_SIZE + 1)).all())
        more = len(rows) > PAGE_SIZE
        rows = rows[:PAGE_SIZE]
        if after is not None:
            rows.reverse()
            newer, older = more, True
        else:
            newer, older = before is not None, more
    full = show_full_numbers()
    return render_template(
        "sms/admin/logs/list.html",
        rows=rows,
        errors=errors,
        args=request.args,
        filter_args=flt.query_args(),
        gateways=names,
        statuses=tuple(Status),
        kinds=KIND_LABELS,
        newer=newer,
        older=older,
        recipient=(lambda number: number) if full else mask_phone,
    ), (400 if errors else 200)


@bp.get("/logs/<int:message_id>")
def log_detail(message_id: int) -> str:
    """Everything about one message, every attempt included."""
    session = get_state().session
    message = session.get(Message, message_id) if parse_id(message_id) else None
    if message is None:
        abort(404)
    attempts = session.scalars(
        select(MessageAttempt)
        .where(MessageAttempt.message_id == message_id)
        .order_by(MessageAttempt.id)
    ).all()
    full = show_full_numbers()
    return render_template(
        "sms/admin/logs/detail.html",
        message=message,
        kinds=KIND_LABELS,
        attempts=attempts,
        recipient=message.to if full else mask_phone(message.to),
    )


def _iso(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") + "Z" if value else ""


def neutralise(cell: object) -> str:
    """A cell a spreadsheet shows as text: formula openings get a leading apostrophe."""
    text = "" if cell is None else str(cell)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def recipient_cell(number: str) -> str:
    """A phone number (whole or masked) as it is: ``+``, digits, spaces and dots cannot make a
    formula, and an apostrophe before every number of the sheet would only be in the way.
    Anything else (a row written around :func:`~sms_ext.messages.outbox.compose`) is
    neutralised like any other cell."""
    return number if _PHONE_CELL.fullmatch(number) else neutralise(number)


@bp.get("/logs/export.csv")
def logs_export() -> Response:
    """The filtered rows as CSV, newest first like the table, streamed in id batches.

    The recipient follows the same rule as the table: full E.164 only when the admin may see
    full numbers. An export that unmasks what the screen masks would make the masking
    pointless; invoices reconcile on the provider message id, date, gateway and segments, and
    the masked number's last four digits still allow spot checks.
    """
    session = get_state().session
    names = gateway_names(session)
    flt, errors = parse_filters(request.args, names)
    if errors:
        return Response("\n".join(errors) + "\n", status=400, mimetype="text/plain")
    recipient = (lambda number: number) if show_full_numbers() else mask_phone
    stmt = _rows_query(flt).add_columns(
        Message.provider_message_id,
        Message.encoding,
        Message.attempts,
        Message.last_error,
        Message.customer_ref,
        Message.sent_by,
    )

    def generate() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        buffer.write("\ufeff")  # BOM: Excel then reads the file as UTF-8
        writer.writerow(EXPORT_COLUMNS)
        batches = stmt.order_by(Message.id.desc()).limit(EXPORT_BATCH)
        last: int | None = None
        while True:
            batch = session.execute(
                batches if last is None else batches.where(Message.id < last)
            ).all()
            for row in batch:
                writer.writerow(
                    [
                        row.id,
                        _iso(row.created_at),
                        _iso(row.sent_at),
                        row.status,
                        row.kind,
                        recipient_cell(recipient(row.to)),
                        neutralise(row.location),
                        neutralise(names.get(row.gateway_id, "")),
                        neutralise(row.provider_message_id),
                        row.encoding,
                        row.segments,
                        row.attempts,
                        neutralise(row.last_error),
                        neutralise(row.customer_ref),
                        neutralise(row.sent_by),
                        _iso(row.delivered_at),
                        neutralise(row.error_code),
                    ]
                )
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            if len(batch) < EXPORT_BATCH:
                break
            last = batch[-1].id
        session.rollback()  # end the read transaction the batches ran in

    filename = f"sms-log-{utcnow().date().isoformat()}.csv"
    return Response(
        stream_with_context(generate()),
        mimetype="text/csv",
        headers={
            "Content-Disposition": f"attachment; filename={filename}",
            "Cache-Control": "no-store",
        },
    )
