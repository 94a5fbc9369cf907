"""sms_ext: SMS OTP verification and SMS sending for captive-portal Flask apps."""

from __future__ import annotations

from .config import ConfigError
from .extension import SMS
from .gateways import GatewayConfigError
from .models import Gateway, Kind, Message, MessageAttempt, OtpChallenge, Status, metadata
from .otp import OtpRateLimited, OtpUnavailable
from .phone import PhoneNumberError

__all__ = [
    "SMS",
    "ConfigError",
    "Gateway",
    "GatewayConfigError",
    "Kind",
    "Message",
    "MessageAttempt",
    "OtpChallenge",
    "OtpRateLimited",
    "OtpUnavailable",
    "PhoneNumberError",
    "Status",
    "metadata",
]
