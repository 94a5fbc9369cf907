"""Deliver claimed messages: route through gateways in order, record each try, settle the rows.

One call handles one message or a campaign chunk alike: it claims the rows atomically, walks
each message's gateway chain (a bulk endpoint takes many messages per request), then writes
attempts and statuses in bulk. Failed rounds are retried with exponential backoff until the
message expires.
"""

from __future__ import annotations

import logging
import secrets
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import CursorResult, and_, bindparam, insert, update
from sqlalchemy.orm import Session

from .. import runtime
from ..gateways import Driver, OutgoingSMS, SendResult, make_driver
from ..gateways.http import http_session
from ..gateways.store import gateway_config
from ..models import MESSAGES, Gateway, Message, MessageAttempt, Status, utcnow
from ..state import SMSState
from . import outbox

log = logging.getLogger("sms_ext")

BREAKER_FAILURES = 3
"""Consecutive transient failures after which a gateway is skipped for the rest of a batch, so
a dead provider costs three timeouts, not one per message."""
SKIPPED = f"Not tried: this gateway failed {BREAKER_FAILURES} times in a row in this batch."

CLOCK_SKEW = timedelta(seconds=1)
"""A job may run this much before its row's due time (clocks of web, worker and Redis differ)."""


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


def claim(session: Session, ids: Sequence[int], lease_seconds: float) -> list[Message]:
    """Take the due, queued rows among ``ids`` for this worker; a row is claimed only once.

    One conditional ``UPDATE ... RETURNING`` is the lock: two workers running the same ids see
    one winner per row (PostgreSQL re-checks the WHERE after the row lock, SQLite serialises
    writers).
    """
    now = utcnow()
    claimed = session.scalars(
        update(Message)
        .where(
            Message.id.in_(list(ids)),
            Message.status == Status.QUEUED,
            Message.next_attempt_at <= now + CLOCK_SKEW,
        )
        .values(
            status=Status.SENDING,
            claim_token=secrets.token_hex(16),
            claimed_until=now + timedelta(seconds=lease_seconds),
        )
        .returning(Message)
        .execution_options(synchronize_session=False)
    ).all()
    # Detached, the rows keep what RETURNING loaded: the commit does not expire them, so
    # reading them later costs no query per message.
    for message in claimed:
        session.expunge(message)
    session.commit()
    return list(claimed)


def gateway_chain(gateways: Sequence[Gateway], message: Message) -> list[Gateway]:
    """The gateways to try for ``message``, in order; a test send uses only its gateway."""
    if message.only_gateway:
        return [g for g in gateways if g.id == message.gateway_id]
    return [g for g in gateways if g.enabled and g.serves(message.location)]


def _send_through(driver: Driver, gateway: Gateway, rounds: list[Round]) -> None:
    """Hand ``rounds`` to one gateway, recording a result on each round it was tried for."""
    outgoing = [OutgoingSMS(str(r.message.id), r.message.to, r.message.body) for r in rounds]
    if driver.max_batch > 1:
        for start in range(0, len(rounds), driver.max_batch):
            chunk = slice(start, start + driver.max_batch)
            for round_, result in zip(
                rounds[chunk], driver.send_many(outgoing[chunk]), strict=True
            ):
                round_.results.append((gateway, result))
        return
    transient_in_a_row = 0
    for round_, sms in zip(rounds, outgoing, strict=True):
        if transient_in_a_row >= BREAKER_FAILURES:
            result = SendResult(ok=False, retryable=True, error=SKIPPED)
        else:
            result = driver.send(sms)
            transient_in_a_row = transient_in_a_row + 1 if result.retryable else 0
        round_.results.append((gateway, result))


def run_rounds(
    state: SMSState, messages: Sequence[Message], gateways: Sequence[Gateway]
) -> list[Round]:
    """Walk every message's chain: each gateway gets the messages still unsent, in one go."""
    rounds = [Round(m) for m in messages]
    by_chain: dict[tuple[int, ...], list[Round]] = defaultdict(list)
    for round_ in rounds:
        by_chain[tuple(g.id for g in gateway_chain(gateways, round_.message))].append(round_)
    drivers: dict[int, Driver] = {}
    by_id = {g.id: g for g in gateways}
    for chain, members in by_chain.items():
        for gateway_id in chain:
            pending = [r for r in members if r.success is None]
            if not pending:
                break
            gateway = by_id[gateway_id]
            if gateway_id not in drivers:
                config = gateway_config(gateway, state.vault)
                drivers[gateway_id] = make_driver(gateway.type, config, http_session())
            _send_through(drivers[gateway_id], gateway, pending)
    return rounds


def retry_delay(state: SMSState, attempts: int, round_: Round) -> float:
    """Exponential backoff from the base delay, capped, and never sooner than Retry-After."""
    settings = state.settings
    delay = min(settings.retry_base_seconds * 2 ** max(attempts - 1, 0), settings.retry_max_seconds)
    asked = [r.retry_after for _, r in round_.results if r.retry_after]
    return max([delay, *asked])


