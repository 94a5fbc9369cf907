"""Twilio Programmable Messaging: one form-encoded request per message.

Twilio authenticates with an API key (``SK...`` and its secret, recommended) or with the
account's Auth Token, but the URL always names the ``AC...`` account; that is why the admin form
keeps Account SID, API key and API secret apart.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from ..errors import GatewayConfigError
from . import fields
from .base import Driver, OutgoingSMS, PreparedCall, SendResult
from .http import Exchange
from .provider import failure_text, lookup, perform, read_balance, succeeded

DEFAULT_BASE_URL = "https://api.twilio.com"
API_VERSION = "2010-04-01"
THROTTLED = "20429"
"""Twilio's "too many requests" code: worth retrying even if the HTTP status were not 429."""

ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")
API_KEY_SID = re.compile(r"SK[0-9a-fA-F]{32}")
MESSAGING_SERVICE_SID = re.compile(r"MG[0-9a-fA-F]{32}")
MESSAGE_SID = re.compile(r"(SM|MM)[0-9a-fA-F]{32}")
E164 = re.compile(r"\+[1-9][0-9]{1,14}")
ALPHANUMERIC_SENDER = re.compile(r"(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}")
NUMBER_PUNCTUATION = str.maketrans("", "", " -().")
"""What people type inside phone numbers and Twilio does not accept."""

JSON_ANSWER = {"Accept": "application/json"}


def _sid(
    config: Mapping[str, Any],
    name: str,
    pattern: re.Pattern[str],
    label: str,
    errors: dict[str, str],
    *,
    required: bool,
) -> str:
    value = fields.required(config, name, label, errors) if required else fields.text(config, name)
    if value and not pattern.fullmatch(value):
        errors[name] = (
            f"{label} must start with {pattern.pattern[:2]} followed by 32 hexadecimal characters."
        )
    return value


def _sender(config: Mapping[str, Any], errors: dict[str, str]) -> str:
    """An E.164 number, an alphanumeric sender ID or a Messaging Service SID.

    The message names the form the admin evidently meant, so a typo in a number is not answered
    with a lecture about sender IDs.
    """
    value = fields.required(config, "from_number", "Sender", errors)
    if not value:
        return value
    if value.startswith("+"):
        value = value.translate(NUMBER_PUNCTUATION)
        if not E164.fullmatch(value):
            errors["from_number"] = (
                "Sender number must be in E.164 form: + then the country code and number, "
                "at most 15 digits (e.g. +14155550100)."
            )
    elif value.startswith("MG") and len(value) > 11:
        if not MESSAGING_SERVICE_SID.fullmatch(value):
            errors["from_number"] = (
                "Messaging Service SID must start with MG followed by 32 hexadecimal characters."
            )
    elif not ALPHANUMERIC_SENDER.fullmatch(value):
        errors["from_number"] = (
            "Sender must be an E.164 number (+14155550100), an alphanumeric sender ID of 1 to 11 "
            "letters, digits or spaces with at least one letter, or a Messaging Service SID "
            "(MG followed by 32 hexadecimal characters)."
        )
    return value


def _status_callback(config: Mapping[str, Any], errors: dict[str, str]) -> str:
    """Checked as a URL but kept as typed: Twilio signs callbacks over the exact URL."""
    value = fields.text(config, "status_callback")
    if value:
        fields.http_url(value, "status_callback", "Status callback URL", errors)
    return value


class TwilioDriver(Driver):
    """Sends through ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``."""

    kind = "twilio"
    fields = (
        "account_sid",
        "api_key",
        "api_secret",
        "from_number",
        "base_url",
        "timeout",
        "status_callback",
        "auth_token",
    )
    secret_fields = ("api_secret", "auth_token")

    @classmethod
    def destination(cls, config: Mapping[str, Any]) -> tuple[str, ...]:
        return (fields.destination_url(config, "base_url", DEFAULT_BASE_URL),)

    @classmethod
    def validate(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        errors: dict[str, str] = {}
        base_url = fields.text(config, "base_url") or DEFAULT_BASE_URL
        normalised = {
            "account_sid": _sid(
                config, "account_sid", ACCOUNT_SID, "Account SID", errors, required=True
            ),
            "api_key": _sid(config, "api_key", API_KEY_SID, "API key SID", errors, required=False),
            "api_secret": fields.required(config, "api_secret", "API secret", errors),
            "from_number": _sender(config, errors),
            "base_url": fields.http_url(base_url, "base_url", "Base URL", errors),
            "timeout": fields.timeout(config, errors),
            "status_callback": _status_callback(config, errors),
        }
        if auth_token := fields.text(config, "auth_token"):
            # Only Twilio's webhook signatures use it: with an API key, api_secret is not it.
            normalised["auth_token"] = auth_token
        if errors:
            raise GatewayConfigError(errors)
        return normalised

    def prepare(self, sms: OutgoingSMS) -> PreparedCall:
        """The request that sends ``sms``; separate so the admin can preview it masked."""
        form = {"To": sms.to, "Body": sms.body}
        sender = self.config["from_number"]
        if MESSAGING_SERVICE_SID.fullmatch(sender):
            form["MessagingServiceSid"] = sender
        else:
            form["From"] = sender
        # An explicit URL wins; else our own receipt webhook, when SMS_PUBLIC_URL says where.
        callback = self.config.get("status_callback") or self.config.get("receipt_url")
        if callback:
            form["StatusCallback"] = callback
        return PreparedCall(
            method="POST",
            url=self._account_url("Messages.json"),
            headers={**JSON_ANSWER, "Content-Type": "application/x-www-form-urlencoded"},
            body=urlencode(form).encode("utf-8"),
            auth=self._credentials(),
        )

    def send(self, sms: OutgoingSMS) -> SendResult:
        ex = perform(self, self.prepare(sms))
        if not succeeded(ex):
            throttled = str(lookup(ex.json(), "code")) == THROTTLED
            return ex.result(
                False,
                error=self._describe(ex),
                retryable=ex.transient or throttled,
                secrets=self.secrets,
            )
        sid = lookup(ex.json(), "sid")
        if isinstance(sid, str) and MESSAGE_SID.fullmatch(sid):
            return ex.result(True, provider_id=sid, secrets=self.secrets)
        # The message may or may not exist: only trying again can tell, so it is retryable.
        return ex.result(
            False,
            error=f"unexpected answer from Twilio (HTTP {ex.status}): no message SID in it",
            retryable=True,
            secrets=self.secrets,
        )

    def check_balance(self) -> Decimal | None:
        """The account balance (in the account's currency); see :attr:`last_error` on ``None``."""
        call = PreparedCall(
            method="GET",
            url=self._account_url("Balance.json"),
            headers=dict(JSON_ANSWER),
            auth=self._credentials(),
        )
        amount, self.last_error = read_balance(perform(self, call), self._describe, self.secrets)
        return amount

    def _account_url(self, resource: str) -> str:
        base = self.config.get("base_url") or DEFAULT_BASE_URL
        return f"{base}/{API_VERSION}/Accounts/{self.config['account_sid']}/{resource}"

    def _credentials(self) -> tuple[str, str]:
        """API key and its secret, or the Account SID and its Auth Token when no key is set."""
        user = self.config.get("api_key") or self.config["account_sid"]
        return (user, self.config["api_secret"])

    @staticmethod
    def _describe(ex: Exchange) -> str:
        payload = ex.json()
        return failure_text("Twilio", ex, lookup(payload, "code"), lookup(payload, "message"))
