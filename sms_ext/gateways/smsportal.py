"""SMSPortal REST API: a bearer token from ``/Authentication``, then bulk sends of up to 100.

Tokens live for a day, and fetching one costs a round trip, so they are cached per process and
shared by every driver instance (a worker builds a fresh driver for each batch). A cached token
that SMSPortal refuses is dropped and replaced once; a fresh token that is refused is not
retried, so bad credentials can never loop.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import time
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import requests

from ..errors import GatewayConfigError
from . import fields
from .base import Driver, OutgoingSMS, PreparedCall, SendResult
from .http import Exchange
from .provider import failure_text, lookup, perform, read_balance, succeeded

DEFAULT_BASE_URL = "https://rest.smsportal.com/v1"
TOKEN_SAFETY_SECONDS = 300.0
"""Stop using a token this long before SMSPortal says it expires (clock skew, slow sends)."""
UNKNOWN_LIFETIME_MINUTES = 10.0
"""Trust a token this long when the answer does not say: a 401 re-authenticates anyway."""

JSON_ANSWER = {"Accept": "application/json"}
DESTINATION_KEYS = ("destination", "originalAddress", "msisdn", "address", "number")
FAULT_MESSAGE_KEYS = ("errorMessage", "message", "error", "reason", "status")


@dataclasses.dataclass(frozen=True)
class _Token:
    value: str
    expires_at: float
    """``time.monotonic()`` deadline, immune to wall-clock changes."""


class _TokenCache:
    """Bearer tokens by (base URL, client id, secret hash), shared by the process's threads.

    The secret is part of the key (hashed, so the cache holds no secret) so that a rotated
    secret never reuses a token obtained with the old one.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[tuple[str, str, str], _Token] = {}

    def get(self, key: tuple[str, str, str]) -> str | None:
        with self._lock:
            token = self._tokens.get(key)
            if token is None:
                return None
            if token.expires_at <= time.monotonic():
                del self._tokens[key]
                return None
            return token.value

    def put(self, key: tuple[str, str, str], value: str, minutes: object) -> None:
        lifetime = _minutes(minutes) * 60
        margin = min(TOKEN_SAFETY_SECONDS, lifetime / 2)
        with self._lock:
            self._tokens[key] = _Token(value, time.monotonic() + lifetime - margin)

    def discard(self, key: tuple[str, str, str], value: str) -> None:
        """Drop ``value`` unless another thread has already replaced it with a newer token."""
        with self._lock:
            token = self._tokens.get(key)
            if token is not None and token.value == value:
                del self._tokens[key]


def _minutes(raw: object) -> float:
    if isinstance(raw, int | float | str) and not isinstance(raw, bool):
        try:
            minutes = float(raw)
        except ValueError:
            return UNKNOWN_LIFETIME_MINUTES
        if minutes > 0:
            return minutes
    return UNKNOWN_LIFETIME_MINUTES


_tokens = _TokenCache()


class _AuthenticationFailed(Exception):
    """No token could be had; carries the result every message of the request gets instead."""

    def __init__(self, result: SendResult) -> None:
        super().__init__(result.error)
        self.result = result


def _digits(number: object) -> str:
    return "".join(ch for ch in str(number) if ch.isdigit())


def _faults(payload: object) -> dict[str, str]:
    """Destination digits -> SMSPortal's reason, from ``errorReport.faults`` of a send answer."""
    faults = lookup(lookup(payload, "errorReport"), "faults")
    refused: dict[str, str] = {}
    for fault in faults if isinstance(faults, list) else []:
        destination = _digits(lookup(fault, *DESTINATION_KEYS) or "")
        if destination:
            reason = lookup(fault, *FAULT_MESSAGE_KEYS)
            refused[destination] = str(reason) if reason else "refused by SMSPortal"
    return refused


