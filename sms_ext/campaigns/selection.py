"""Who of an audience gets a campaign's message, and why the others do not.

The host's source only describes people; every rule is applied here, chunk by chunk so
100,000 recipients never sit in memory at once. Each person left out is counted once, for the
first reason in :data:`REASONS` that applies: a fixed precedence, so a preview and the run
count alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import timedelta
from itertools import islice

from sqlalchemy.orm import Session

from ..errors import PhoneNumberError
from ..models import utcnow
from ..text.phone import normalize_phone
from . import optout
from .audience import AudienceQuery, AudienceSource, Recipient
from .spec import MARKETING, CampaignSpec

REASONS = ("invalid", "not_mobile", "outside_regions", "duplicate", "opted_out", "no_consent")
"""Why a recipient is left out, in order of precedence."""
CHUNK = 2000
"""Recipients read, checked and (in a run) inserted together: one opt-out query each."""


def chunked(items: Iterable[Recipient], size: int = CHUNK) -> Iterator[list[Recipient]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def audience(
    spec: CampaignSpec, source: AudienceSource | None, default_region: str | None
) -> Iterator[list[Recipient]]:
    """The spec's audience in chunks: the pasted list (people the source knows get their
    name, language and consent; unknown numbers have no consent), else the source's guests."""
    if spec.phones:
        for start in range(0, len(spec.phones), CHUNK):
            yield _pasted(spec.phones[start : start + CHUNK], source, default_region)
        return
    if source is None:
        return
    since = None
    if spec.seen_within_days is not None:
        since = utcnow() - timedelta(days=spec.seen_within_days)
    yield from chunked(source.recipients(AudienceQuery(locations=spec.locations, seen_since=since)))


def _e164(raw: str, default_region: str | None) -> str | None:
    try:
        return normalize_phone(raw, default_region=default_region)
    except PhoneNumberError:
        return None


def _pasted(
    raws: tuple[str, ...], source: AudienceSource | None, default_region: str | None
) -> list[Recipient]:
    numbers = {raw: _e164(raw, default_region) for raw in raws}
    known: dict[str, Recipient] = {}
    valid = tuple(sorted({n for n in numbers.values() if n is not None}))
    if source is not None and valid:
        for person in source.recipients(AudienceQuery(phones=valid)):
            phone = _e164(person.phone, default_region)
            if phone is not None:
                known.setdefault(phone, person)
    people = []
    for raw in raws:  # repeats included: they are counted as duplicates
        phone = numbers[raw]
        found = known.get(phone) if phone else None
        people.append(Recipient(phone=raw) if found is None else found)
    return people


class Sorter:
    """Splits chunks of recipients into those to text and counted exclusions.

    Keeps the phones seen so far (as integers: about 50 bytes each, the one memory that grows
    with the audience) to count duplicates across chunks.
    """

    def __init__(self, session: Session, spec: CampaignSpec, default_region: str | None) -> None:
        self.session = session
        self.marketing = spec.purpose == MARKETING
        self.regions = frozenset(r.upper() for r in spec.regions)
        self.default_region = default_region
        self.excluded = dict.fromkeys(REASONS, 0)
        self._seen: set[int] = set()

    def sort(self, chunk: list[Recipient]) -> list[tuple[str, Recipient]]:
        """The ``(e164, recipient)`` pairs of ``chunk`` to text; the rest are counted."""
        passed: list[tuple[str, Recipient]] = []
        for person in chunk:
            reason, phone = self._number(person.phone)
            if reason is None:
                key = int(phone)
                if key in self._seen:
                    reason = "duplicate"
                else:
                    self._seen.add(key)
                    passed.append((phone, person))
                    continue
            self.excluded[reason] += 1
        out = optout.opted_out_among(self.session, [phone for phone, _ in passed])
        kept = []
        for phone, person in passed:
            if phone in out or person.opted_out:
                self.excluded["opted_out"] += 1
            elif self.marketing and not person.marketing_consent:
                self.excluded["no_consent"] += 1
            else:
                kept.append((phone, person))
        return kept

    def _number(self, raw: object) -> tuple[str | None, str]:
        """``(reason, e164)``: the first of invalid, not_mobile, outside_regions, or none."""
        if not isinstance(raw, str):
            return "invalid", ""
        try:
            phone = normalize_phone(raw, default_region=self.default_region)
        except PhoneNumberError as exc:
            return ("not_mobile" if exc.code == "not_mobile" else "invalid"), ""
        if self.regions:
            try:  # the number is known now: this second look costs a dictionary lookup
                normalize_phone(phone, allowed_regions=self.regions)
            except PhoneNumberError:
                return "outside_regions", phone
        return None, phone
