"""``flask sms ...``: gateways import/export, send, worker, sweep.

Every command first says which Redis and database it uses (on stderr, passwords masked, so
``export > file.json`` stays clean), and answers bad input with one sentence on stderr and exit
status 1 (2 for a bad option), never a traceback.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from typing import IO

import click
import phonenumbers
from flask.cli import with_appcontext
from redis.exceptions import RedisError

from .balance.cli import balance_cli
from .campaigns.cli import campaign_cli, optout_cli
from .connections import database_text, redis_text
from .errors import GatewayConfigError, MessageError, PhoneNumberError
from .gateways import store as gateway_store
from .messages import outbox, sweeper
from .models import Status
from .state import SMSState, get_state

FINAL = {Status.SENT, Status.DELIVERED, Status.UNDELIVERED, Status.FAILED}
MAX_WAIT = 3600.0


def announce(state: SMSState, *, uses_redis: bool = True) -> None:
    """One line on stderr: the Redis (when the command uses one) and the database."""
    redis = f"Redis {redis_text(state)}; " if uses_redis else ""
    click.echo(f"Using {redis}database {database_text(state)}", err=True)


@click.group("sms", help="SMS gateways, sending and workers.")
def sms_cli() -> None:
    pass


@sms_cli.group("gateways", help="Import and export gateway configurations (JSON).")
def gateways_cli() -> None:
    pass


def _read_document(file: IO[bytes]) -> object:
    """The JSON document in ``file``, or a sentence saying why there is none."""
    raw = file.read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise click.ClickException(
            f"{file.name} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at position "
            f"{exc.start}); save it as UTF-8 and try again."
        ) from None
    try:
        return json.loads(text)
    except RecursionError:
        raise click.ClickException(
            f"{file.name} is nested too deeply to be a gateway list."
        ) from None
    except ValueError as exc:  # JSONDecodeError, and numbers too long to read
        raise click.ClickException(f"{file.name} is not valid JSON: {exc}") from None


@gateways_cli.command("import")
@click.argument("file", type=click.File("rb"))
@with_appcontext
def import_command(file: IO[bytes]) -> None:
    """Create or update (by name) the gateways in FILE, all or nothing."""
    state = get_state()
    announce(state, uses_redis=False)
    items = _read_document(file)
    try:
        saved = gateway_store.import_gateways(
            state.session,
            state.vault,
            items,  # type: ignore[arg-type]  # any JSON: the store says what is wrong
            deny_private=state.settings.gateway_deny_private,
        )
    except GatewayConfigError as exc:
        state.session.rollback()
        lines = "\n".join(f"  {field}: {message}" for field, message in exc.errors.items())
        raise click.ClickException(f"Nothing imported:\n{lines}") from None
    state.session.commit()
    click.echo(f"Imported {len(saved)} gateway(s): {', '.join(g.name for g in saved)}")


@gateways_cli.command("export")
@with_appcontext
def export_command() -> None:
    """Print every gateway as JSON (secrets left blank)."""
    state = get_state()
    announce(state, uses_redis=False)
    click.echo(json.dumps(gateway_store.export_gateways(state.session), indent=2))


def _seconds(ctx: click.Context, param: click.Parameter, value: float) -> float:
    """``--wait``: a number of seconds from 0 to :data:`MAX_WAIT` (``nan`` passes a range)."""
    if math.isnan(value) or not 0 <= value <= MAX_WAIT:
        raise click.BadParameter(f"must be a number of seconds from 0 to {MAX_WAIT:g}.")
    return value


def _region(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--region``: a region phonenumbers knows (``ZA``, ``de``), as its upper-case code."""
    if value is not None and not phonenumbers.country_code_for_region(value.upper()):
        raise click.BadParameter("must be a two-letter region code such as ZA.")
    return value.upper() if value is not None else None


@sms_cli.command("send")
@click.argument("phone")
@click.argument("message")
@click.option("--location", default=None, help="Location key (selects its gateways).")
@click.option(
    "--region",
    default=None,
    callback=_region,
    help="Two-letter region for a number typed without + (default: SMS_DEFAULT_REGION).",
)
@click.option(
    "--wait",
    type=float,
    default=0,
    callback=_seconds,
    help=f"Seconds (0 to {MAX_WAIT:g}) to wait for the final status.",
)
@with_appcontext
def send_command(
    phone: str, message: str, location: str | None, region: str | None, wait: float
) -> None:
    """Queue MESSAGE to PHONE; with --wait, exit non-zero unless it was sent.

    PHONE may be national (0831234567) when --region or SMS_DEFAULT_REGION says the country.
    """
    state = get_state()
    announce(state)
    try:
        composed = outbox.compose(state, phone, message, location=location, region=region)
        row = outbox.queue_one(state, composed, commit=True)
    except PhoneNumberError as exc:
        hint = ""
        if exc.code == "invalid_country_code" and not (region or state.settings.default_region):
            hint = " For a national number, give --region (or set SMS_DEFAULT_REGION)."
        raise click.ClickException(f"{exc}{hint}") from None
    except MessageError as exc:  # a sentence for the user
        raise click.ClickException(str(exc)) from None
    click.echo(f"Message {row.id} to {row.to}: {row.status}")
    if not wait:
        return
    deadline = time.monotonic() + wait
    while row.status not in FINAL and time.monotonic() < deadline:
        time.sleep(0.2)
        state.session.refresh(row)
    click.echo(
        f"Message {row.id}: {row.status}" + (f" ({row.last_error})" if row.last_error else "")
    )
    if row.status not in (Status.SENT, Status.DELIVERED):
        sys.exit(1)


@sms_cli.command("worker")
@click.option("--burst", is_flag=True, help="Stop when the queues are empty.")
@with_appcontext
def worker_command(burst: bool) -> None:
    """Run an RQ worker (with scheduler and sweeper) for the SMS queues.

    It logs its queues, Redis, database and concurrency when it starts; it waits out Redis
    outages; SIGTERM or Ctrl+C stops it after the job at hand.
    """
    from flask import current_app

    from .messages.worker import RedisOutage, run_worker

    log = logging.getLogger("sms_ext")
    if not log.hasHandlers():  # the host configured no logging: say what the worker does
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    app = current_app._get_current_object()  # type: ignore[attr-defined]  # not the proxy
    try:
        run_worker(app, burst=burst)
    except RedisOutage as exc:  # only in burst mode
        raise click.ClickException(str(exc)) from None


@sms_cli.command("sweep")
@with_appcontext
def sweep_command() -> None:
    """Re-enqueue lost messages and take back stale sends, once."""
    state = get_state()
    announce(state)
    try:
        outcome = sweeper.sweep(state)
    except RedisError as exc:
        state.session.rollback()
        raise click.ClickException(f"Redis is unreachable ({exc}); nothing was swept.") from None
    click.echo(
        f"recovered {outcome['recovered']} stale send(s), "
        f"re-enqueued {outcome['enqueued']} of {outcome['lost']} lost message(s)"
    )


sms_cli.add_command(balance_cli)
sms_cli.add_command(campaign_cli)
sms_cli.add_command(optout_cli)
