"""Send one prepared HTTP call and describe the outcome the same way for every driver.

Classifying transport trouble lives here, once: timeouts, connection errors, 5xx and 429 are
worth retrying later (honouring ``Retry-After``); other 4xx, and a request the egress guard
refused (:mod:`.egress`), are not.
"""

from __future__ import annotations

import email.utils
import os
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import requests
import requests.adapters
import urllib3

from .base import PreparedCall, SendResult
from .egress import EgressRefused, GuardedAdapter
from .masking import redact, storable, summarize

EXCERPT_CHARS = 1000
"""How much of a provider's answer is kept on the attempt record."""
MAX_ANSWER_BYTES = 1024 * 1024
"""Largest answer read from a gateway; SMS APIs answer in a few KiB, even for 100 messages."""
READ_CHUNK = 64 * 1024

_http: dict[bool, tuple[int, int, requests.Session]] = {}
ENVIRONMENT_SETTINGS = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NETRC")


def http_session(pool_size: int = 10, *, deny_private: bool = False) -> requests.Session:
    """One kept-alive HTTP session per process (never shared across a fork), keeping up to
    ``pool_size`` connections per gateway host: as many as requests a worker has in flight.

    Reading proxy settings from the environment costs requests about half a millisecond per
    call; when there are none to read, the session skips it.

    :param deny_private: connections to private addresses raise :class:`EgressRefused`
        (``SMS_GATEWAY_DENY_PRIVATE``).
    """
    cached = _http.get(deny_private)
    if cached is None or cached[0] != os.getpid() or cached[1] < pool_size:
        session = requests.Session()
        environment_matters = urllib.request.getproxies() or any(
            name in os.environ for name in ENVIRONMENT_SETTINGS
        )
        session.trust_env = bool(environment_matters)
        adapter_class = GuardedAdapter if deny_private else requests.adapters.HTTPAdapter
        adapter = adapter_class(pool_connections=16, pool_maxsize=pool_size)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        cached = _http[deny_private] = (os.getpid(), pool_size, session)
    return cached[2]


@dataclass
class Exchange:
    """One HTTP round trip: the response when there was one, and what to record about it."""

    response: requests.Response | None
    summary: str
    duration_ms: int
    error: str = ""
    refused: bool = False
    """The egress guard stopped the request: trying again cannot help."""

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
        if self.refused:
            return False
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


def exchange(
    session: requests.Session,
    call: PreparedCall,
    *,
    timeout: float,
    verify: bool = True,
    secrets: Iterable[str] = (),
) -> Exchange:
    """Perform ``call``; never raises for network trouble, which becomes ``Exchange.error``.

    ``timeout`` bounds the whole answer, not each socket read (a server trickling a byte at a
    time is cut off at the deadline, give or take one read), and at most
    :data:`MAX_ANSWER_BYTES` are read: a runaway answer costs neither time nor memory.
    """
    summary = summarize(call, secrets)
    started = time.perf_counter()
    response: requests.Response | None
    refused = False
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
            stream=True,
        )
    except EgressRefused as exc:
        error, refused = str(exc), True
        response = None
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
        error = _read_answer(response, started + timeout, timeout)
        if error:
            response = None
    duration_ms = int((time.perf_counter() - started) * 1000)
    return Exchange(
        response=response, summary=summary, duration_ms=duration_ms, error=error, refused=refused
    )


def _read_answer(response: requests.Response, deadline: float, timeout: float) -> str:
    """Read the body of a streamed ``response`` into it before ``deadline`` (perf_counter);
    returns why it could not (the connection is then dropped), or ``""``."""
    chunks: list[bytes] = []
    size = 0
    try:
        while chunk := response.raw.read1(READ_CHUNK, decode_content=True):
            size += len(chunk)
            if size > MAX_ANSWER_BYTES:
                response.close()
                return f"answer larger than {MAX_ANSWER_BYTES // 1024} KiB"
            if time.perf_counter() > deadline:
                response.close()
                return f"no complete answer within {timeout:g} s"
            chunks.append(chunk)
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        response.close()
        return f"connection failed while reading the answer: {type(exc).__name__}"
    response._content = b"".join(chunks)  # what .text and .json() read, as without streaming
    response.raw.release_conn()  # fully read: the connection goes back for keep-alive
    return ""
