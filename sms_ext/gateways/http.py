"""Send one prepared HTTP call and describe the outcome the same way for every driver.

Classifying transport trouble lives here, once: timeouts, connection errors, 5xx and 429 are
worth retrying later (honouring ``Retry-After``); other 4xx are not.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import requests

from ..masking import redact, redact_headers
from .base import PreparedCall, SendResult

EXCERPT_CHARS = 1000
"""How much of a provider's answer is kept on the attempt record."""

_CONTROL = {code: "\ufffd" for code in range(32) if chr(code) not in "\t\n\r"}


def storable(text: str) -> str:
    """Text safe for every database and page: control characters (NUL above all, which
    PostgreSQL refuses) become U+FFFD."""
    return text.translate(_CONTROL)


@dataclass
class Exchange:
    """One HTTP round trip: the response when there was one, and what to record about it."""

    response: requests.Response | None
    summary: str
    duration_ms: int
    error: str = ""

    @property
    def status(self) -> int | None:
        return self.response.status_code if self.response is not None else None

    @property
    def text(self) -> str:
        return self.response.text if self.response is not None else ""

    @property
    def transient(self) -> bool:
        """The provider or network failed in a way that may pass: try again later."""
        status = self.status
        return status is None or status == 429 or status >= 500

    def json(self) -> object | None:
        """The body as JSON, or ``None`` when it is not JSON (garbage counts as a failure)."""
        try:
            return self.response.json() if self.response is not None else None
        except ValueError:
            return None

    def result(
        self,
        ok: bool,
        *,
        provider_id: str | None = None,
        error: str = "",
        retryable: bool | None = None,
        secrets: Iterable[str] = (),
    ) -> SendResult:
        """A :class:`SendResult` for this exchange; retryable defaults to :attr:`transient`."""
        secrets = list(secrets)
        reason = error or self.error
        if not ok and not reason:
            reason = f"HTTP {self.status}" if self.status else "no response"
        return SendResult(
            ok=ok,
            provider_id=provider_id,
            http_status=self.status,
            response_excerpt=storable(redact(self.text[:EXCERPT_CHARS], secrets)),
            error=storable(redact(reason, secrets)) if not ok else "",
            retryable=(self.transient if retryable is None else retryable) and not ok,
            retry_after=self.retry_after(),
            request_summary=self.summary,
            duration_ms=self.duration_ms,
        )

    def retry_after(self) -> float | None:
        """Seconds from a ``Retry-After`` header, in either of its two forms."""
        if self.response is None:
            return None
        value = self.response.headers.get("Retry-After")
        if not value:
            return None
        value = value.strip()
        if value.isdigit():
            return float(value)
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - datetime.now(UTC)).total_seconds())


def summarize(call: PreparedCall, secrets: Iterable[str]) -> str:
    """The request as text, as an admin may see it: every secret masked."""
    secrets = list(secrets)
    lines = [f"{call.method} {redact(call.url, secrets)}"]
    headers = dict(call.headers)
    if call.auth:
        headers["Authorization"] = "Basic <credentials>"
    for name, value in redact_headers(headers, secrets).items():
        lines.append(f"{name}: {value}")
    if call.body:
        lines.append("")
        lines.append(redact(call.body.decode("utf-8", errors="replace"), secrets))
    return storable("\n".join(lines))


def exchange(
    session: requests.Session,
    call: PreparedCall,
    *,
    timeout: float,
    verify: bool = True,
    secrets: Iterable[str] = (),
) -> Exchange:
    """Perform ``call``; never raises for network trouble, which becomes ``Exchange.error``."""
    summary = summarize(call, secrets)
    started = time.perf_counter()
    try:
        response = session.request(
            call.method,
            call.url,
            headers=call.headers,
            data=call.body,
            auth=call.auth,
            timeout=timeout,
            verify=verify,
            allow_redirects=False,
        )
    except requests.Timeout:
        error = f"no answer within {timeout:g} s"
        response = None
    except requests.ConnectionError as exc:
        error = f"connection failed: {type(exc).__name__}"
        response = None
    except requests.RequestException as exc:
        error = f"request failed: {type(exc).__name__}: {exc}"
        response = None
    else:
        error = ""
    duration_ms = int((time.perf_counter() - started) * 1000)
    return Exchange(response=response, summary=summary, duration_ms=duration_ms, error=error)
