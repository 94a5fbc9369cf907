"""The preview of a campaign before it runs: who it reaches, what they read, what it costs.

It walks the same selection and rendering as the run (:mod:`.selection`, :mod:`.texts`) and
writes nothing, so its counts are the ones the run will reach if the audience does not change
meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from ..errors import CampaignError, TemplateError
from ..models import Gateway, utcnow
from ..state import SMSState
from . import window
from .audience import AudienceLocation
from .selection import REASONS, Sorter, audience
from .spec import CampaignSpec, checked, resolve_region, to_utc
from .texts import ENCODING_NAMES, Texts


@dataclass(frozen=True)
class SampleText:
    """What one recipient would read."""

    phone: str
    """Masked as the SMS log masks numbers."""
    text: str
    encoding: str
    """``GSM-7`` or ``UCS-2``."""
    parts: int


@dataclass(frozen=True)
class Preview:
    """A campaign's reach and cost, as it would run now."""

    recipients: int
    """Messages that would be sent, after exclusions."""
    excluded: dict[str, int]
    """Left out, by reason: every key of :data:`~.selection.REASONS` (0 allowed), and
    ``unrenderable`` only when a recipient's text cannot be rendered."""
    samples: list[SampleText]
    parts_min: int
    parts_max: int
    total_parts: int
    """SMS parts of every message (the cost driver). Exact up to :data:`EXACT_LIMIT`
    recipients (every one checked and rendered); past it, the first :data:`EXACT_LIMIT` are,
    the rest only counted, and recipients, exclusions and parts are scaled up from the first
    (``exact`` is then False): checking a number costs about 0.1 ms, and a preview must stay
    instant on a form."""
    estimated_cost: Decimal | None
    """The primary enabled gateway's price per part times ``total_parts``; None without one."""
    currency: str | None
    timezone: str
    utc_offset: str
    """``+01:00``: the offset of ``timezone`` at the start (or now)."""
    problems: list[str]
    """Why the campaign cannot run as it is (the form shows them); empty when it can."""
    exact: bool = True
    """False when the counts are scaled up from the first :data:`EXACT_LIMIT` recipients."""


EXACT_LIMIT = 20_000
"""Recipients a preview checks one by one; a larger audience is estimated from them."""


def build(
    state: SMSState, spec: CampaignSpec, locations: list[AudienceLocation], samples: int
) -> Preview:
    """The preview of ``spec``; a spec that cannot run gives a preview with its problem."""
    from ..admin.logs import mask_phone  # here: the admin package imports this one

    session = state.session
    try:
        timezone = checked(session, spec, locations)
        start = to_utc(spec.start_at, timezone) if spec.start_at is not None else utcnow()
    except CampaignError as exc:
        return _refused(str(exc))
    texts = Texts.of(state, spec, locations)
    region = resolve_region(spec, locations, state.settings.default_region)
    sorter = Sorter(session, spec, region)
    shown: list[SampleText] = []
    problems: list[str] = []
    count = total = 0
    low = high = 0
    unrenderable = checked_count = rest = 0
    for chunk in audience(spec, state.registrations.audience, region):
        if checked_count >= EXACT_LIMIT:
            rest += len(chunk)
            continue
        checked_count += len(chunk)
        for phone, person in sorter.sort(chunk):
            try:
                text = texts.render(phone, person)
            except TemplateError as exc:
                unrenderable += 1
                if str(exc) not in problems:
                    problems.append(str(exc))
                continue
            if not text:
                unrenderable += 1
                continue
            info = texts.measure(text)
            count += 1
            total += info.segments
            low = info.segments if count == 1 else min(low, info.segments)
            high = max(high, info.segments)
            if len(shown) < samples:
                shown.append(_sample(mask_phone(phone), text, texts))
    session.rollback()  # end the read transaction the selection opened
    if not shown and samples > 0:
        try:
            shown.append(_sample("", texts.sample(), texts))
        except TemplateError as exc:
            problems.append(str(exc))
    excluded = dict(sorter.excluded)
    if unrenderable:
        excluded["unrenderable"] = unrenderable
        problems.append(
            f"{unrenderable} recipient(s) get no message: the text is empty or too long for them."
        )
    if count == 0:
        problems.append("Nobody would receive this campaign.")
    if rest:  # estimated: the checked share scaled up to the whole audience
        scale = (checked_count + rest) / checked_count
        count, total = round(count * scale), round(total * scale)
        excluded = {reason: round(n * scale) for reason, n in excluded.items()}
    cost, currency = _cost(state, total)
    return Preview(
        recipients=count,
        excluded=excluded,
        samples=shown,
        parts_min=low,
        parts_max=high,
        total_parts=total,
        estimated_cost=cost,
        currency=currency,
        timezone=timezone,
        utc_offset=window.utc_offset(timezone, start),
        problems=problems,
        exact=not rest,
    )


def _sample(phone: str, text: str, texts: Texts) -> SampleText:
    info = texts.measure(text)
    return SampleText(phone, text, ENCODING_NAMES[info.encoding], info.segments)


def _refused(problem: str) -> Preview:
    return Preview(
        recipients=0,
        excluded=dict.fromkeys(REASONS, 0),
        samples=[],
        parts_min=0,
        parts_max=0,
        total_parts=0,
        estimated_cost=None,
        currency=None,
        timezone="UTC",
        utc_offset="+00:00",
        problems=[problem],
    )


def _cost(state: SMSState, parts: int) -> tuple[Decimal | None, str | None]:
    gateway = state.session.scalar(Gateway.in_order().where(Gateway.enabled.is_(True)).limit(1))
    if gateway is None or gateway.price_per_part is None:
        return None, gateway.currency if gateway is not None else None
    return gateway.price_per_part * parts, gateway.currency
