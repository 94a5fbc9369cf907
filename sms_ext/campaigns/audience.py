"""Who a campaign can reach: the host describes its guests, the extension decides who gets one.

The extension has no guest table of its own (the host owns its customers), so a host that wants
campaigns to target its guests registers an :class:`AudienceSource` with
``sms.campaign_audience(source)``. The source only *describes* people (phone, consent, when
last seen); every rule — opt-outs, marketing consent, valid mobile numbers, regions, one
message per phone — is applied by the extension, so a host cannot forget one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class AudienceLocation:
    """A location campaigns can target: its key (as in ``sms.send(location=...)``), the name
    admins see, the IANA timezone a schedule and sending window are read in, and the region
    (ISO code) its guests' and admins' numbers without a ``+`` are read in."""

    key: str
    name: str
    timezone: str = "UTC"
    region: str | None = None


@dataclass(frozen=True)
class Recipient:
    """One person the host knows, as the campaign sees them."""

    phone: str
    """As stored by the host; the extension normalizes it (and excludes it when invalid)."""
    name: str = ""
    language: str | None = None
    """Language tag of their templates (``es``); None: the campaign's default (English)."""
    location: str | None = None
    """Location key they were last seen at: their message's location and gateway choice."""
    marketing_consent: bool = False
    """Whether they agreed to marketing messages: a marketing campaign reaches only these."""
    opted_out: bool = False
    """The host's own record of an opt-out (besides the extension's opt-out list)."""
    customer: str | None = None
    """The host's reference (``guest:42``), stored on the message as ``customer_ref``."""


@dataclass(frozen=True)
class AudienceQuery:
    """What a campaign asks the host for. Empty ``locations`` means every location."""

    locations: tuple[str, ...] = ()
    seen_since: datetime | None = None
    """Only people seen at or after this time (naive UTC); None: whenever."""
    phones: tuple[str, ...] | None = None
    """Only these E.164 numbers (a pasted list, to learn their consent and names); None: all."""


class AudienceSource(Protocol):
    """What a host registers with ``sms.campaign_audience``."""

    def locations(self) -> Sequence[AudienceLocation]:
        """Every location an admin may target, in display order."""
        ...

    def recipients(self, query: AudienceQuery) -> Iterable[Recipient]:
        """The people matching ``query``, streamed (a campaign may reach 100,000: yield them
        from a server-side cursor, do not build a list). Order does not matter; the same
        phone may appear twice (the extension keeps one)."""
        ...
