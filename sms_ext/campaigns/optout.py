"""The opt-out list: numbers that campaigns never reach.

Only campaigns consult it: a guest who opted out of promotions still gets the code that puts
them online, the voucher they asked for and a message an admin writes to them personally. An
entry records where it came from (an admin, the guest on the splash page, a STOP reply through
a gateway, a CSV import), so the list can be audited and a START reply undoes only a STOP.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from enum import StrEnum
from typing import IO

from sqlalchemy import ARRAY, String, any_, bindparam, delete, func, or_, select
from sqlalchemy.orm import Session

from ..errors import PhoneNumberError
from ..models import OptOut, utcnow
from ..text.phone import normalize_phone

MAX_NOTE = 200


class Source(StrEnum):
    """Where an opt-out came from."""

    ADMIN = "admin"
    GUEST = "guest"
    STOP = "stop"
    IMPORT = "import"


STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT"})
"""Replies that opt a number out (the carriers' standard keywords, which Twilio honours too)."""
START_WORDS = frozenset({"START", "UNSTOP"})
"""Replies that undo an opt-out made by a STOP reply (not one an admin or the guest made)."""


def keyword(text: str) -> str:
    """The keyword of an inbound reply: its first word, upper-cased, punctuation dropped."""
    words = text.strip().split(maxsplit=1)
    return "".join(ch for ch in words[0] if ch.isalnum()).upper() if words else ""


def contains(session: Session, phone: str) -> bool:
    """Whether ``phone`` (E.164) is on the opt-out list."""
    return session.get(OptOut, phone) is not None


def add(
    session: Session,
    phone: str,
    source: Source | str,
    *,
    note: str = "",
    gateway_id: int | None = None,
) -> bool:
    """Put ``phone`` (E.164) on the list in the caller's transaction; ``False`` when it was
    already there (the first entry and its source are kept)."""
    if contains(session, phone):
        return False
    session.add(
        OptOut(
            phone=phone,
            source=Source(source),
            note=note[:MAX_NOTE],
            gateway_id=gateway_id,
            created_at=utcnow(),
        )
    )
    return True


def remove(session: Session, phone: str, *, only_source: Source | str | None = None) -> bool:
    """Take ``phone`` off the list (with ``only_source``, only an entry of that source);
    ``True`` when an entry was removed."""
    statement = delete(OptOut).where(OptOut.phone == phone)
    if only_source is not None:
        statement = statement.where(OptOut.source == Source(only_source))
    return bool(session.execute(statement).rowcount)  # type: ignore[attr-defined]


def opted_out_among(session: Session, phones: list[str]) -> set[str]:
    """Which of ``phones`` are on the list: one query for a chunk of a campaign's audience.

    PostgreSQL gets the chunk as one array (``= ANY(:phones)``): an ``IN`` of 2,000
    placeholders costs the driver more to build than the database to answer.
    """
    if not phones:
        return set()
    if session.get_bind().dialect.name == "postgresql":
        condition = OptOut.phone == any_(bindparam("phones", phones, type_=ARRAY(String)))
    else:
        condition = OptOut.phone.in_(phones)
    return set(session.scalars(select(OptOut.phone).where(condition)))


def handle_reply(session: Session, phone: str, text: str, *, gateway_id: int | None) -> str | None:
    """Act on an inbound SMS: STOP words opt the sender out, START words undo a STOP.

    Returns what was done (``"opted_out"``, ``"opted_in"``) or None for any other text.
    """
    word = keyword(text)
    if word in STOP_WORDS:
        add(session, phone, Source.STOP, note=f"Replied {word}", gateway_id=gateway_id)
        return "opted_out"
    if word in START_WORDS and remove(session, phone, only_source=Source.STOP):
        return "opted_in"
    return None


MAX_IMPORT_LINES = 200_000
"""Longest CSV import accepted, in lines."""
IMPORT_CHUNK = 1000


@dataclass(frozen=True)
class ImportResult:
    """What a CSV import did: numbers added, numbers already listed (or repeated in the file),
    and the lines refused as ``(line number, problem)``."""

    added: int
    already: int
    invalid: list[tuple[int, str]]


def _phone_column(header: list[str]) -> int | None:
    """The column of a header row (the one named ``phone``, else the first when it holds a
    word without digits, like ``number``); None when the row is data."""
    names = [cell.strip().lower() for cell in header]
    if "phone" in names:
        return names.index("phone")
    first = names[0] if names else ""
    is_word = any(ch.isalpha() for ch in first) and not any(ch.isdigit() for ch in first)
    return 0 if is_word else None


def import_csv(
    session: Session,
    stream: IO[str],
    *,
    default_region: str | None,
    source: Source | str = Source.IMPORT,
) -> ImportResult:
    """Add every number of a CSV file (its ``phone`` column, else its first) in the caller's
    transaction: a chunk of numbers costs one query and one insert."""
    reader = csv.reader(stream)
    added = already = 0
    invalid: list[tuple[int, str]] = []
    column = 0
    pending: dict[str, int] = {}

    def flush() -> None:
        nonlocal added, already
        listed = opted_out_among(session, list(pending))
        fresh = [phone for phone in pending if phone not in listed]
        now = utcnow()
        session.add_all(
            OptOut(phone=phone, source=Source(source), note="", created_at=now) for phone in fresh
        )
        session.flush()
        added += len(fresh)
        already += len(listed)
        pending.clear()

    try:
        for row in reader:
            line = reader.line_num
            if line > MAX_IMPORT_LINES:
                invalid.append((line, f"Only the first {MAX_IMPORT_LINES:,} lines are read."))
                break
            if line == 1:
                header = _phone_column(row)
                if header is not None:
                    column = header
                    continue
            cell = row[column].strip() if len(row) > column else ""
            if not cell:
                if any(c.strip() for c in row):
                    invalid.append((line, "No phone number in this line."))
                continue
            try:
                phone = normalize_phone(cell, default_region=default_region, allow_fixed_line=True)
            except PhoneNumberError as exc:
                invalid.append((line, f"{cell[:40]}: {exc}"))
                continue
            if phone in pending:
                already += 1
                continue
            pending[phone] = line
            if len(pending) >= IMPORT_CHUNK:
                flush()
    except (csv.Error, UnicodeDecodeError) as exc:
        invalid.append((reader.line_num, f"The file cannot be read as CSV text: {exc}."))
    if pending:
        flush()
    return ImportResult(added, already, invalid)


@dataclass(frozen=True)
class OptOutPage:
    """One page of the list, newest first."""

    items: list[OptOut]
    total: int
    page: int
    pages: int


def page(session: Session, *, search: str = "", page: int = 1, per_page: int = 50) -> OptOutPage:
    """Entries whose number contains the digits of ``search`` (or whose source or note
    contains it), newest first."""
    query = select(OptOut)
    text = search.strip()[:64]
    if text:
        digits = "".join(ch for ch in text if ch.isdigit())
        like = f"%{text}%"
        clauses = [OptOut.source == text.lower(), OptOut.note.ilike(like)]
        if digits:
            clauses.append(OptOut.phone.like(f"%{digits}%"))
        query = query.where(or_(*clauses))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    per_page = max(1, min(per_page, 500))
    pages = max(1, -(-total // per_page))
    page = max(1, min(page, pages))
    items = list(
        session.scalars(
            query.order_by(OptOut.created_at.desc(), OptOut.phone)
            .limit(per_page)
            .offset((page - 1) * per_page)
        )
    )
    return OptOutPage(items, total, page, pages)
