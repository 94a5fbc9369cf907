"""The opt-out list: numbers that campaigns never reach.

Only campaigns consult it: a guest who opted out of promotions still gets the code that puts
them online, the voucher they asked for and a message an admin writes to them personally. An
entry records where it came from (an admin, the guest on the splash page, a STOP reply through
a gateway, a CSV import), so the list can be audited and a START reply undoes only a STOP.
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ..models import OptOut, utcnow

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
    """Which of ``phones`` are on the list: one query for a chunk of a campaign's audience."""
    if not phones:
        return set()
    return set(session.scalars(select(OptOut.phone).where(OptOut.phone.in_(phones))))


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
