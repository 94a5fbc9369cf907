"""Guest verification on splash pages: codes (:mod:`.codes`), the splash-page step that
``sms.protect`` adds (:mod:`.flow`) and the rate limits in Redis (:mod:`.limits`)."""

from __future__ import annotations

from ..errors import OtpRateLimited, OtpUnavailable
from .flow import Protection

__all__ = ["OtpRateLimited", "OtpUnavailable", "Protection"]
