"""The "Test this gateway" section of a gateway's page: the form, its error, the outcome.

A test send is tried once, through its own gateway only (see
:func:`sms_ext.messages.delivery.next_try`), so the section follows it to an end: it refreshes
while the message is queued or being sent, and stops once it is sent or failed, or when no
worker took it before it expired (then it says so instead of refreshing forever).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import request

from ..checks import parse_id
from ..models import Gateway, Kind, Message, Status, utcnow
from ..state import get_state
from ..text.phone import country_name

TEST_EXPIRES = timedelta(minutes=5)
"""A test send that no worker took within this time fails: sending it an hour later, when the
admin has gone, would only cost money."""
REFRESH_SECONDS = 2


@dataclass(frozen=True)
class GatewayTestPanel:
    """What the section shows: the number in the field, why it was refused, the message."""

    phone: str = ""
    error: str = ""
    message: Message | None = None

    @property
    def waiting(self) -> bool:
        """The message is not settled yet (queued, or a worker is sending it)."""
        return self.message is not None and self.message.status in (Status.QUEUED, Status.SENDING)

    @property
    def refresh(self) -> bool:
        """Whether the page reloads itself to follow the message: only while it can still end."""
        return self.waiting and self.message is not None and utcnow() < self.message.expires_at

    @property
    def stalled(self) -> bool:
        """Still queued past its expiry: no worker is taking messages."""
        return self.waiting and not self.refresh

    @property
    def retry_at(self) -> datetime | None:
        """When the one more try is due, while the message waits for it (a 429/503 asked)."""
        message = self.message
        if message is None or message.status != Status.QUEUED or not message.attempts:
            return None
        return message.next_attempt_at

    @property
    def region_hint(self) -> str:
        """How the field reads a number typed without ``+``."""
        region = get_state().settings.default_region
        if region is None:
            return "In international format, starting with + and the country code."
        return f"International (+…) or national format, read as in {country_name(region)}."


def panel_for(gateway: Gateway | None) -> GatewayTestPanel | None:
    """The section of ``gateway``'s page, following the test message named in ``?test=`` when
    it went through this gateway (its number stays in the field)."""
    if gateway is None:
        return None
    wanted = parse_id(request.args.get("test", ""))  # never a number the database refuses
    message = get_state().session.get(Message, wanted) if wanted is not None else None
    if message is None or message.gateway_id != gateway.id or message.kind != Kind.TEST:
        return GatewayTestPanel()
    return GatewayTestPanel(phone=message.to, message=message)
