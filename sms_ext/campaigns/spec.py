"""What an admin asks a campaign to be (:class:`CampaignSpec`), checked, and stored on its row.

The spec is the one shape the API, the admin form and the CLI share; :func:`checked` refuses
what cannot run with a sentence the form shows next to it, so a campaign that was saved can
always be expanded and sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.orm import Session

from ..checks import text_problem
from ..errors import CampaignError, TemplateError
from ..models import Campaign, Kind, MessageTemplate
from ..text import templates
from .audience import AudienceLocation

MARKETING = "marketing"
NOTICE = "notice"
PURPOSES = (MARKETING, NOTICE)
KIND_OF = {MARKETING: Kind.CAMPAIGN, NOTICE: Kind.NOTICE}
"""The message (and template) kind of each purpose."""

MAX_NAME = 120
MAX_PHONES = 100_000
"""Longest pasted list: past it, register an audience source."""
MAX_REGIONS = 50
MAX_LOCATIONS = 1000
MAX_SEEN_DAYS = 3650
DAY_MINUTES = 24 * 60


@dataclass(frozen=True)
class CampaignSpec:
    """A campaign as the admin describes it (see the README's "Campaigns")."""

    name: str
    purpose: str
    """``marketing`` (only guests with marketing consent) or ``notice`` (every guest)."""
    body: str = ""
    """Sandboxed template text, used when ``template_id`` is None."""
    template_id: int | None = None
    """A stored template of kind ``campaign`` (marketing) or ``notice``; each recipient gets
    the template of that name in their language when there is one, else this one."""
    locations: tuple[str, ...] = ()
    """Location keys; empty = every location."""
    seen_within_days: int | None = None
    regions: tuple[str, ...] = ()
    """ISO regions allowed (``GB``, ``ES``); empty = any."""
    phones: tuple[str, ...] = ()
    """A pasted list, as typed; non-empty = these numbers instead of locations and "seen"."""
    timezone: str | None = None
    """IANA zone of ``start_at`` and ``window``; None = the first selected location's, else
    UTC."""
    start_at: datetime | None = None
    """Naive = local time in ``timezone``; aware = as is; None = a draft."""
    window: tuple[int, int] | None = None
    """Sending window in minutes after local midnight ``(start, end)``; ``end < start`` spans
    midnight."""


def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; raises :class:`CampaignError` for an unknown one."""
    try:
        if name and "\x00" not in name and len(name) <= 64:
            return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        pass
    raise CampaignError(f"'{name}' is not a known timezone; use one like Europe/London.")


def resolve_timezone(spec: CampaignSpec, locations: list[AudienceLocation]) -> str:
    """The spec's zone, else its first location's (or every location's first), else UTC."""
    if spec.timezone:
        return spec.timezone
    by_key = {location.key: location for location in locations}
    keys = list(spec.locations) or list(by_key)
    first = by_key.get(keys[0]) if keys and not spec.phones else None
    return first.timezone if first is not None else "UTC"


def resolve_region(
    spec: CampaignSpec, locations: Sequence[AudienceLocation], default: str | None
) -> str | None:
    """The region a campaign reads numbers without ``+`` in (pasted lists, the test number,
    national numbers a host stores): the one region its locations (all the host's when none is
    selected) share, else ``default`` (``SMS_DEFAULT_REGION``). Locations of several regions,
    or one without a region, leave it to ``default``: a guess would text the wrong country."""
    by_key = {location.key: location for location in locations}
    chosen = [by_key[key] for key in spec.locations if key in by_key] or list(locations)
    return shared_region(chosen, default)


def shared_region(locations: Sequence[AudienceLocation], default: str | None) -> str | None:
    """The one region ``locations`` share; ``default`` when they have several, or one has
    none, or there are none."""
    regions = {(location.region or "").upper() for location in locations}
    if len(regions) == 1 and "" not in regions:
        return regions.pop()
    return default


def to_utc(moment: datetime, timezone: str) -> datetime:
    """``moment`` as naive UTC; a naive one is wall-clock time in ``timezone``."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone(timezone))
    return moment.astimezone(UTC).replace(tzinfo=None)


def template_of(session: Session, spec: CampaignSpec) -> MessageTemplate | None:
    """The stored template of the spec; raises when it is missing or of the wrong kind."""
    if spec.template_id is None:
        return None
    template = session.get(MessageTemplate, spec.template_id)
    kind = KIND_OF.get(spec.purpose)
    if template is None:
        raise CampaignError("The chosen template no longer exists.")
    if template.kind != kind:
        raise CampaignError(f"A {spec.purpose} campaign needs a {kind} template.")
    return template


def checked(session: Session, spec: CampaignSpec, locations: list[AudienceLocation]) -> str:
    """Refuse a spec that cannot run (the first problem, as a sentence); returns its zone."""
    name = spec.name.strip() if isinstance(spec.name, str) else spec.name
    if not name:
        raise CampaignError("The campaign needs a name.")
    problem = text_problem(name, "The name", MAX_NAME)
    if problem:
        raise CampaignError(problem)
    if spec.purpose not in PURPOSES:
        raise CampaignError("The kind must be marketing or notice.")
    template = template_of(session, spec)
    if template is None:
        if not isinstance(spec.body, str) or not spec.body.strip():
            raise CampaignError("Write the message or choose a template.")
        problem = text_problem(spec.body, "The message", templates.MAX_SOURCE, multiline=True)
        if problem:
            raise CampaignError(problem)
        try:
            templates.check(spec.body, KIND_OF[spec.purpose])
        except TemplateError as exc:
            raise CampaignError(str(exc)) from None
    _check_audience(spec, locations)
    timezone = resolve_timezone(spec, locations)
    zone(timezone)
    if spec.window is not None:
        _check_window(spec.window)
    if spec.start_at is not None and not isinstance(spec.start_at, datetime):
        raise CampaignError("The start must be a date and time.")
    return timezone


def _check_audience(spec: CampaignSpec, locations: list[AudienceLocation]) -> None:
    if len(spec.phones) > MAX_PHONES:
        raise CampaignError(f"Paste at most {MAX_PHONES:,} numbers.")
    for raw in spec.phones:
        problem = text_problem(raw, "A pasted number", 64)
        if problem:
            raise CampaignError(problem)
    if len(spec.regions) > MAX_REGIONS or any(
        not isinstance(r, str) or len(r) != 2 or not r.isalpha() or not r.isascii()
        for r in spec.regions
    ):
        raise CampaignError("Regions are two-letter codes such as GB or ES.")
    if spec.seen_within_days is not None and (
        isinstance(spec.seen_within_days, bool)
        or not isinstance(spec.seen_within_days, int)
        or not 1 <= spec.seen_within_days <= MAX_SEEN_DAYS
    ):
        raise CampaignError(f"'Seen within' must be between 1 and {MAX_SEEN_DAYS} days.")
    if spec.phones:
        return
    if len(spec.locations) > MAX_LOCATIONS:
        raise CampaignError("Too many locations.")
    known = {location.key for location in locations}
    unknown = [key for key in spec.locations if key not in known]
    if unknown:
        raise CampaignError(f"Unknown location '{str(unknown[0])[:80]}'.")
    if not known:
        raise CampaignError("There is no guest list to choose from: paste the numbers to send to.")


def _check_window(window: tuple[int, int]) -> None:
    try:
        start, end = window
    except (TypeError, ValueError):
        start = end = -1
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)) or not (
        0 <= start < DAY_MINUTES and 0 <= end <= DAY_MINUTES
    ):
        raise CampaignError(
            "The sending window must run between 00:00 and 24:00, e.g. 09:00-20:00."
        )
    if start == end % DAY_MINUTES:
        raise CampaignError("The sending window must not start and end at the same time.")


def store(campaign: Campaign, spec: CampaignSpec, timezone: str) -> None:
    """Write ``spec`` onto ``campaign`` (the row keeps the spec as the admin gave it)."""
    campaign.name = spec.name.strip()
    campaign.purpose = spec.purpose
    campaign.body = spec.body if spec.template_id is None else ""
    campaign.template_id = spec.template_id
    campaign.audience = {
        "locations": list(spec.locations),
        "seen_within_days": spec.seen_within_days,
        "regions": [r.upper() for r in spec.regions],
        "phones": list(spec.phones),
        "timezone": spec.timezone,
    }
    campaign.timezone = timezone
    campaign.window_start, campaign.window_end = spec.window or (None, None)
    campaign.scheduled_at = to_utc(spec.start_at, timezone) if spec.start_at is not None else None


def spec_of(campaign: Campaign) -> CampaignSpec:
    """The spec ``campaign`` was saved with (its start as an aware time in its zone)."""
    audience: dict[str, Any] = campaign.audience or {}
    start_at = None
    if campaign.scheduled_at is not None:
        start_at = campaign.scheduled_at.replace(tzinfo=UTC).astimezone(zone(campaign.timezone))
    window = None
    if campaign.window_start is not None and campaign.window_end is not None:
        window = (campaign.window_start, campaign.window_end)
    return CampaignSpec(
        name=campaign.name,
        purpose=campaign.purpose,
        body=campaign.body or "",
        template_id=campaign.template_id,
        locations=tuple(audience.get("locations") or ()),
        seen_within_days=audience.get("seen_within_days"),
        regions=tuple(audience.get("regions") or ()),
        phones=tuple(audience.get("phones") or ()),
        timezone=audience.get("timezone") or campaign.timezone,
        start_at=start_at,
        window=window,
    )
