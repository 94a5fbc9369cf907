"""``flask sms ...``: gateways import/export, send, worker, sweep."""

from __future__ import annotations

import json
import logging
import sys
import time

import click
from flask.cli import with_appcontext

from .errors import GatewayConfigError, MessageError, PhoneNumberError
from .gateways import store as gateway_store
from .messages import outbox, sweeper
from .models import Status
from .state import get_state

FINAL = {Status.SENT, Status.DELIVERED, Status.UNDELIVERED, Status.FAILED}


@click.group("sms", help="SMS gateways, sending and workers.")
def sms_cli() -> None:
    pass


@sms_cli.group("gateways", help="Import and export gateway configurations (JSON).")
def gateways_cli() -> None:
    pass


@gateways_cli.command("import")
@click.argument("file", type=click.File("r", encoding="utf-8"))
@with_appcontext
def import_command(file) -> None:
    """Create or update (by name) the gateways in FILE, all or nothing."""
    state = get_state()
    try:
        items = json.load(file)
    except json.JSONDecodeError as exc:
        raise click.ClickException(f"{file.name} is not valid JSON: {exc}") from None
    try:
        saved = gateway_store.import_gateways(state.session, state.vault, items)
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
    click.echo(json.dumps(gateway_store.export_gateways(get_state().session), indent=2))


@sms_cli.command("send")
@click.argument("phone")
@click.argument("message")
@click.option("--location", default=None, help="Location key (selects its gateways).")
@click.option("--wait", type=float, default=0, help="Seconds to wait for the final status.")
@with_appcontext
def send_command(phone: str, message: str, location: str | None, wait: float) -> None:
    """Queue MESSAGE to PHONE; with --wait, exit non-zero unless it was sent."""
    state = get_state()
    try:
        composed = outbox.compose(state, phone, message, location=location)
        row = outbox.queue_one(state, composed, commit=True)
    except (PhoneNumberError, MessageError) as exc:  # a sentence for the user
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

    It waits out Redis outages; SIGTERM or Ctrl+C stops it after the job at hand.
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
    outcome = sweeper.sweep(get_state())
    click.echo(
        f"recovered {outcome['recovered']} stale send(s), "
        f"re-enqueued {outcome['enqueued']} of {outcome['lost']} lost message(s)"
    )
