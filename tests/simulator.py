"""A loopback HTTP server that imitates the SMS gateways (Twilio, SMSPortal, custom HTTP).

Drivers are tested against real sockets rather than mocked sessions, so that URL building,
authentication headers, keep-alive, timeouts and connection errors are exercised exactly as in
production. The HTTP facts imitated here are in ``docs/gateways.md``. Faults can be queued per
gateway or made permanent, and an HTTP control API lets a benchmark drive a simulator running in
another process (``python -m tests.simulator``).

Fault tests and benchmarks measure at the simulator, where the truth is: which messages arrived
once, twice or never (:meth:`GatewaySimulator.arrivals_by_recipient`), how many requests were held
at once (:attr:`GatewaySimulator.max_in_flight`) and the peak arrival rate per gateway
(:meth:`GatewaySimulator.max_rate`); ``GET /_sim/stats`` serves the same figures to another process.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import select
import signal
import socket
import struct
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import suppress
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from email.utils import format_datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode

TARGETS = frozenset({"twilio", "smsportal", "custom"})
FAULT_KINDS = frozenset({"500", "503", "429", "timeout", "garbage", "reset", "trickle", "huge"})
MAX_BODY = 16 * 1024 * 1024
"""Refuse larger bodies: reading them would allocate the announced size up front."""
TRICKLE_LENGTH = 1 << 20
"""The ``Content-Length`` a ``trickle`` answer announces: far more than it ever sends."""
SETTINGS = {
    "timeout_seconds": float,
    "trickle_interval": float,
    "stream_seconds": float,
    "huge_bytes": int,
}
"""The fault knobs ``POST /_sim/config`` may change, with their types."""
_HUGE_HEAD, _HUGE_TAIL = b'{"padding": "', b'"}'
_HUGE_FILLER = memoryview(b"x" * (1 << 16))
_SEND_POLL = 0.2
"""Seconds a ``huge`` answer waits on a client that stopped reading before looking again."""

_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENSION = frozenset("\f^{}\\[~]|€")
_E164 = re.compile(r"\+[1-9]\d{6,14}")
_MSISDN = re.compile(r"\+?\d{7,15}")
_TWILIO_PATH = re.compile(r"/2010-04-01/Accounts/([^/]+)/(Messages|Balance)\.json")
_TWILIO_MAGIC = {
    "+15005550001": (21211, "The 'To' number {to} is not a valid phone number."),
    "+15005550009": (21614, "'To' number is not a valid mobile number"),
    "+15005550004": (21610, "Attempt to send to unsubscribed recipient"),
}


def count_segments(text: str) -> int:
    """SMS parts needed for ``text``: what Twilio reports and SMSPortal charges.

    Rough on purpose (an ESC pair or emoji may straddle a part boundary here), which is
    close enough for a simulator and matches the documented boundary cases.
    """
    if all(char in _GSM_BASIC or char in _GSM_EXTENSION for char in text):
        units = len(text) + sum(char in _GSM_EXTENSION for char in text)
        single, multi = 160, 153
    else:
        units = len(text.encode("utf-16-le")) // 2
        single, multi = 70, 67
    return 1 if units <= single else -(-units // multi)


def parse_basic_auth(header: str | None) -> tuple[str, str] | None:
    """Decode an ``Authorization: Basic`` header; ``None`` when absent or malformed."""
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, colon, password = decoded.partition(":")
    return (user, password) if colon else None


@dataclass
class RecordedRequest:
    """One request a gateway route received, kept so tests can assert what a driver sent."""

    target: str
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    """Header names in lower case."""
    body: bytes
    received_at: float
    """``time.time()`` on arrival: wall clock, so comparable with another process's clock."""
    response_status: int = 0
    """0 until answered, and when the fault answered nothing (``timeout``, ``reset``)."""
    client_address: tuple[str, int] = ("", 0)
    """The peer socket; one port across requests proves a kept-alive connection."""
    fault: str | None = None
    """The fault kind that answered instead of the gateway; ``None`` when the gateway did."""

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    @property
    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.text, keep_blank_values=True)

    @property
    def json(self) -> Any:
        """The parsed JSON body, or ``None`` when the body is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    @property
    def basic_auth(self) -> tuple[str, str] | None:
        return parse_basic_auth(self.headers.get("authorization"))

    @property
    def accepted(self) -> bool:
        """The gateway took it: a 2xx that no fault produced (``garbage`` answers 200 too)."""
        return self.fault is None and 200 <= self.response_status < 300

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly view for the ``/_sim/requests`` control endpoint."""
        return {**asdict(self), "body": self.text}


@dataclass
class TwilioAccount:
    """The one Twilio account the simulator accepts; random per simulator instance."""

    account_sid: str = field(default_factory=lambda: "AC" + secrets.token_hex(16))
    auth_token: str = field(default_factory=lambda: secrets.token_hex(16))
    api_key: str = field(default_factory=lambda: "SK" + secrets.token_hex(16))
    api_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    balance: str = "12.50"
    currency: str = "USD"


