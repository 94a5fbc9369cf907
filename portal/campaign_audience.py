"""The portal's guests as a campaign audience (``sms.campaign_audience`` in ``create_app``).

The extension applies every rule (opt-outs, consent, valid mobiles, regions, one message per
phone); this module only describes guests: their number, name, consent, whether the portal
recorded an opt-out, and where they were last seen, which becomes their message's location
(its gateways, its name in ``{{ location }}``) and their language (the location's).

"Where last seen" is the location of the guest's latest login among the sessions the query
selects: a campaign for the harbour venue greets a guest seen there yesterday and at the
airport today as a harbour guest, through the harbour's gateway.

Rows are streamed from their own connection: a campaign's expansion commits after each chunk
it inserts, and a commit on the session would close a PostgreSQL server-side cursor under the
loop that reads it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import Select, select
from sqlalchemy.engine import Row

from sms_ext.campaigns.audience import AudienceLocation, AudienceQuery, Recipient

from .models import Guest, GuestSession, Location

STREAM_ROWS = 1000
"""Rows fetched per round trip from the server-side cursor."""
PHONES_PER_QUERY = 500
"""A pasted list is looked up this many numbers at a time (SQLite's bound-parameter cap)."""


class PortalAudience:
    """The portal's :class:`~sms_ext.campaigns.audience.AudienceSource`."""

    def __init__(self, db: SQLAlchemy) -> None:
        self._db = db

    def locations(self) -> Sequence[AudienceLocation]:
        """Every venue by name: its slug is the location key the gateways are tied to."""
        rows = self._db.session.execute(
            select(Location.slug, Location.name, Location.timezone, Location.region).order_by(
                Location.name, Location.id
            )
        )
        return [
            AudienceLocation(row.slug, row.name, row.timezone or "UTC", row.region) for row in rows
        ]

    def recipients(self, query: AudienceQuery) -> Iterator[Recipient]:
        """Guests matching ``query``, streamed; a pasted list is looked up in slices."""
        if query.phones is None:
            yield from self._stream(self._statement(query))
            return
        phones = list(dict.fromkeys(query.phones))
        for start in range(0, len(phones), PHONES_PER_QUERY):
            chunk = phones[start : start + PHONES_PER_QUERY]
            yield from self._stream(self._statement(query).where(Guest.phone.in_(chunk)))

    def _statement(self, query: AudienceQuery) -> Select[*tuple[Any, ...]]:
        """Guests with the location and language of their latest selected session.

        With locations or a last-seen limit, a guest needs a session that matches them; with
        neither, every guest counts (their latest session, if any, names the location).
        """
        latest = select(GuestSession.id).where(GuestSession.guest_id == Guest.id)
        if query.locations:
            latest = latest.join(Location, Location.id == GuestSession.location_id).where(
                Location.slug.in_(query.locations)
            )
        if query.seen_since is not None:
            latest = latest.where(GuestSession.started_at >= query.seen_since)
        latest_id = (
            latest.order_by(GuestSession.started_at.desc(), GuestSession.id.desc())
            .limit(1)
            .correlate(Guest)
            .scalar_subquery()
        )
        filtered = bool(query.locations) or query.seen_since is not None
        statement = select(
            Guest.id,
            Guest.phone,
            Guest.name,
            Guest.marketing_consent,
            Guest.opted_out_at,
            Location.slug,
            Location.language,
        ).select_from(Guest)
        if filtered:
            statement = statement.join(GuestSession, GuestSession.id == latest_id)
        else:
            statement = statement.outerjoin(GuestSession, GuestSession.id == latest_id)
        return statement.outerjoin(Location, Location.id == GuestSession.location_id)

    def _stream(self, statement: Select[*tuple[Any, ...]]) -> Iterator[Recipient]:
        with self._db.engine.connect() as connection:
            result = connection.execution_options(yield_per=STREAM_ROWS).execute(statement)
            for row in result:
                yield _recipient(row)


def _recipient(row: Row[*tuple[Any, ...]]) -> Recipient:
    return Recipient(
        phone=row.phone,
        name=row.name or "",
        language=row.language,
        location=row.slug,
        marketing_consent=bool(row.marketing_consent),
        opted_out=row.opted_out_at is not None,
        customer=f"guest:{row.id}",  # as guest_sms.customer_ref: the profile finds it
    )
