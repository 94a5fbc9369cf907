"""The database side of delivery: claim rows, keep the claim alive, settle what happened.

A claim is one conditional ``UPDATE ... RETURNING`` that gives the rows a claim token and a
lease; only the holder of the token may settle them, and the lease is renewed while a run is
in progress, so the sweeper never takes rows from a live worker and a late worker never
overwrites what another recorded. Rows are settled as their answers arrive, in small groups:
a crash re-sends at most what was in flight. Failed rounds are retried with exponential
backoff until the message expires; a test send is tried once (see :func:`next_try`).
"""

from __future__ import annotations

import logging
import secrets
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import CursorResult, and_, bindparam, insert, select, update
from sqlalchemy.orm import Session

from ..models import MESSAGES, Kind, Message, MessageAttempt, Status, utcnow
from ..state import SMSState
from . import outbox, receipts
from .routing import Round

log = logging.getLogger("sms_ext")

CLOCK_SKEW = timedelta(seconds=1)
"""A job may run this much before its row's due time (clocks of web, worker and Redis differ)."""


@dataclass(frozen=True)
class Claim:
    """Rows this worker took, and the token that proves it."""

    token: str
    messages: list[Message]


def claim(
    session: Session,
    *,
    lease_seconds: float,
    ids: Sequence[int] | None = None,
    kinds: Collection[str] | None = None,
    limit: int | None = None,
) -> Claim:
    """Take due, queued rows (among ``ids``, or of ``kinds``, at most ``limit``) for this worker;
    a row is claimed only once.

    One conditional ``UPDATE ... RETURNING`` is the lock: two workers running the same ids see
    one winner per row (PostgreSQL re-checks the WHERE after the row lock, SQLite serialises
    writers). Commits.
    """
    now = utcnow()
    due = [Message.status == Status.QUEUED, Message.next_attempt_at <= now + CLOCK_SKEW]
    if ids is not None:
        due.append(Message.id.in_(list(ids)))
    if kinds is not None:
        due.append(Message.kind.in_(list(kinds)))
    if limit is not None:
        # Oldest first; SKIP LOCKED lets PostgreSQL workers take different rows at once.
        chosen = (
            select(Message.id)
            .where(*due)
            .order_by(Message.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        due = [Message.id.in_(chosen.scalar_subquery()), *due]
    token = secrets.token_hex(16)
    claimed = session.scalars(
        update(Message)
        .where(*due)
        .values(
            status=Status.SENDING,
            claim_token=token,
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
    return Claim(token, list(claimed))


def renew(session: Session, token: str, lease_seconds: float) -> int:
    """Extend the lease of every row still held under ``token``; commits. Returns how many."""
    result: CursorResult[Any] = session.execute(  # type: ignore[assignment]  # an UPDATE
        update(MESSAGES)
        .where(MESSAGES.c.claim_token == token, MESSAGES.c.status == Status.SENDING)
        .values(claimed_until=utcnow() + timedelta(seconds=lease_seconds))
    )
    session.commit()
    return result.rowcount or 0


def retry_delay(state: SMSState, attempts: int, round_: Round) -> float:
    """Exponential backoff from the base delay, capped, and never sooner than Retry-After."""
    settings = state.settings
    delay = min(settings.retry_base_seconds * 2 ** max(attempts - 1, 0), settings.retry_max_seconds)
    asked = [r.retry_after for _, r in round_.results if r.retry_after]
    return max([delay, *asked])


TEST_WAIT_MAX = 60.0
"""The longest ``Retry-After`` a test send waits for before its one more try."""
BUSY_STATUSES = (429, 503)
"""Answers whose ``Retry-After`` says "busy, come back then", not "broken"."""


def one_more_test_try_in(attempts: int, round_: Round) -> float | None:
    """Seconds until a failed test send's one more try, or ``None``: fail it now.

    An admin is watching the test's page, and a test must show how the gateway answers now:
    one try, and one more only when the gateway answered 429/503 asking to wait at most a
    minute. Never days of retries, and never another gateway (its chain is its own gateway).
    """
    if attempts > 1:
        return None
    asked = [
        result.retry_after
        for _, result in round_.results
        if result.http_status in BUSY_STATUSES and result.retry_after is not None
    ]
    return max(asked) if asked and max(asked) <= TEST_WAIT_MAX else None


def next_try(
    state: SMSState, message: Message, attempts: int, round_: Round, now: datetime
) -> datetime | None:
    """When to try ``message`` again after the failed round ``round_``, or ``None`` to fail it.

    Whole seconds: RQ's scheduler keeps whole-second times, and the job must not find its row
    not yet due.
    """
    if message.kind == Kind.TEST:
        delay = one_more_test_try_in(attempts, round_)
    elif any(result.retryable for _, result in round_.results):
        delay = retry_delay(state, attempts, round_)
    else:
        delay = None
    if delay is None:
        return None
    return (now + timedelta(seconds=delay + 1)).replace(microsecond=0)


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
    state: SMSState, token: str, rounds: Sequence[Round], now: datetime
) -> dict[datetime, tuple[str, list[int]]]:
    """Write attempts and new statuses in bulk, for the rows still held under ``token``;
    commits, and returns (job id, ids) to retry by due time."""
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
                {
                    **row,
                    "gateway_id": gateway.id,
                    "provider_message_id": result.provider_id,
                    # A guest code is kept (sealed) only while it may still be sent, or when
                    # the sandbox "sent" it: the sandbox's phone is the demo inbox.
                    "code_sealed": message.code_sealed if gateway.type == "sandbox" else None,
                }
            )
            continue
        error = r.summary() or (
            "No enabled gateway serves this location."
            if message.location
            else "No enabled gateway."
        )
        due = next_try(state, message, attempts, r, now)
        if due is not None and due < message.expires_at:
            retries[due].append(message.id)
            retry.append({**row, "next_attempt_at": due, "last_error": error})
        else:
            if due is not None:
                error += " (no time left to retry before the message expires)"
            failed.append({**row, "last_error": error})
    if attempts_rows := _attempt_rows(rounds, now):
        state.session.execute(insert(MessageAttempt), attempts_rows)
    owned = and_(
        table.c.id == bindparam("b_id"),
        table.c.status == Status.SENDING,
        table.c.claim_token == token,
    )
    released = {"claim_token": None, "claimed_until": None}
    groups: tuple[tuple[list[dict[str, Any]], dict[str, Any]], ...] = (
        (sent, {"status": Status.SENT, "sent_at": now, "last_error": None}),
        (retry, {"status": Status.QUEUED}),
        (failed, {"status": Status.FAILED, "failed_at": now, "code_sealed": None}),
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
    # Receipts that beat this record waited for it; one stored at this very moment is
    # applied by the sweeper (see receipts.sweep_pending).
    receipts.apply_pending_for(
        state.session, [(e["b_id"], e["gateway_id"], e["provider_message_id"]) for e in sent]
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
        code_sealed=None,
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