@dataclass
class SMSPortalAccount:
    """The one SMSPortal account the simulator accepts, with its credits and issued tokens."""

    client_id: str = field(default_factory=lambda: secrets.token_hex(8))
    api_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    balance: int = 1500
    token_minutes: int = 1440
    _tokens: dict[str, float] = field(default_factory=dict, init=False, repr=False)
    """Token -> monotonic expiry; ``repr=False`` also keeps it out of ``/_sim/accounts``."""

    def issue_token(self) -> str:
        token = secrets.token_urlsafe(32)
        self._tokens[token] = time.monotonic() + self.token_minutes * 60
        return token

    def expire_tokens(self) -> None:
        """Age every issued token past its lifetime, so drivers must re-authenticate."""
        for token in list(self._tokens):
            self._tokens[token] = 0.0

    def token_state(self, token: str) -> str:
        """``"valid"``, ``"expired"`` or ``"unknown"``: each gets a different 401."""
        expiry = self._tokens.get(token)
        if expiry is None:
            return "unknown"
        return "valid" if time.monotonic() < expiry else "expired"


@dataclass
class _Reply:
    """What a route answers; the handler adds ``Content-Length`` so keep-alive always works."""

    status: int
    body: bytes
    headers: dict[str, str]


def _json(status: int, payload: Any) -> _Reply:
    return _Reply(status, json.dumps(payload).encode(), {"Content-Type": "application/json"})


def _twilio_error(status: int, code: int, message: str) -> _Reply:
    more_info = f"https://www.twilio.com/docs/errors/{code}"
    return _json(
        status, {"code": code, "message": message, "more_info": more_info, "status": status}
    )


def _smsportal_error(status: int, code: str, message: str) -> _Reply:
    return _json(status, {"errors": [{"errorCode": code, "errorMessage": message}]})


def _status_error(target: str, status: int) -> _Reply:
    """An error in the shape ``target`` uses, for the HTTP-status faults."""
    phrase = HTTPStatus(status).phrase
    if target == "twilio":
        return _twilio_error(status, 20000 + status, phrase)
    if target == "smsportal":
        return _smsportal_error(status, phrase.replace(" ", ""), phrase)
    return _json(status, {"error": phrase})


def _fault_reply(target: str, kind: str, retry_after: int | None) -> _Reply:
    """The answer of a ``fail_next`` fault that still answers (not ``timeout``/``reset``)."""
    if kind == "garbage":
        return _Reply(200, b"<html>\x00not json", {"Content-Type": "text/html"})
    reply = _status_error(target, int(kind))
    if retry_after is not None:
        reply.headers["Retry-After"] = str(retry_after)
    return reply


def _lower_keys(mapping: dict[str, Any]) -> dict[str, Any]:
    """SMSPortal documents PascalCase keys while clients send camelCase: accept both."""
    return {str(key).lower(): value for key, value in mapping.items()}


def _valid_msisdn(destination: object) -> bool:
    """What SMSPortal sends to; anything else lands in ``errorReport.faults``."""
    return isinstance(destination, str | int) and bool(_MSISDN.fullmatch(str(destination)))


def _portal_destinations(request: RecordedRequest, *, valid_only: bool) -> list[str]:
    """The ``destination`` of each message in a bulk send; ``[]`` for any other request."""
    payload = request.json
    messages = _lower_keys(payload).get("messages") if isinstance(payload, dict) else None
    if not isinstance(messages, list):
        return []
    found = [
        _lower_keys(message).get("destination") for message in messages if isinstance(message, dict)
    ]
    return [str(d) for d in found if d is not None and (_valid_msisdn(d) or not valid_only)]


def _field_values(request: RecordedRequest, key: str) -> list[str]:
    """``key`` from a JSON object body, else the form body, else the query string."""
    payload = request.json
    if isinstance(payload, dict) and key in payload:
        value = payload[key]
        return [str(v) for v in value] if isinstance(value, list) else [str(value)]
    return request.form.get(key) or request.query.get(key) or []


Recipients = Callable[[RecordedRequest], Iterable[object]]
"""Names the recipients of one request, for gateways the simulator cannot parse itself."""


def recipients_of(
    request: RecordedRequest, recipient: str | Recipients = "to", *, accepted_only: bool = False
) -> list[str]:
    """The numbers a gateway request sends to, as the client wrote them.

    Twilio's ``To`` and each SMSPortal ``destination`` are read as those gateways define them;
    a custom gateway's format is the caller's choice, so ``recipient`` names the JSON, form or
    query key holding it. A function instead is used for every target, e.g. to count by a
    message reference rather than by number. With ``accepted_only``, an SMSPortal bulk send
    yields only its valid destinations: the others came back in ``errorReport.faults``.
    """
    if callable(recipient):
        return [str(value) for value in recipient(request)]
    if request.target == "twilio":
        return request.form.get("To", [])
    if request.target == "smsportal":
        return _portal_destinations(request, valid_only=accepted_only)
    return _field_values(request, recipient)


