"""A test audience source (a small class over a list) and an app for campaign worker processes.

Worker processes must expand the same audience as the test that created the campaign, so the
audience is generated deterministically from its size: ``flask --app
"tests.campaign_app:create_app()" sms worker`` with ``CAMPAIGN_AUDIENCE=<n>`` serves
:func:`generated` ``(n)``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from flask import Flask

from sms_ext import SMS
from sms_ext.campaigns import AudienceLocation, AudienceQuery, Recipient
from sms_ext.models import utcnow
from tests.conftest import make_app

LOCATIONS = [
    AudienceLocation("harbour", "Harbour Café", "Europe/London"),
    AudienceLocation("plaza", "Plaza Mayor", "Europe/Madrid"),
]


@dataclass
class ListSource:
    """An :class:`~sms_ext.campaigns.AudienceSource` over a list (or a generator factory)."""

    people: Sequence[Recipient] | None = None
    seen: dict[str, datetime] = field(default_factory=dict)
    """Last seen per phone as given; absent = now."""
    places: list[AudienceLocation] = field(default_factory=lambda: list(LOCATIONS))
    size: int = 0
    """With no ``people``: :func:`generated` of this size, produced on demand."""
    queries: list[AudienceQuery] = field(default_factory=list)
    slow: float = 0.0
    """Seconds to wait every 1,000 recipients (a slow host database, for the fault tests)."""

    def locations(self) -> Sequence[AudienceLocation]:
        return self.places

    def _all(self) -> Iterable[Recipient]:
        return self.people if self.people is not None else generated(self.size)

    def recipients(self, query: AudienceQuery) -> Iterator[Recipient]:
        self.queries.append(query)
        wanted = set(query.phones) if query.phones is not None else None
        for count, person in enumerate(self._all(), 1):
            if self.slow and count % 1000 == 0:
                time.sleep(self.slow)
            if query.locations and person.location not in query.locations:
                continue
            if (
                query.seen_since is not None
                and self.seen.get(person.phone, utcnow()) < query.seen_since
            ):
                continue
            if wanted is not None and person.phone not in wanted:
                continue
            yield person


def phone_of(i: int) -> str:
    """A valid mobile number per index: UK +447400..., Spanish +34612... alternately."""
    if i % 2:
        return f"+346{12000000 + i // 2:08d}"
    return f"+4474{i // 2:08d}"


def generated(size: int) -> Iterator[Recipient]:
    """``size`` guests: every 10th has no marketing consent, every 25th opted out (host's
    flag), every 3rd speaks Spanish; half at each location."""
    for i in range(size):
        yield Recipient(
            phone=phone_of(i),
            name=f"Guest {i}",
            language="es" if i % 3 == 0 else None,
            location=LOCATIONS[i % 2].key,
            marketing_consent=i % 10 != 0,
            opted_out=i % 25 == 0,
            customer=f"guest:{i}",
        )


def expected(size: int, purpose: str) -> list[str]:
    """The phones of :func:`generated` a campaign of ``purpose`` reaches."""
    return [
        p.phone
        for p in generated(size)
        if not p.opted_out and (purpose == "notice" or p.marketing_consent)
    ]


def create_app() -> Flask:
    """The worker's app: the test database and Redis from ``FLASK_*`` variables, the
    generated audience of ``CAMPAIGN_AUDIENCE`` guests (``CAMPAIGN_SLOW`` seconds to produce
    each 1,000 of them)."""
    config = {
        key.removeprefix("FLASK_"): value
        for key, value in os.environ.items()
        if key.startswith("FLASK_SMS_")
    }
    for given in ("SMS_REDIS_URL", "SMS_RETRY_BASE_SECONDS"):  # make_app sets these
        config.pop(given, None)
    sms = SMS()
    size = int(os.environ.get("CAMPAIGN_AUDIENCE", "0"))
    sms.campaign_audience(ListSource(size=size, slow=float(os.environ.get("CAMPAIGN_SLOW", "0"))))
    return make_app(
        os.environ["FLASK_SQLALCHEMY_DATABASE_URI"],
        os.environ["FLASK_SMS_REDIS_URL"],
        sms=sms,
        **config,
    )
