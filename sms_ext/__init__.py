"""sms_ext: SMS OTP verification and SMS sending for captive-portal Flask apps.

The public API is what this module exports; the packages under it may change.
"""

from __future__ import annotations

from .campaigns import (
    AudienceLocation,
    AudienceQuery,
    AudienceSource,
    CampaignSpec,
    ImportResult,
    Preview,
    Progress,
    Recipient,
    SampleText,
)
from .errors import (
    CampaignError,
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
    Campaign,
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
    "AudienceLocation",
    "AudienceQuery",
    "AudienceSource",
    "Campaign",
    "CampaignError",
    "CampaignSpec",
    "ConfigError",
    "Gateway",
    "GatewayConfigError",
    "ImportResult",
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
    "Preview",
    "Progress",
    "Recipient",
    "SMSError",
    "SampleText",
    "Status",
    "TemplateError",
    "VaultError",
    "metadata",
]