class SMSPortalDriver(Driver):
    """Sends through ``POST {base}/BulkMessages``, up to :attr:`max_batch` messages a request."""

    kind = "smsportal"
    fields = ("client_id", "api_secret", "base_url", "timeout")
    secret_fields = ("api_secret",)
    max_batch = 100

    def __init__(self, config: Mapping[str, Any], session: requests.Session) -> None:
        super().__init__(config, session)
        self._token: str | None = None

    @classmethod
    def destination(cls, config: Mapping[str, Any]) -> tuple[str, ...]:
        return (fields.destination_url(config, "base_url", DEFAULT_BASE_URL),)

    @classmethod
    def validate(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        errors: dict[str, str] = {}
        base_url = fields.text(config, "base_url") or DEFAULT_BASE_URL
        normalised = {
            "client_id": fields.required(config, "client_id", "Client ID", errors),
            "api_secret": fields.required(config, "api_secret", "API secret", errors),
            "base_url": fields.http_url(base_url, "base_url", "Base URL", errors),
            "timeout": fields.timeout(config, errors),
        }
        if errors:
            raise GatewayConfigError(errors)
        return normalised

    @property
    def secrets(self) -> list[str]:
        """The API secret and the bearer token in use: either lets anyone send on the account."""
        return [*super().secrets, *([self._token] if self._token else [])]

    def prepare(self, sms: OutgoingSMS) -> PreparedCall:
        """The request for ``sms`` alone, as the preview shows it: the bearer token is only
        fetched at send time."""
        call = self.prepare_bulk([sms])
        call.headers["Authorization"] = "Bearer <token from GET /Authentication>"
        return call

    def prepare_bulk(self, batch: Sequence[OutgoingSMS]) -> PreparedCall:
        """The bulk request for ``batch``, before the bearer token is added at send time."""
        # customerId: a bulk send shares one eventId, so receipts find a message by its own id.
        messages = [
            {"content": sms.body, "destination": sms.phone_digits, "customerId": sms.reference}
            for sms in batch
        ]
        document = {"sendOptions": {"testMode": False}, "messages": messages}
        return PreparedCall(
            method="POST",
            url=f"{self._base_url}/BulkMessages",
            headers={**JSON_ANSWER, "Content-Type": "application/json"},
            body=json.dumps(document, ensure_ascii=False).encode("utf-8"),
        )

    def send(self, sms: OutgoingSMS) -> SendResult:
        return self.send_many([sms])[0]

    def send_many(self, batch: Sequence[OutgoingSMS]) -> list[SendResult]:
        """One result per message, in order; larger batches go out in requests of 100."""
        results: list[SendResult] = []
        for start in range(0, len(batch), self.max_batch):
            results.extend(self._send_chunk(batch[start : start + self.max_batch]))
        return results

    def check_balance(self) -> Decimal | None:
        """The credit balance; see :attr:`last_error` on ``None``."""
        call = PreparedCall(
            method="GET", url=f"{self._base_url}/Balance", headers=dict(JSON_ANSWER)
        )
        try:
            ex = self._with_token(call)
        except _AuthenticationFailed as failure:
            self.last_error = failure.result.error
            return None
        amount, self.last_error = read_balance(ex, self._describe, self.secrets)
        return amount

    def _send_chunk(self, chunk: Sequence[OutgoingSMS]) -> list[SendResult]:
        try:
            ex = self._with_token(self.prepare_bulk(chunk))
        except _AuthenticationFailed as failure:
            return [dataclasses.replace(failure.result) for _ in chunk]
        if not succeeded(ex):
            error = self._describe(ex)
            return [ex.result(False, error=error, secrets=self.secrets) for _ in chunk]
        payload = ex.json()
        event_id = lookup(payload, "eventId")
        refused = _faults(payload)
        return [self._message_result(ex, sms, event_id, refused) for sms in chunk]

    def _message_result(
        self, ex: Exchange, sms: OutgoingSMS, event_id: object, refused: Mapping[str, str]
    ) -> SendResult:
        reason = refused.get(_digits(sms.to))
        if reason is not None:
            error = f"SMSPortal fault: {reason}"
            return ex.result(False, error=error, retryable=False, secrets=self.secrets)
        if event_id in (None, "") or isinstance(event_id, bool):
            # Accepted or not, only trying again can tell: retryable.
            return ex.result(
                False,
                error=f"unexpected answer from SMSPortal (HTTP {ex.status}): no eventId in it",
                retryable=True,
                secrets=self.secrets,
            )
        return ex.result(True, provider_id=str(event_id), secrets=self.secrets)

    def _with_token(self, call: PreparedCall) -> Exchange:
        """Perform ``call`` with a bearer token, replacing a refused cached token once."""
        cached = _tokens.get(self._cache_key)
        self._token = cached or self._authenticate()
        ex = perform(self, self._bearer(call))
        if ex.status == 401 and cached:
            _tokens.discard(self._cache_key, cached)
            self._token = self._authenticate()
            ex = perform(self, self._bearer(call))
        return ex

    def _authenticate(self) -> str:
        call = PreparedCall(
            method="GET",
            url=f"{self._base_url}/Authentication",
            headers=dict(JSON_ANSWER),
            auth=(self.config["client_id"], self.config["api_secret"]),
        )
        ex = perform(self, call)
        payload = ex.json()
        token = lookup(payload, "token")
        if succeeded(ex) and isinstance(token, str) and token:
            _tokens.put(self._cache_key, token, lookup(payload, "expiresInMinutes"))
            return token
        if succeeded(ex):
            reason, retryable = f"no token in the answer (HTTP {ex.status})", True
        else:
            reason, retryable = self._describe(ex), ex.transient
        raise _AuthenticationFailed(
            ex.result(
                False,
                error=f"SMSPortal authentication failed: {reason}",
                retryable=retryable,
                secrets=self.secrets,
            )
        )

    def _bearer(self, call: PreparedCall) -> PreparedCall:
        headers = {**call.headers, "Authorization": f"Bearer {self._token}"}
        return dataclasses.replace(call, headers=headers)

    @property
    def _base_url(self) -> str:
        return str(self.config.get("base_url") or DEFAULT_BASE_URL)

    @property
    def _cache_key(self) -> tuple[str, str, str]:
        secret_hash = hashlib.sha256(str(self.config["api_secret"]).encode("utf-8")).hexdigest()
        return (self._base_url, str(self.config["client_id"]), secret_hash)

    @staticmethod
    def _describe(ex: Exchange) -> str:
        payload = ex.json()
        errors = lookup(payload, "errors")
        first = errors[0] if isinstance(errors, list) and errors else payload
        code = lookup(first, "errorCode", "code")
        return failure_text("SMSPortal", ex, code, lookup(first, "errorMessage", "message"))
