"""sms_ext: SMS OTP verification and SMS sending for captive-portal Flask apps.

The public API is what this module exports; the packages under it may change.
"""

from __future__ import annotations

from .errors import (
    ConfigError,
    GatewayConfigError,
    LuaScriptError,
    MessageError,
    OtpRateLimited,
    OtpUnavailable,
    PhoneNumberError,
    SMSError,
    TemplateError,
    VaultError,
)
from .extension import SMS
from .models import (
    Gateway,
    Kind,
    Message,
    MessageAttempt,
    MessageTemplate,
    OtpChallenge,
    Status,
    metadata,
)

__all__ = [
    "SMS",
    "ConfigError",
    "Gateway",
    "GatewayConfigError",
    "Kind",
    "LuaScriptError",
    "Message",
    "MessageAttempt",
    "MessageError",
    "MessageTemplate",
    "OtpChallenge",
    "OtpRateLimited",
    "OtpUnavailable",
    "PhoneNumberError",
    "SMSError",
    "Status",
    "TemplateError",
    "VaultError",
    "metadata",
]
