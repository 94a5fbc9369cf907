"""Mass SMS campaigns: audience, preview, schedule, sending window, pause/resume/cancel, and
the opt-out list they never reach (see the README's "Campaigns").

The host describes its guests with an :class:`~.audience.AudienceSource`; ``sms.campaigns``
(:class:`~.api.Campaigns`) and ``sms.opt_outs`` (:class:`~.api.OptOuts`) are the API.
"""

from __future__ import annotations

from .api import (
    Campaigns,
    CampaignSpec,
    ImportResult,
    OptOutPage,
    OptOuts,
    Preview,
    Progress,
    SampleText,
)
from .audience import AudienceLocation, AudienceQuery, AudienceSource, Recipient

__all__ = [
    "AudienceLocation",
    "AudienceQuery",
    "AudienceSource",
    "CampaignSpec",
    "Campaigns",
    "ImportResult",
    "OptOutPage",
    "OptOuts",
    "Preview",
    "Progress",
    "Recipient",
    "SampleText",
]