def _attempt_rows(rounds: Sequence[Round], now: datetime) -> list[dict]:
    return [
        {
            "message_id": r.message.id,
            "gateway_id": gateway.id,
            "gateway_name": gateway.name,
            "started_at": now,
            "duration_ms": result.duration_ms,
            "ok": result.ok,
            "retryable": result.retryable,
            "http_status": result.http_status,
            "request_summary": result.request_summary,
            "response_excerpt": result.response_excerpt,
            "error": result.error,
        }
        for r in rounds
        for gateway, result in r.results
    ]


def settle(
    state: SMSState, rounds: Sequence[Round], now: datetime
) -> dict[datetime, tuple[str, list[int]]]:
    """Write attempts and new statuses in bulk; returns (job id, ids) to retry by due time."""
    table = MESSAGES
    sent: list[dict[str, Any]] = []
    retry: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    retries: dict[datetime, list[int]] = defaultdict(list)
    for r in rounds:
        message = r.message
        attempts = message.attempts + 1
        row: dict[str, Any] = {"b_id": message.id, "attempts": attempts}
        if (won := r.success) is not None:
            gateway, result = won
            sent.append(
                {**row, "gateway_id": gateway.id, "provider_message_id": result.provider_id}
            )
            continue
        error = r.summary() or (
            "No enabled gateway serves this location."
            if message.location
            else "No enabled gateway."
        )
        # Whole seconds: RQ's scheduler keeps whole-second times, and the job must not find
        # its row not yet due.
        due = (now + timedelta(seconds=retry_delay(state, attempts, r) + 1)).replace(microsecond=0)
        retryable = any(result.retryable for _, result in r.results)
        if retryable and due < message.expires_at:
            retries[due].append(message.id)
            retry.append({**row, "next_attempt_at": due, "last_error": error})
        else:
            if retryable:
                error += " (no time left to retry before the message expires)"
            failed.append({**row, "last_error": error})
    if attempts_rows := _attempt_rows(rounds, now):
        state.session.execute(insert(MessageAttempt), attempts_rows)
    owned = and_(table.c.id == bindparam("b_id"), table.c.status == Status.SENDING)
    released = {"claim_token": None, "claimed_until": None}
    groups: tuple[tuple[list[dict[str, Any]], dict[str, Any]], ...] = (
        (sent, {"status": Status.SENT, "sent_at": now, "last_error": None}),
        (retry, {"status": Status.QUEUED}),
        (failed, {"status": Status.FAILED, "failed_at": now}),
    )
    job_ids = {due: outbox.new_job_id() for due in retries}
    for entry in retry:
        entry["job_id"] = job_ids[entry["next_attempt_at"]]
    for params, values in groups:
        if params:
            columns: dict[str, Any] = {k: bindparam(k) for k in params[0] if k != "b_id"}
            state.session.execute(
                update(table).where(owned).values(**values, **released, **columns), params
            )
    state.session.commit()
    return {due: (job_ids[due], ids) for due, ids in retries.items()}


def release(session: Session, *criteria: Any, **values: Any) -> int:
    """End the claim on ``sending`` rows matching ``criteria``, setting ``values``; commits."""
    result: CursorResult[Any] = session.execute(  # type: ignore[assignment]  # an UPDATE
        update(Message)
        .where(Message.status == Status.SENDING, *criteria)
        .values(claim_token=None, claimed_until=None, **values)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return result.rowcount or 0


def expire(session: Session, messages: Sequence[Message], now: datetime) -> None:
    """Fail claimed messages whose time is up without trying them (an OTP nobody can use)."""
    release(
        session,
        Message.id.in_([m.id for m in messages]),
        status=Status.FAILED,
        failed_at=now,
        last_error="Expired before it could be sent.",
    )


def log_attempts(rounds: Sequence[Round]) -> None:
    """Debug logging switched on in the settings: every request and answer, secrets masked."""
    for r in rounds:
        for gateway, result in r.results:
            log.info(
                "message %s via %s: %s in %d ms, HTTP %s %s\n%s\n--- answer ---\n%s",
                r.message.id,
                gateway.name,
                "ok" if result.ok else "failed",
                result.duration_ms,
                result.http_status,
                result.error,
                result.request_summary,
                result.response_excerpt,
            )


def deliver(state: SMSState, ids: Sequence[int]) -> dict[str, int]:
    """Claim, send and settle the messages ``ids``; returns counts for the job result/logs."""
    session = state.session
    messages = claim(session, ids, state.settings.lease_seconds)
    if not messages:
        return {"claimed": 0}
    now = utcnow()
    expired = [m for m in messages if m.expires_at <= now]
    live = [m for m in messages if m.expires_at > now]
    if expired:
        expire(session, expired, now)
    gateways = list(session.scalars(Gateway.in_order()))
    rounds = run_rounds(state, live, gateways)
    if runtime.current(state).debug_logging:
        log_attempts(rounds)
    retries = settle(state, rounds, utcnow())
    for due, (job_id, retry_ids) in retries.items():
        outbox.enqueue(state.queue, job_id, retry_ids, at=due.replace(tzinfo=UTC))
    sent = sum(1 for r in rounds if r.success)
    return {
        "claimed": len(messages),
        "sent": sent,
        "expired": len(expired),
        "retry": sum(len(i) for _, i in retries.values()),
    }