def _max_in_window(times: list[float], window: float) -> int:
    """The most of ``times`` inside any half-open interval ``[t, t + window)``."""
    times = sorted(times)
    best = start = 0
    for end, moment in enumerate(times):
        while moment - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def _huge_body(size: int) -> Iterator[bytes | memoryview]:
    """``size`` bytes of valid JSON a chunk at a time, so 300 MB never sit in memory."""
    remaining = size - len(_HUGE_HEAD) - len(_HUGE_TAIL)
    yield _HUGE_HEAD
    while remaining > 0:
        chunk = _HUGE_FILLER[: min(remaining, len(_HUGE_FILLER))]
        remaining -= len(chunk)
        yield chunk
    yield _HUGE_TAIL


@dataclass
class _Gauge:
    """Requests held now and the most held at once since the last reset."""

    current: int = 0
    peak: int = 0

    def enter(self) -> None:
        self.current += 1
        self.peak = max(self.peak, self.current)

    def leave(self) -> None:
        self.current -= 1

    def reset(self) -> None:
        """Forget the peak but not the requests still held: they leave later."""
        self.peak = self.current


class GatewaySimulator:
    """Serves the gateway routes on a background thread; use as a context manager.

    :param host: interface to bind; loopback keeps tests off the network.
    :param port: 0 picks a free ephemeral port, read it back from :attr:`url`.
    :param latency: seconds slept before answering every gateway request; each request sleeps
        on its own thread, so latency delays answers without serialising them.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, latency: float = 0.0) -> None:
        self.host, self.port = host, port
        self.url = ""
        self.latency = latency
        self.timeout_seconds = 3.0
        """How long a ``timeout`` fault stalls before closing without an answer."""
        self.trickle_interval = 2.0
        """Seconds between the bytes of a ``trickle`` answer: each read succeeds, none finishes."""
        self.stream_seconds = 60.0
        """The most a ``trickle`` or ``huge`` answer lasts, so no thread streams forever."""
        self.huge_bytes = 300 * 1024 * 1024
        """The body size of a ``huge`` answer (at least 15 bytes: it is a JSON object)."""
        self.twilio = TwilioAccount()
        self.smsportal = SMSPortalAccount()
        self.twilio_callback_statuses = ["sent", "delivered"]
        """What a Twilio send with a ``StatusCallback`` reports there, signed, in this order."""
        self.callbacks: list[tuple[str, str, int | None]] = []
        """(URL, MessageStatus, HTTP status or None when unreachable) of each callback made."""
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._requests: list[RecordedRequest] = []
        self._arrivals: list[RecordedRequest] = []
        self._faults: dict[str, deque[tuple[str, int | None]]] = {t: deque() for t in TARGETS}
        self._always: dict[str, tuple[str, int | None]] = {}
        self._latencies: dict[str, float] = {}
        self._total = _Gauge()
        self._gauges = {target: _Gauge() for target in TARGETS}
        self._custom_response: tuple[int, str | None, dict[str, str]] = (200, None, {})
        self.set_custom_response()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> GatewaySimulator:
        if self._server is not None:
            raise RuntimeError("The simulator is already running; call 'stop' first.")
        self._stopping.clear()
        self._server = _Server((self.host, self.port), _Handler, simulator=self)
        self.url = f"http://{self.host}:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting requests and wake stalled ``timeout`` faults so they close."""
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._server.close_connections()
        if self._thread is not None:
            self._thread.join()
        self._server = self._thread = None

    def __enter__(self) -> GatewaySimulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def requests_for(self, target: str) -> list[RecordedRequest]:
        _check_target(target)
        return [request for request in self.requests if request.target == target]

    def wait_for_requests(
        self, count: int, *, target: str | None = None, timeout: float = 5.0
    ) -> list[RecordedRequest]:
        """Block until ``count`` requests (of ``target``) arrived: for drivers run by workers."""
        if target is not None:
            _check_target(target)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [r for r in self._requests if target is None or r.target == target]
                remaining = deadline - time.monotonic()
                if len(found) >= count:
                    return found
                if remaining <= 0:
                    seen = [f"{r.method} {r.path}" for r in found]
                    raise AssertionError(
                        f"expected {count} {target or 'gateway'} request(s) within {timeout}s, "
                        f"got {len(found)}: {seen}"
                    )
                self._changed.wait(remaining)

    def wait_idle(self, timeout: float = 5.0) -> None:
        """Block until no gateway request is held, so counts of what arrived are final.

        A request sleeping its latency is recorded only when answered: after a client gave up
        on it, wait here before asserting on :attr:`requests`.
        """
        with self._changed:
            if not self._changed.wait_for(lambda: self._total.current == 0, timeout):
                raise AssertionError(
                    f"{self._total.current} request(s) still in flight after {timeout}s"
                )

    @property
    def arrivals(self) -> list[RecordedRequest]:
        """Every gateway request since the last reset in arrival order, answered or not yet.

        :attr:`requests` lists them as answered; here a request is listed as soon as its body
        is read (``response_status`` is 0 until the answer), which is what loss counting needs.
        """
        with self._lock:
            return list(self._arrivals)

    @property
    def in_flight(self) -> int:
        """Gateway requests held now: received, answer not yet fully written."""
        with self._lock:
            return self._total.current

    @property
    def max_in_flight(self) -> int:
        """The most gateway requests held at once since the last reset."""
        with self._lock:
            return self._total.peak

    def max_in_flight_for(self, target: str) -> int:
        """:attr:`max_in_flight` counting only requests to ``target``."""
        _check_target(target)
        with self._lock:
            return self._gauges[target].peak

    def max_rate(self, target: str | None = None, window: float = 1.0) -> int:
        """The most requests (of ``target``) that arrived within any ``window`` seconds.

        The window slides over the arrival times (``received_at``), so a limit of N per second
        holds across workers only if this stays at or below N with ``window=1.0``.
        """
        if window <= 0:
            raise ValueError("window must be positive")
        if target is not None:
            _check_target(target)
        times = [r.received_at for r in self.arrivals if target is None or r.target == target]
        return _max_in_window(times, window)

    def arrivals_by_recipient(
        self,
        target: str | None = None,
        *,
        recipient: str | Recipients = "to",
        accepted_only: bool = True,
    ) -> Counter[str]:
        """How often each recipient reached the gateway: 2 means a duplicate, absent a loss.

        ``accepted_only`` counts what the gateway took (:attr:`RecordedRequest.accepted`);
        ``False`` counts every arrival, faulted, rejected or still in flight. ``recipient``
        says how to read a custom request (see :func:`recipients_of`). SMSPortal test-mode
        sends count as accepted: the simulator answers them like any send.
        """
        if target is not None:
            _check_target(target)
        chosen = [
            r
            for r in self.arrivals
            if (target is None or r.target == target) and (r.accepted or not accepted_only)
        ]
        return Counter(
            number
            for r in chosen
            for number in recipients_of(r, recipient, accepted_only=accepted_only)
        )

    def stats(self) -> dict[str, Any]:
        """The figures of ``GET /_sim/stats``: load, peaks and counts, overall and per target."""
        arrivals = self.arrivals
        with self._lock:
            gauges = {target: (g.current, g.peak) for target, g in self._gauges.items()}
            total = (self._total.current, self._total.peak)

        def figures(target: str | None, gauge: tuple[int, int]) -> dict[str, int]:
            mine = [r for r in arrivals if target is None or r.target == target]
            return {
                "in_flight": gauge[0],
                "max_in_flight": gauge[1],
                "requests": len(mine),
                "accepted": sum(r.accepted for r in mine),
                "max_per_second": _max_in_window([r.received_at for r in mine], 1.0),
            }

        return {
            **figures(None, total),
            "targets": {target: figures(target, gauges[target]) for target in sorted(TARGETS)},
        }

    def clear(self) -> None:
        """Forget requests, faults (queued and permanent), peaks and counts; keep latencies."""
        with self._lock:
            self._requests.clear()
            self._arrivals.clear()
            for queue in self._faults.values():
                queue.clear()
            self._always.clear()
            self._total.reset()
            for gauge in self._gauges.values():
                gauge.reset()

    def fail_next(
        self, target: str, kind: str, count: int = 1, *, retry_after: int | None = None
    ) -> None:
        """Queue ``count`` faults of ``kind`` for the next requests to ``target`` (FIFO)."""
        _check_fault(target, kind)
        with self._lock:
            self._faults[target].extend([(kind, retry_after)] * count)

    def fail_always(self, target: str, kind: str, *, retry_after: int | None = None) -> None:
        """Answer every request to ``target`` with ``kind`` until :meth:`stop_failing`.

        For a gateway that is down for good, e.g. a primary that times out for every message.
        Queued :meth:`fail_next` faults still come first.
        """
        _check_fault(target, kind)
        with self._lock:
            self._always[target] = (kind, retry_after)

    def stop_failing(self, target: str | None = None) -> None:
        """End :meth:`fail_always` for ``target``, or for every target."""
        if target is not None:
            _check_target(target)
        with self._lock:
            if target is None:
                self._always.clear()
            else:
                self._always.pop(target, None)

    def set_latency(self, target: str, seconds: float | None) -> None:
        """Delay ``target``'s answers by ``seconds`` instead of :attr:`latency`; ``None`` undoes."""
        _check_target(target)
        with self._lock:
            if seconds is None:
                self._latencies.pop(target, None)
            else:
                self._latencies[target] = seconds

    def latency_for(self, target: str) -> float:
        """The delay before ``target``'s answers: its own, else the global :attr:`latency`."""
        with self._lock:
            return self._latencies.get(target, self.latency)

    def set_custom_response(
        self, status: int = 200, body: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        """Answer ``/custom/...`` with this; ``body=None`` means a fresh messageId each time."""
        merged = dict(headers or {})
        if not any(name.lower() == "content-type" for name in merged):
            merged["Content-Type"] = "application/json"
        self._custom_response = (status, body, merged)

    def accounts(self) -> dict[str, Any]:
        """The credentials a driver needs, as served by ``GET /_sim/accounts``."""
        return {
            name: {f.name: getattr(account, f.name) for f in fields(account) if f.repr}
            for name, account in (("twilio", self.twilio), ("smsportal", self.smsportal))
        }

    # -- called by the request handler -------------------------------------------------------

    def _record(self, request: RecordedRequest) -> None:
        with self._changed:
            self._requests.append(request)
            self._changed.notify_all()

    def _arrive(self, request: RecordedRequest) -> None:
        with self._lock:
            self._arrivals.append(request)
            self._total.enter()
            self._gauges[request.target].enter()

    def _leave(self, request: RecordedRequest) -> None:
        with self._changed:
            self._total.leave()
            self._gauges[request.target].leave()
            self._changed.notify_all()

    def _take_fault(self, target: str) -> tuple[str, int | None] | None:
        with self._lock:
            queue = self._faults[target]
            return queue.popleft() if queue else self._always.get(target)

    def _route(self, request: RecordedRequest, subpath: str) -> _Reply:
        if request.target == "twilio":
            return self._twilio(request, subpath)
        if request.target == "smsportal":
            return self._smsportal(request, subpath)
        status, body, headers = self._custom_response
        if body is None:
            body = json.dumps({"status": "ok", "messageId": secrets.token_hex(16)})
        return _Reply(status, body.encode(), dict(headers))

    def _twilio(self, request: RecordedRequest, subpath: str) -> _Reply:
        account = self.twilio
        allowed = {(account.account_sid, account.auth_token), (account.api_key, account.api_secret)}
        if request.basic_auth not in allowed:
            return _twilio_error(401, 20003, "Authenticate")
        match = _TWILIO_PATH.fullmatch(subpath)
        if match is None or match[1] != account.account_sid:
            return _twilio_error(404, 20404, f"The requested resource {subpath} was not found")
        if request.method != ("GET" if match[2] == "Balance" else "POST"):
            return _twilio_error(405, 20004, "Method not allowed")
        if match[2] == "Balance":
            return _json(
                200,
                {
                    "account_sid": account.account_sid,
                    "balance": account.balance,
                    "currency": account.currency,
                },
            )
        return self._twilio_send(request.form)

    def _twilio_send(self, form: dict[str, list[str]]) -> _Reply:
        to, sender, service, body = (
            form.get(k, [""])[0] for k in ("To", "From", "MessagingServiceSid", "Body")
        )
        if not _E164.fullmatch(to):
            return _twilio_error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if not (sender or service):
            return _twilio_error(400, 21603, "A 'From' phone number is required.")
        if not body:
            return _twilio_error(400, 21602, "Message body is required.")
        if len(body) > 1600:
            message = "The concatenated message body exceeds the 1600 character limit."
            return _twilio_error(400, 21617, message)
        if to in _TWILIO_MAGIC:
            code, message = _TWILIO_MAGIC[to]
            return _twilio_error(400, code, message.format(to=to))
        sid = "SM" + secrets.token_hex(16)
        if form.get("StatusCallback"):
            report = {"MessageSid": sid, "AccountSid": self.twilio.account_sid, "To": to}
            report.update({"From": sender or service, "ApiVersion": "2010-04-01"})
            url = form["StatusCallback"][0]
            threading.Thread(target=self._twilio_callbacks, args=(url, report), daemon=True).start()
        now = format_datetime(datetime.now(UTC))
        uri = f"/2010-04-01/Accounts/{self.twilio.account_sid}/Messages/{sid}.json"
        return _json(
            201,
            {
                "sid": sid,
                "account_sid": self.twilio.account_sid,
                "to": to,
                "from": sender or None,
                "messaging_service_sid": service or None,
                "body": body,
                "status": "accepted" if service else "queued",
                "num_segments": str(count_segments(body)),
                "num_media": "0",
                "direction": "outbound-api",
                "api_version": "2010-04-01",
                "price": None,
                "price_unit": "USD",
                "error_code": None,
                "error_message": None,
                "date_created": now,
                "date_updated": now,
                "date_sent": None,
                "uri": uri,
                "subresource_uris": {"media": uri.replace(".json", "/Media.json")},
            },
        )

    def _twilio_callbacks(self, url: str, report: dict[str, str]) -> None:
        """Report each of :attr:`twilio_callback_statuses` to ``url`` as Twilio does: a form
        POST signed with ``X-Twilio-Signature`` (HMAC-SHA1 of the URL and the sorted params,
        keyed with the Auth Token), after the send's answer has left."""
        time.sleep(0.05)
        for status in self.twilio_callback_statuses:
            params = {**report, "MessageStatus": status}
            signed = url + "".join(name + params[name] for name in sorted(params))
            key = self.twilio.auth_token.encode()
            digest = hmac.new(key, signed.encode(), hashlib.sha1).digest()
            request = urllib.request.Request(
                url,
                data=urlencode(params).encode(),
                headers={"X-Twilio-Signature": base64.b64encode(digest).decode()},
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:
                    code: int | None = answer.status
            except urllib.error.HTTPError as exc:
                code = exc.code
            except OSError:
                code = None
            with self._lock:
                self.callbacks.append((url, status, code))

    def _smsportal(self, request: RecordedRequest, subpath: str) -> _Reply:
        routes = {
            "/v1/authentication": ("GET", self._smsportal_authenticate),
            "/v1/bulkmessages": ("POST", self._smsportal_send),
            "/v1/balance": ("GET", self._smsportal_balance),
        }
        route = routes.get(subpath.lower().rstrip("/"))
        if route is None:
            return _smsportal_error(404, "NotFound", f"No resource at {subpath}")
        method, handler = route
        if request.method != method:
            return _smsportal_error(405, "MethodNotAllowed", f"Use {method} for {subpath}")
        return handler(request)

    def _smsportal_denied(self, request: RecordedRequest) -> _Reply | None:
        """The 401 for a request without a valid token or client credentials, else ``None``."""
        account = self.smsportal
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            state = account.token_state(token.strip())
            if state == "valid":
                return None
            if state == "expired":
                return _smsportal_error(401, "AuthenticationToken.Expired", "Token has expired")
            return _smsportal_error(401, "InvalidToken", "Invalid token")
        if request.basic_auth == (account.client_id, account.api_secret):
            return None
        return _smsportal_error(401, "InvalidCredentials", "Invalid credentials")

    def _smsportal_authenticate(self, request: RecordedRequest) -> _Reply:
        account = self.smsportal
        if request.basic_auth != (account.client_id, account.api_secret):
            return _smsportal_error(401, "InvalidCredentials", "Invalid credentials")
        token = account.issue_token()
        return _json(
            200, {"token": token, "schema": "JWT", "expiresInMinutes": account.token_minutes}
        )

    def _smsportal_balance(self, request: RecordedRequest) -> _Reply:
        return self._smsportal_denied(request) or _json(200, {"balance": self.smsportal.balance})

    def _smsportal_send(self, request: RecordedRequest) -> _Reply:
        denied = self._smsportal_denied(request)
        if denied:
            return denied
        payload = request.json
        if not isinstance(payload, dict):
            return _smsportal_error(400, "InvalidRequest", "The body must be a JSON object")
        payload = _lower_keys(payload)
        messages = payload.get("messages")
        well_formed = isinstance(messages, list) and all(isinstance(m, dict) for m in messages)
        if not (well_formed and messages):
            return _smsportal_error(400, "InvalidRequest", "'messages' must be a list of objects")
        if len(messages) > 100:
            return _smsportal_error(400, "InvalidRequest", "At most 100 messages per request")
        options = payload.get("sendoptions")
        test_mode = isinstance(options, dict) and _lower_keys(options).get("testmode") is True
        accepted: list[str] = []
        faults: list[dict[str, Any]] = []
        for message in map(_lower_keys, messages):
            destination, content = message.get("destination"), message.get("content")
            if not _valid_msisdn(destination):
                faults.append({"destination": destination, "errorMessage": "Invalid destination"})
            else:
                accepted.append(str(content))
        cost = sum(map(count_segments, accepted))
        with self._lock:
            if self.smsportal.balance < cost:
                return _smsportal_error(403, "InsufficientCredits", "Insufficient credits")
            if not test_mode:
                self.smsportal.balance -= cost
            remaining = self.smsportal.balance
        first = _lower_keys(messages[0]).get("content")
        return _json(
            200,
            {
                "cost": cost,
                "remainingBalance": remaining,
                "eventId": 10**10 + secrets.randbelow(9 * 10**10),
                "sample": first,
                "messages": len(accepted),
                "parts": cost,
                "errorReport": {"noNetwork": 0, "duplicates": 0, "optedOuts": 0, "faults": faults},
            },
        )

    def _control(self, method: str, action: str, body: bytes) -> _Reply:
        """The ``/_sim/...`` API, so a simulator in another process can be driven."""
        readers: dict[str, Callable[[], Any]] = {
            "requests": lambda: [request.to_dict() for request in self.requests],
            "accounts": self.accounts,
            "stats": self.stats,
        }
        writers: dict[str, Callable[[dict[str, Any]], None]] = {
            "reset": lambda payload: self.clear(),
            "fail": self._control_fail,
            "fail_always": self._control_fail_always,
            "stop_failing": lambda payload: self.stop_failing(payload.get("target")),
            "latency": self._control_latency,
            "config": self._control_config,
        }
        if method == "GET" and action in readers:
            return _json(200, readers[action]())
        if method != "POST" or action not in writers:
            return _json(404, {"error": f"no control endpoint {method} /_sim/{action}"})
        try:
            payload = json.loads(body or b"{}")
            if not isinstance(payload, dict):
                raise TypeError("the body must be a JSON object")
            writers[action](payload)
        except (KeyError, TypeError, ValueError) as exc:
            return _json(400, {"error": f"{type(exc).__name__}: {exc}"})
        return _json(200, {"ok": True})

    def _control_fail(self, payload: dict[str, Any]) -> None:
        """``{"target", "kind", "count"?, "retry_after"?}``: like :meth:`fail_next`."""
        self.fail_next(
            str(payload["target"]),
            str(payload["kind"]),
            int(payload.get("count", 1)),
            retry_after=_optional_int(payload.get("retry_after")),
        )

    def _control_fail_always(self, payload: dict[str, Any]) -> None:
        """``{"target", "kind", "retry_after"?}``: like :meth:`fail_always`."""
        self.fail_always(
            str(payload["target"]),
            str(payload["kind"]),
            retry_after=_optional_int(payload.get("retry_after")),
        )

    def _control_latency(self, payload: dict[str, Any]) -> None:
        """``{"seconds"}`` sets the global latency; with ``"target"`` only that target's.

        ``{"target", "seconds": null}`` returns the target to the global latency.
        """
        seconds = payload["seconds"]
        if "target" in payload:
            self.set_latency(str(payload["target"]), None if seconds is None else float(seconds))
        else:
            self.latency = float(seconds)

    def _control_config(self, payload: dict[str, Any]) -> None:
        """Set fault knobs named in :data:`SETTINGS`; all are checked before any is set."""
        unknown = set(payload) - set(SETTINGS)
        if unknown:
            raise ValueError(f"unknown settings {sorted(unknown)}; use {sorted(SETTINGS)}")
        values = {name: SETTINGS[name](value) for name, value in payload.items()}
        if any(value <= 0 for value in values.values()):
            raise ValueError("settings must be positive")
        for name, value in values.items():
            setattr(self, name, value)


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _check_target(target: str) -> None:
    if target not in TARGETS:
        raise ValueError(f"Unknown target {target!r}; use one of {sorted(TARGETS)}.")


def _check_fault(target: str, kind: str) -> None:
    _check_target(target)
    if kind not in FAULT_KINDS:
        raise ValueError(f"Unknown fault kind {kind!r}; use one of {sorted(FAULT_KINDS)}.")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    """Listen backlog for a benchmark's burst of connects (hundreds at once); the default 5
    drops SYNs under load, and the kernel caps it at ``net.core.somaxconn`` anyway."""

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        *,
        simulator: GatewaySimulator,
    ) -> None:
        self.simulator = simulator
        self.connections: set[socket.socket] = set()
        super().__init__(address, handler)

    def close_connections(self) -> None:
        """End kept-alive connections too, so no handler thread outlives the simulator."""
        for connection in list(self.connections):
            with suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up early (timeouts by design) are not worth a traceback."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    default_request_version = "HTTP/1.1"
    """So the 400 for a garbled request line still carries a status line and headers."""
    disable_nagle_algorithm = True
    wbufsize = 1 << 16
    """Buffer the answer so headers and body leave in one segment; flushed per request."""
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: a line per request would drown test output and slow the benchmark."""

    def setup(self) -> None:
        super().setup()
        self.server.connections.add(self.connection)

    def finish(self) -> None:
        self.server.connections.discard(self.connection)
        super().finish()

    def _handle(self) -> None:
        """Every method lands here: the path, not the method, says what is being imitated."""
        path, _, query = self.path.partition("?")
        head, _, rest = path[1:].partition("/")
        try:
            body = self._read_body()
        except ValueError as exc:
            self.close_connection = True
            self._send(_json(400, {"error": str(exc)}))
            return
        if head == "_sim":
            self._send(self.server.simulator._control(self.command, rest, body))
        elif head not in TARGETS:
            self._send(_json(404, {"error": f"unknown gateway prefix /{head}"}))
        else:
            request = RecordedRequest(
                target=head,
                method=self.command,
                path=path,
                query=parse_qs(query, keep_blank_values=True),
                headers={name.lower(): value for name, value in self.headers.items()},
                body=body,
                received_at=time.time(),
                client_address=self.client_address[:2],
            )
            self._serve_gateway(request, "/" + rest)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    def _serve_gateway(self, request: RecordedRequest, subpath: str) -> None:
        """Count the request as held until its answer starts to leave, whatever the answer is.

        A normal answer stops counting just before its first byte is written: once the client
        has it, the client may send its next request at once, and that one must not find this
        one still counted (a gateway's own in-flight count ends as it answers, too).
        """
        sim = self.server.simulator
        sim._arrive(request)
        self._held = request
        try:
            self._answer_gateway(request, subpath)
        finally:
            self._release_held()

    def _release_held(self) -> None:
        """Stop counting the request being answered, once."""
        request, self._held = getattr(self, "_held", None), None
        if request is not None:
            self.server.simulator._leave(request)

    def _answer_gateway(self, request: RecordedRequest, subpath: str) -> None:
        sim = self.server.simulator
        latency = sim.latency_for(request.target)
        if latency > 0:
            sim._stopping.wait(latency)  # not time.sleep: stop() must not wait for it
        fault = sim._take_fault(request.target)
        request.fault = fault[0] if fault else None
        if request.fault in ("timeout", "reset"):
            sim._record(request)
            self._hang_up(request.fault)
            return
        if request.fault in ("trickle", "huge"):
            request.response_status = 200
            sim._record(request)
            self._stream(request.fault)
            return
        try:
            reply = _fault_reply(request.target, *fault) if fault else sim._route(request, subpath)
        except Exception as exc:  # a simulator bug: answer with its cause, not a bare disconnect
            self.close_connection = True
            reply = _json(500, {"error": f"simulator bug: {exc!r}"})
        request.response_status = reply.status
        sim._record(request)
        self._release_held()
        self._send(reply)

    def _read_body(self) -> bytes:
        if "transfer-encoding" in {name.lower() for name in self.headers}:
            raise ValueError("chunked request bodies are not supported; send Content-Length")
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        size = int(length)
        if not 0 <= size <= MAX_BODY:
            raise ValueError(f"Content-Length must be between 0 and {MAX_BODY}")
        return self.rfile.read(size)

    def _hang_up(self, kind: str) -> None:
        """End the connection without an answer, after a stall (timeout) or at once (reset)."""
        self.close_connection = True
        if kind == "timeout":
            self.server.simulator._stopping.wait(self.server.simulator.timeout_seconds)
        else:
            # Linger 0 makes close() send RST, which clients see as "connection reset by peer".
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()

    def _stream(self, kind: str) -> None:
        """A 200 whose body never arrives in time: slowly (``trickle``) or endlessly (``huge``).

        Both end when the client hangs up, the simulator stops or ``stream_seconds`` pass, and
        then close the connection, so an unfinished body never poisons a kept-alive connection.
        """
        sim = self.server.simulator
        self.close_connection = True
        deadline = time.monotonic() + sim.stream_seconds
        with suppress(ConnectionError):  # the client hung up: what these faults wait for
            if kind == "trickle":
                self._trickle(deadline)
            else:
                self._send_huge(deadline)

    def _trickle(self, deadline: float) -> None:
        """One byte every ``trickle_interval``: no read times out, yet the body never ends."""
        sim = self.server.simulator
        self._send_head(200, {"Content-Type": "application/json"}, TRICKLE_LENGTH)
        self.wfile.flush()
        for _ in range(TRICKLE_LENGTH):
            pause = min(sim.trickle_interval, deadline - time.monotonic())
            if pause <= 0 or self._client_left(pause):
                return
            self.connection.sendall(b" ")

    def _client_left(self, timeout: float) -> bool:
        """Wait up to ``timeout``; ``True`` once the client closed (or ``stop`` shut us down).

        The client sends nothing while awaiting its answer, so readable means end of stream.
        ``poll`` rather than ``select``, which fails on descriptors past 1024 under load.
        """
        poller = select.poll()
        poller.register(self.connection, select.POLLIN)
        return bool(poller.poll(timeout * 1000))

    def _send_huge(self, deadline: float) -> None:
        """Stream ``huge_bytes`` of JSON as fast as the client reads, never holding it all."""
        sim = self.server.simulator
        size = max(sim.huge_bytes, len(_HUGE_HEAD) + len(_HUGE_TAIL))
        self._send_head(200, {"Content-Type": "application/json"}, size)
        self.wfile.flush()
        # With a timeout, send() takes what fits and a stalled reader cannot block us for good.
        self.connection.settimeout(_SEND_POLL)
        for chunk in _huge_body(size):
            view = memoryview(chunk)
            while view:
                if sim._stopping.is_set() or time.monotonic() >= deadline:
                    return
                with suppress(TimeoutError):
                    view = view[self.connection.send(view) :]

    def _send_head(self, status: int, headers: dict[str, str], length: int) -> None:
        self.send_response_only(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(length))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()

    def _send(self, reply: _Reply) -> None:
        """Write the answer out now, so a request stays in flight until its answer left."""
        self._send_head(reply.status, reply.headers, len(reply.body))
        self.wfile.write(reply.body)
        self.wfile.flush()


def main(argv: list[str] | None = None) -> None:
    """Serve in the foreground until SIGTERM/SIGINT, for benchmarks in another process."""
    parser = argparse.ArgumentParser(description="Run the SMS gateway simulator.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args(argv)
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    # Blocked before the server threads start, so they inherit the mask and sigwait gets it.
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    with GatewaySimulator(port=args.port, latency=args.latency) as sim:
        print(f"SIMULATOR {sim.url}")
        print(json.dumps(sim.accounts()), flush=True)
        signal.sigwait(stop_signals)


if __name__ == "__main__":
    main()
