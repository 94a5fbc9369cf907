"""``flask sms balance check [--gateway NAME]``: check balances now, from a shell or cron.

Runs the checks in this process (no worker needed) and emails any crossing like a worker does.
"""

from __future__ import annotations

import click
from flask.cli import with_appcontext
from sqlalchemy import select

from ..gateways.balance import checkable
from ..gateways.balance_checks import BalanceCheck
from ..models import Gateway
from ..state import get_state
from .run import check_now


@click.group("balance", help="Gateway balances.")
def balance_cli() -> None:
    pass


@balance_cli.command("check")
@click.option("--gateway", "name", default=None, help="Only this gateway (by name).")
@with_appcontext
def check_command(name: str | None) -> None:
    """Check the balance of every gateway with a balance check (or of --gateway NAME).

    Exits with status 1 when a check gave no figure.
    """
    from ..cli import announce  # that module adds this group to ``flask sms``

    state = get_state()
    announce(state, uses_redis=False)
    if name is not None:
        gateway = state.session.scalar(select(Gateway).where(Gateway.name == name))
        if gateway is None:
            raise click.ClickException(f"No gateway named {name!r}.")
        if not checkable(gateway):
            raise click.ClickException(
                f"{name} has no balance check: configure one on its admin page."
            )
        gateways = [gateway]
    else:
        gateways = [
            gateway
            for gateway in state.session.scalars(Gateway.in_order())
            if BalanceCheck.stored(gateway.balance_check).enabled and checkable(gateway)
        ]
        if not gateways:
            click.echo("No gateway has a balance check enabled.")
            return
    failed = 0
    for gateway in gateways:
        readout = check_now(state, gateway)
        if readout.value is None:
            failed += 1
            click.echo(f"{gateway.name}: no balance ({readout.error})")
        else:
            currency = f" {readout.currency}" if readout.currency else ""
            click.echo(f"{gateway.name}: {readout.value.normalize():f}{currency}")
    if failed:
        raise SystemExit(1)
