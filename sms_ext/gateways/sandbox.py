"""The sandbox gateway: for demos and tests only, it sends nothing anywhere.

Every message "succeeds" at once without any network traffic; its text stays in the
``sms_message`` row, where a demo page (the portal's ``/demo/inbox``) can show it so the code
can be typed in. Never enable it next to real gateways in production: as the first enabled
gateway it would swallow every message, and guests would receive nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import Driver, OutgoingSMS, SendResult


class SandboxDriver(Driver):
    """Accepts every message and sends nothing (demo and testing only)."""

    kind = "sandbox"
    fields = ()

    @classmethod
    def validate(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """Nothing to configure."""
        return {}

    def preview(self, sms: OutgoingSMS) -> str:
        """No request to show: say where the message goes instead."""
        return "The sandbox sends no request: messages stay in the database."

    def send(self, sms: OutgoingSMS) -> SendResult:
        """Report success with a made-up provider id; no request leaves the process."""
        return SendResult(
            ok=True,
            provider_id=f"sandbox-{sms.reference}",
            request_summary=f"sandbox: not sent to {sms.to} (demo gateway, no network)",
        )
