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
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from flask import Response, abort, current_app, render_template, request, stream_with_context
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE
from sqlalchemy import ColumnElement, Select, select
from sqlalchemy.orm import Session

from ..models import Gateway, Kind, Message, MessageAttempt, Status, utcnow
from ..phone import PhoneNumberError, normalize_phone
from ..state import get_state
from . import NAV, bp

PAGE_SIZE = 50
EXPORT_BATCH = 1000
MASK = "•••"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""Cell openings a spreadsheet may run as a formula (OWASP's CSV-injection list)."""

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
)

_PHONE_SEPARATORS = re.compile(r"[\s().\-/]")
_PHONE_DIGITS = re.compile(r"\+?\d+")


@dataclass(frozen=True)
class LogFilter:
    """The filters of the logs table, already validated."""

    status: str | None = None
    kind: str | None = None
    date_from: date | None = None
    date_to: date | None = None
    phone: str | None = None
    """E.164 prefix (``+2783``) or a whole number."""
    location: str | None = None
    gateway: int | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        where: list[ColumnElement[bool]] = []
        if self.status:
            where.append(Message.status == self.status)
        if self.kind:
            where.append(Message.kind == self.kind)
        if self.date_from:
            where.append(Message.created_at >= datetime.combine(self.date_from, time()))
        if self.date_to:
            end = datetime.combine(self.date_to + timedelta(days=1), time())
            where.append(Message.created_at < end)
        if self.phone:
            # A range the (to, created_at) index serves; LIKE alone would not use it on SQLite.
            where.append(Message.to >= self.phone)
            upper = _prefix_upper_bound(self.phone)
            if upper:
                where.append(Message.to < upper)
            where.append(Message.to.startswith(self.phone, autoescape=True))
        if self.location:
            where.append(Message.location == self.location)
        if self.gateway is not None:
            where.append(Message.gateway_id == self.gateway)
        return where

    def query_args(self) -> dict[str, str]:
        """The filters as query parameters, for links that keep them."""
        names = {"date_from": "from", "date_to": "to"}
        return {
            names.get(key, key): str(value)
            for key, value in asdict(self).items()
            if value is not None and value != ""
        }


def _prefix_upper_bound(prefix: str) -> str | None:
    """The smallest string above every number starting with ``prefix`` (digits after ``+``)."""
    body = prefix.rstrip("9")
    if len(body) <= 1:  # "+" or "+999": nothing above within digits
        return None
    return body[:-1] + chr(ord(body[-1]) + 1)


def parse_filters(
    args: Mapping[str, str], gateways: Mapping[int, str]
) -> tuple[LogFilter, list[str]]:
    """Validate the query string; returns the filter and sentences for what was wrong."""
    errors: list[str] = []

    def choice(name: str, allowed: tuple[str, ...], label: str) -> str | None:
        value = args.get(name, "").strip()
        if value and value not in allowed:
            errors.append(f"{label} must be one of: {', '.join(allowed)}.")
            return None
        return value or None

    def day(name: str, label: str) -> date | None:
        value = args.get(name, "").strip()
        if not value:
            return None
        try:
            return date.fromisoformat(value)
        except ValueError:
            errors.append(f"{label} must be a date like 2026-01-31 (got {value[:20]!r}).")
            return None

    status = choice("status", Status.ALL, "Status")
    kind = choice("kind", Kind.ALL, "Type")
    date_from = day("from", "From date")
    date_to = day("to", "To date")
    if date_from and date_to and date_from > date_to:
        errors.append("From date must be on or before the To date.")
    phone = _phone_prefix(args.get("phone", ""), errors)
    location = args.get("location", "").strip() or None
    if location and len(location) > 80:
        errors.append("Location must be at most 80 characters.")
        location = None
    gateway: int | None = None
    raw_gateway = args.get("gateway", "").strip()
    if raw_gateway:
        if not raw_gateway.isdigit() or int(raw_gateway) not in gateways:
            errors.append("Gateway: choose one from the list.")
        else:
            gateway = int(raw_gateway)
    flt = LogFilter(status, kind, date_from, date_to, phone, location, gateway)
    return flt, errors


def _phone_prefix(raw: str, errors: list[str]) -> str | None:
    """``+27 83-12`` -> ``+278312``; a national number (``083...``) needs SMS_DEFAULT_REGION."""
    text = _PHONE_SEPARATORS.sub("", raw.strip())
    if not text:
        return None
    if text.startswith("00"):
        text = "+" + text[2:]
    if not _PHONE_DIGITS.fullmatch(text):
        errors.append("Phone must be digits, optionally starting with + (e.g. +2783).")
        return None
    if text.startswith("0"):
        region = get_state().settings.default_region
        try:
            if region is None:
                raise PhoneNumberError("no_region", "")
            return normalize_phone(text, default_region=region, allow_fixed_line=True)
        except PhoneNumberError:
            errors.append("Phone: type the number in international form, starting with +.")
            return None
    if not text.startswith("+"):
        text = "+" + text
    if len(text) > 16:
        errors.append("Phone must have at most 15 digits.")
        return None
    return text


def show_full_numbers() -> bool:
    return bool(current_app.config.get("SMS_ADMIN_FULL_NUMBERS", False))


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


def _rows_query(flt: LogFilter) -> Select[Any]:
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
    ).where(*flt.conditions())


def _cursor(name: str, errors: list[str]) -> int | None:
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    if not raw.isdigit():
        errors.append(f"'{name}' must be a message id.")
        return None
    return int(raw)


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
        statuses=Status.ALL,
        kinds=Kind.ALL,
        newer=newer,
        older=older,
        recipient=(lambda number: number) if full else mask_phone,
    ), (400 if errors else 200)


@bp.get("/logs/<int:message_id>")
def log_detail(message_id: int) -> str:
    """Everything about one message, every attempt included."""
    session = get_state().session
    message = session.get(Message, message_id)
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
        attempts=attempts,
        recipient=message.to if full else mask_phone(message.to),
    )


def _iso(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") + "Z" if value else ""


def neutralise(cell: object) -> str:
    """A cell a spreadsheet shows as text: formula openings get a leading apostrophe."""
    text = "" if cell is None else str(cell)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


@bp.get("/logs/export.csv")
def logs_export() -> Response:
    """The filtered rows as CSV, oldest first, streamed in id batches.

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
        Message.provider_message_id, Message.encoding, Message.attempts, Message.last_error
    )

    def generate() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        buffer.write("\ufeff")  # BOM: Excel then reads the file as UTF-8
        writer.writerow(EXPORT_COLUMNS)
        last = 0
        while True:
            batch = session.execute(
                stmt.where(Message.id > last).order_by(Message.id.asc()).limit(EXPORT_BATCH)
            ).all()
            for row in batch:
                writer.writerow(
                    [
                        row.id,
                        _iso(row.created_at),
                        _iso(row.sent_at),
                        row.status,
                        row.kind,
                        neutralise(recipient(row.to)),
                        neutralise(row.location),
                        neutralise(names.get(row.gateway_id, "")),
                        neutralise(row.provider_message_id),
                        row.encoding,
                        row.segments,
                        row.attempts,
                        neutralise(row.last_error),
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


NAV.append(("sms_admin.logs", "SMS logs"))
