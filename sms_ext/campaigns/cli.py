"""``flask sms campaign ...`` and ``flask sms optout ...``: the campaign API from a shell.

Like every ``flask sms`` command: which Redis and database first (on stderr), one sentence
and exit status 1 for what cannot be done (2 for a bad option), never a traceback.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from typing import IO, Any, TypeVar

import click
from flask.cli import with_appcontext

from .. import cli as sms_cli_module  # for announce(); sms_ext.cli adds these groups
from ..errors import CampaignError, PhoneNumberError
from ..state import get_state
from .api import Campaigns, OptOuts

F = TypeVar("F", bound=Callable[..., Any])


def _command(uses_redis: bool = True) -> Callable[[F], F]:
    """Announce the services, run in the app context, and turn refusals into one sentence."""

    def decorate(function: F) -> F:
        @functools.wraps(function)
        @with_appcontext
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            state = get_state()
            sms_cli_module.announce(state, uses_redis=uses_redis)
            try:
                return function(*args, **kwargs)
            except (CampaignError, PhoneNumberError) as exc:
                state.session.rollback()
                raise click.ClickException(str(exc)) from None

        return wrapper  # type: ignore[return-value]

    return decorate


def _moment(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """``--at``: an ISO date and time (``2026-12-24T09:00``, local to the campaign's zone
    unless it carries an offset)."""
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter("must be a date and time such as 2026-12-24T09:00.") from None


@click.group("campaign", help="Mass SMS campaigns: list, preview, start, pause, resume, cancel.")
def campaign_cli() -> None:
    pass


@campaign_cli.command("list")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, help="How many, newest first.")
@_command(uses_redis=False)
def list_command(limit: int) -> None:
    """The newest campaigns with their progress."""
    campaigns = Campaigns()
    rows = campaigns.list(limit=limit)
    if not rows:
        click.echo("No campaigns.")
    for campaign in rows:
        progress = campaigns.progress(campaign.id)
        when = f"{campaign.scheduled_at:%Y-%m-%d %H:%M} UTC" if campaign.scheduled_at else "-"
        click.echo(
            f"#{campaign.id} {campaign.status:<9} {campaign.purpose:<9} {when:<20} "
            f"{progress.done}/{progress.recipients} done, {progress.excluded} excluded  "
            f"{campaign.name}"
        )


@campaign_cli.command("preview")
@click.argument("campaign_id", type=click.IntRange(1))
@_command(uses_redis=False)
def preview_command(campaign_id: int) -> None:
    """Who campaign CAMPAIGN_ID reaches now, what they read, and what it costs."""
    campaigns = Campaigns()
    preview = campaigns.preview(campaigns.spec_of(campaign_id))
    click.echo(f"Recipients: {preview.recipients}")
    click.echo("Excluded: " + ", ".join(f"{k} {v}" for k, v in preview.excluded.items()))
    click.echo(
        f"Parts: {preview.total_parts} in all, {preview.parts_min} to {preview.parts_max} each"
    )
    if preview.estimated_cost is not None:
        click.echo(f"Estimated cost: {preview.estimated_cost} {preview.currency or ''}".rstrip())
    click.echo(f"Timezone: {preview.timezone} (UTC{preview.utc_offset})")
    for sample in preview.samples:
        click.echo(
            f"  {sample.phone or 'sample'} [{sample.encoding}, {sample.parts}]: {sample.text}"
        )
    for problem in preview.problems:
        click.echo(f"Problem: {problem}")


@campaign_cli.command("start")
@click.argument("campaign_id", type=click.IntRange(1))
@click.option("--at", callback=_moment, help="When, e.g. 2026-12-24T09:00 (default: now).")
@_command()
def start_command(campaign_id: int, at: datetime | None) -> None:
    """Schedule campaign CAMPAIGN_ID (now, or --at a local time of its timezone)."""
    campaign = Campaigns().start(campaign_id, at=at)
    click.echo(f"Campaign #{campaign.id} scheduled for {campaign.scheduled_at:%Y-%m-%d %H:%M} UTC")


def _action(name: str, done: str) -> None:
    @campaign_cli.command(name, help=f"{name.capitalize()} campaign CAMPAIGN_ID.")
    @click.argument("campaign_id", type=click.IntRange(1))
    @_command()
    def command(campaign_id: int) -> None:
        campaign = getattr(Campaigns(), name)(campaign_id)
        click.echo(f"Campaign #{campaign.id} {done}: {campaign.status}")


for _name, _done in (("pause", "paused"), ("resume", "resumed"), ("cancel", "cancelled")):
    _action(_name, _done)


@click.group("optout", help="The opt-out list campaigns never reach.")
def optout_cli() -> None:
    pass


@optout_cli.command("add")
@click.argument("phone")
@click.option("--note", default="", help="Why (kept with the entry).")
@_command(uses_redis=False)
def optout_add(phone: str, note: str) -> None:
    """Put PHONE on the opt-out list."""
    added = OptOuts().add(phone, "admin", note)
    click.echo(f"{phone}: {'opted out' if added else 'already on the list'}")


@optout_cli.command("remove")
@click.argument("phone")
@_command(uses_redis=False)
def optout_remove(phone: str) -> None:
    """Take PHONE off the opt-out list."""
    if not OptOuts().remove(phone):
        raise click.ClickException(f"{phone} is not on the opt-out list.")
    click.echo(f"{phone}: removed from the opt-out list")


@optout_cli.command("import")
@click.argument("file", type=click.File("r", encoding="utf-8-sig"))
@_command(uses_redis=False)
def optout_import(file: IO[str]) -> None:
    """Add the numbers of a CSV FILE (its 'phone' column, else the first)."""
    result = OptOuts().import_csv(file)
    click.echo(
        f"Added {result.added}, already listed {result.already}, refused {len(result.invalid)}"
    )
    for line, problem in result.invalid[:20]:
        click.echo(f"  line {line}: {problem}", err=True)
    if len(result.invalid) > 20:
        click.echo(f"  ... and {len(result.invalid) - 20} more", err=True)


@optout_cli.command("list")
@click.option("--search", default="", help="Digits of the number, or a source.")
@click.option("--page", type=click.IntRange(1), default=1)
@_command(uses_redis=False)
def optout_list(search: str, page: int) -> None:
    """The opt-out list, newest first, 50 a page."""
    listed = OptOuts().page(search=search, page=page)
    for entry in listed.items:
        note = f"  {entry.note}" if entry.note else ""
        click.echo(f"{entry.phone}  {entry.source:<6}  {entry.created_at:%Y-%m-%d %H:%M}{note}")
    click.echo(f"Page {listed.page} of {listed.pages}, {listed.total} in all", err=True)
