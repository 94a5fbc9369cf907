"""Writing a campaign's ``held`` outbox rows: a chunk of recipients per statement, each phone
at most once per campaign.

Both databases insert with ``ON CONFLICT (campaign_id, "to") DO NOTHING RETURNING segments``,
so a repeated expansion inserts nothing twice and the caller counts only what went in. On
PostgreSQL the chunk travels as one array per varying column (``INSERT ... SELECT FROM
unnest(...)``): a multi-row ``VALUES`` of 2,000 rows has 30,000 placeholders, which the driver
spends longer parsing than the database spends inserting.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ARRAY, Integer, String, Text, bindparam, func, literal, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ..errors import TemplateError
from ..messages import outbox
from ..models import MESSAGES, Campaign, Status, utcnow
from ..state import SMSState
from .audience import Recipient
from .spec import KIND_OF
from .texts import Texts

VARYING = {
    "to": String,
    "body": Text,
    "encoding": String,
    "segments": Integer,
    "location": String,
    "customer_ref": String,
}
"""Columns that differ per recipient; the others are the same for the whole campaign."""
CONFLICT = ["campaign_id", "to"]


class RowMaker:
    """The varying part of each held row, and the part the campaign's rows share."""

    def __init__(self, state: SMSState, campaign: Campaign, texts: Texts) -> None:
        self.texts = texts
        now = utcnow()
        self.common: dict[str, Any] = {
            "kind": str(KIND_OF[campaign.purpose]),
            "status": str(Status.HELD),
            "sent_by": campaign.created_by,
            "campaign_id": campaign.id,
            "created_at": now,
            "next_attempt_at": now,
            "expires_at": outbox.expiry(state, None),  # set again when released
            "attempts": 0,
            "only_gateway": False,
        }

    def make(self, phone: str, person: Recipient) -> dict[str, Any] | None:
        """The row for ``person``; None when their text is empty or cannot be rendered."""
        try:
            text = self.texts.render(phone, person)
        except TemplateError:
            return None
        if not text:
            return None
        info = self.texts.measure(text)
        return {
            "to": phone,
            "body": text,
            "encoding": info.encoding,
            "segments": info.segments,
            "location": str(person.location)[: outbox.MAX_LOCATION] if person.location else None,
            "customer_ref": str(person.customer)[: outbox.MAX_CUSTOMER]
            if person.customer
            else None,
        }


def insert(session: Session, common: dict[str, Any], rows: list[dict[str, Any]]) -> list[int]:
    """Insert ``rows`` (with ``common``) unless their phone has a row in the campaign already;
    returns the parts of each row actually inserted."""
    if not rows:
        return []
    if session.get_bind().dialect.name == "postgresql":
        return list(session.scalars(_unnest(common), {n: [r[n] for r in rows] for n in VARYING}))
    statement = (
        sqlite.insert(MESSAGES)
        .on_conflict_do_nothing(index_elements=CONFLICT)
        .returning(MESSAGES.c.segments)
    )
    return list(session.scalars(statement, [{**common, **row} for row in rows]))


def _unnest(common: dict[str, Any]) -> Any:
    arrays = (
        func.unnest(*(bindparam(name, type_=ARRAY(kind)) for name, kind in VARYING.items()))
        .table_valued(*VARYING)
        .render_derived()
    )
    constants = [
        literal(value, MESSAGES.c[name].type).label(name) for name, value in common.items()
    ]
    chosen = select(*constants, *(arrays.c[name] for name in VARYING))
    return (
        postgresql.insert(MESSAGES)
        .from_select([*common, *VARYING], chosen)
        .on_conflict_do_nothing(index_elements=CONFLICT)
        .returning(MESSAGES.c.segments)
    )
