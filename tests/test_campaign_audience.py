"""The portal's campaign audience over its guests, on every database: filters in SQL, the
latest matching session names the location and language, a pasted list is looked up."""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import Flask

from portal.campaign_audience import PHONES_PER_QUERY, PortalAudience
from portal.extensions import db
from portal.models import Guest, GuestSession, Location
from sms_ext.campaigns.audience import AudienceLocation, AudienceQuery, Recipient

NOW = datetime(2026, 12, 1, 12, 0)


def seed(app: Flask) -> dict[str, int]:
    """Two venues; Ann seen at both (harbour last), Ben at the airport long ago, Cy never
    logged in, Di opted out."""
    with app.app_context():
        harbour = Location(
            slug="harbour",
            name="Harbour Café",
            region="GB",
            language="en",
            timezone="Europe/London",
        )
        airport = Location(
            slug="airport",
            name="Airport Lounge",
            region="ES",
            language="es",
            timezone="Europe/Madrid",
        )
        db.session.add_all([harbour, airport])
        guests = {
            "ann": Guest(phone="+447700900001", name="Ann", marketing_consent=True, last_seen=NOW),
            "ben": Guest(phone="+34600000002", name=None, last_seen=NOW - timedelta(days=40)),
            "cy": Guest(phone="+447700900003", name="Cy", last_seen=NOW),
            "di": Guest(phone="+447700900004", name="Di", opted_out_at=NOW, last_seen=NOW),
        }
        db.session.add_all(guests.values())
        db.session.flush()
        for guest, location, when in (
            ("ann", airport, NOW - timedelta(days=3)),
            ("ann", harbour, NOW - timedelta(days=1)),
            ("ben", airport, NOW - timedelta(days=40)),
            ("di", harbour, NOW - timedelta(days=2)),
        ):
            db.session.add(
                GuestSession(
                    guest=guests[guest],
                    location_id=location.id,
                    phone=guests[guest].phone,
                    started_at=when,
                )
            )
        db.session.commit()
        return {name: guest.id for name, guest in guests.items()}


def found(app: Flask, **query: object) -> dict[str, Recipient]:
    with app.app_context():
        source = PortalAudience(db)
        return {r.phone: r for r in source.recipients(AudienceQuery(**query))}  # type: ignore[arg-type]


def test_locations_by_name_with_their_timezone_and_region(portal_app: Flask) -> None:
    seed(portal_app)
    with portal_app.app_context():
        assert PortalAudience(db).locations() == [
            AudienceLocation("airport", "Airport Lounge", "Europe/Madrid", "ES"),
            AudienceLocation("harbour", "Harbour Café", "Europe/London", "GB"),
        ]


def test_everyone_with_consent_opt_out_and_last_location(portal_app: Flask) -> None:
    ids = seed(portal_app)
    everyone = found(portal_app)
    assert everyone == {
        "+447700900001": Recipient(
            "+447700900001", "Ann", "en", "harbour", True, False, f"guest:{ids['ann']}"
        ),
        "+34600000002": Recipient(
            "+34600000002", "", "es", "airport", False, False, f"guest:{ids['ben']}"
        ),
        "+447700900003": Recipient(
            "+447700900003", "Cy", None, None, False, False, f"guest:{ids['cy']}"
        ),
        "+447700900004": Recipient(
            "+447700900004", "Di", "en", "harbour", False, True, f"guest:{ids['di']}"
        ),
    }


def test_locations_and_last_seen_filter_in_sql(portal_app: Flask) -> None:
    seed(portal_app)
    airport = found(portal_app, locations=("airport",))
    assert set(airport) == {"+447700900001", "+34600000002"}
    # Ann's latest session among the selected ones is at the airport: its location, its language.
    assert (airport["+447700900001"].location, airport["+447700900001"].language) == (
        "airport",
        "es",
    )
    recent = found(portal_app, seen_since=NOW - timedelta(days=7))
    assert set(recent) == {"+447700900001", "+447700900004"}
    assert set(found(portal_app, locations=("airport",), seen_since=NOW - timedelta(days=7))) == {
        "+447700900001"
    }
    assert found(portal_app, locations=("nowhere",)) == {}


def test_a_pasted_list_is_looked_up_in_slices(portal_app: Flask) -> None:
    seed(portal_app)
    unknown = [f"+4477009{n:05d}" for n in range(100, 100 + PHONES_PER_QUERY + 5)]
    asked = (
        *unknown[:PHONES_PER_QUERY],
        "+447700900003",
        *unknown[PHONES_PER_QUERY:],
        "+34600000002",
        "+34600000002",
    )
    assert set(found(portal_app, phones=asked)) == {"+447700900003", "+34600000002"}
    assert found(portal_app, phones=()) == {}


def test_streams_many_guests(portal_app: Flask) -> None:
    with portal_app.app_context():
        db.session.execute(
            Guest.__table__.insert(),
            [
                {
                    "phone": f"+4477{n:08d}",
                    "first_seen": NOW,
                    "last_seen": NOW,
                    "marketing_consent": n % 2 == 0,
                }
                for n in range(2500)
            ],
        )
        db.session.commit()
        stream = PortalAudience(db).recipients(AudienceQuery())
        first = next(iter(stream))
        # A commit on the session between rows (as the expansion does per chunk) does not
        # break the stream: it reads on its own connection.
        db.session.commit()
        rest = list(stream)
    assert len(rest) + 1 == 2500 and isinstance(first, Recipient)
    assert sum(r.marketing_consent for r in [first, *rest]) == 1250
