"""Walk messages through their gateway chains: the part of delivery that runs in pool threads.

A task is one request's worth of messages for the first gateway of their chain (one message,
or up to a bulk endpoint's ``max_batch``); what fails there moves on to the next gateway of the
chain, in the same thread. Tasks touch no database: they only talk HTTP (and Redis, for the
fleet-wide gateway health), so many run at once while the job's own thread settles the rows.

Whatever goes wrong with one message is recorded on that message and never escapes the task:
a driver that raises, a gateway whose stored secrets cannot be decrypted, a gateway type that
no longer exists. Retrying cannot mend those, so they are not retryable.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import requests

from ..errors import GatewayConfigError, VaultError
from ..gateways import Driver, OutgoingSMS, SendResult, make_driver
from ..gateways.health import GatewayHealth
from ..gateways.store import gateway_config
from ..gateways.vault import Vault
from ..models import Gateway, Message
from . import secrecy

log = logging.getLogger("sms_ext")


@dataclass
class Round:
    """What happened to one message in this delivery round."""

    message: Message
    results: list[tuple[Gateway, SendResult]] = field(default_factory=list)

    @property
    def success(self) -> tuple[Gateway, SendResult] | None:
        return next(((g, r) for g, r in self.results if r.ok), None)

    def summary(self) -> str:
        return "; ".join(f"{g.name}: {r.error or 'failed'}" for g, r in self.results)


def gateway_chain(gateways: Sequence[Gateway], message: Message) -> list[Gateway]:
    """The gateways to try for ``message``, in order; a test send uses only its gateway."""
    if message.only_gateway:
        return [g for g in gateways if g.id == message.gateway_id]
    return [g for g in gateways if g.enabled and g.serves(message.location)]


def _failure(error: str) -> SendResult:
    return SendResult(ok=False, retryable=False, error=error)


class Drivers:
    """The drivers of one delivery run, built once per gateway and shared by the pool threads.

    A gateway that cannot be built (secrets unreadable with the configured key, a type that no
    longer exists) gets the reason instead, which every message routed to it records.
    """

    def __init__(
        self, vault: Vault, session: requests.Session, hooks_url: str | None = None
    ) -> None:
        self._vault = vault
        self._session = session
        self._hooks_url = hooks_url
        """Public base URL of the webhooks: drivers that ask for receipts per message
        (Twilio's ``StatusCallback``) find theirs in the config as ``receipt_url``."""
        self._built: dict[int, Driver | str] = {}
        self._lock = threading.Lock()

    def get(self, gateway: Gateway) -> Driver | str:
        with self._lock:
            built = self._built.get(gateway.id)
            if built is None:
                built = self._built[gateway.id] = self._build(gateway)
            return built

    def text(self, message: Message) -> tuple[str, str | None]:
        """The text to send and the guest code in it (see :func:`.secrecy.reveal`)."""
        return secrecy.reveal(self._vault, message)

    def _build(self, gateway: Gateway) -> Driver | str:
        try:
            config = gateway_config(gateway, self._vault)
            if self._hooks_url:
                config["receipt_url"] = f"{self._hooks_url}/{gateway.type}/{gateway.id}"
            return make_driver(gateway.type, config, self._session)
        except (GatewayConfigError, VaultError) as exc:
            return f"This gateway cannot be used: {exc}"


def _send(driver: Driver, batch: Sequence[OutgoingSMS]) -> list[SendResult]:
    """Hand ``batch`` to ``driver``; a driver that raises fails these messages, nothing else."""
    try:
        if len(batch) == 1:
            return [driver.send(batch[0])]
        return driver.send_many(batch)
    except Exception as exc:  # a driver bug must not cost the other messages of the job
        log.exception("gateway driver %s raised", driver.kind)
        return [_failure(f"The gateway driver failed: {type(exc).__name__}: {exc}")] * len(batch)


PERMIT_WAIT_SECONDS = 10.0
"""How long a message waits for a slot under a gateway's own limits before it moves on (to the
next gateway, or to a retry later)."""


def _skip(rounds: Sequence[Round], gateway: Gateway, reason: str) -> None:
    """Record that ``gateway`` was not tried, and why: a reason to retry later."""
    for round_ in rounds:
        round_.results.append((gateway, SendResult(ok=False, retryable=True, error=reason)))


def _request(
    drivers: Drivers, health: GatewayHealth, gateway: Gateway, chunk: Sequence[Round]
) -> None:
    """One request to ``gateway`` for ``chunk``, within its limits, its outcome counted."""
    driver = drivers.get(gateway)
    if isinstance(driver, str):
        for round_ in chunk:
            round_.results.append((gateway, _failure(driver)))
        return
    texts, sendable = [], []
    for round_ in chunk:
        try:
            texts.append(drivers.text(round_.message))
            sendable.append(round_)
        except VaultError as exc:  # a guest code sealed under another key
            round_.results.append((gateway, _failure(str(exc))))
    chunk = sendable
    if not chunk:
        return
    permit = health.acquire(gateway, timeout=PERMIT_WAIT_SECONDS)
    if permit is None:
        _skip(
            chunk,
            gateway,
            f"Not tried: the gateway's own limits left no room within {PERMIT_WAIT_SECONDS:g} s.",
        )
        return
    try:
        outgoing = [
            OutgoingSMS(str(r.message.id), r.message.to, text)
            for r, (text, _code) in zip(chunk, texts, strict=True)
        ]
        results = [
            secrecy.scrub(result, code)
            for result, (_text, code) in zip(_send(driver, outgoing), texts, strict=True)
        ]
    finally:
        health.release(permit)
    health.record(gateway, results[0])  # one request: one outcome for the pause and breaker
    for round_, result in zip(chunk, results, strict=True):
        round_.results.append((gateway, result))


def walk(
    drivers: Drivers,
    health: GatewayHealth,
    messages: Sequence[Message],
    chain: Sequence[Gateway],
) -> list[Round]:
    """Try ``messages`` (sharing ``chain``) gateway by gateway until each one is taken.

    A gateway paused or skipped fleet-wide (a 429's Retry-After, an open breaker) is passed
    over without a request, and the message moves on to the next one.
    """
    rounds = [Round(m) for m in messages]
    for gateway in chain:
        pending = [r for r in rounds if r.success is None]
        if not pending:
            break
        refusal = health.refusal(gateway)
        if refusal is not None:
            _skip(pending, gateway, refusal)
            continue
        driver = drivers.get(gateway)
        size = driver.max_batch if isinstance(driver, Driver) else len(pending)
        for start in range(0, len(pending), size):
            _request(drivers, health, gateway, pending[start : start + size])
    return rounds


def tasks(
    messages: Sequence[Message], gateways: Sequence[Gateway], drivers: Drivers
) -> list[tuple[list[Message], list[Gateway]]]:
    """Split ``messages`` into independent tasks: one per message, or one per bulk request
    when the first gateway of the chain has a bulk endpoint."""
    by_chain: dict[tuple[int, ...], list[Message]] = {}
    chains: dict[tuple[int, ...], list[Gateway]] = {}
    for message in messages:
        chain = gateway_chain(gateways, message)
        key = tuple(g.id for g in chain)
        by_chain.setdefault(key, []).append(message)
        chains[key] = chain
    planned: list[tuple[list[Message], list[Gateway]]] = []
    for key, members in by_chain.items():
        chain = chains[key]
        first = drivers.get(chain[0]) if chain else None
        size = first.max_batch if isinstance(first, Driver) else 1
        planned.extend(
            (members[start : start + size], chain) for start in range(0, len(members), size)
        )
    return planned
