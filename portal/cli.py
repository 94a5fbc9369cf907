"""``flask portal ...``: demo data, admins and vouchers of the portal.

Each command first says which database it works on (password masked): with settings from
``instance/config.py`` and ``FLASK_``-prefixed variables, it is easy to be on the wrong one.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

import click
import phonenumbers
from flask.cli import with_appcontext
from sqlalchemy import func, select

from sms_ext import Gateway
from sms_ext.connections import database_text
from sms_ext.state import get_state

from .extensions import db, sms
from .models import Admin, Location, SplashPage
from .vouchers import VoucherError
from .vouchers.durations import parse_duration
from .vouchers.generate import MAX_COUNT, MAX_DEVICES, MAX_VALID_DAYS, BatchSpec, generate_batch

DEMO_SLUG = "demo"
DEMO_GATEWAY = "Demo sandbox (no real SMS)"
DEMO_ADMIN = "admin"
RESET_HINT = f"new password: flask --app wsgi portal create-admin {DEMO_ADMIN}"
DEMO_TERMS = (
    "Free Wi-Fi for guests of Demo Café, offered as is, without any guarantee.\n"
    "Use it lawfully and fairly: no illegal content, no attacks, no heavy downloads.\n"
    "We keep your phone number and the time and device of each login, as the law requires."
)


@dataclass
class SeedReport:
    """What ``seed_demo`` did, line by line, and the admin password when it set one."""

    lines: list[str] = field(default_factory=list)
    password: str | None = None


def seed_demo(region: str = "ZA", password: str | None = None) -> SeedReport:
    """Create what the demo needs, keeping whatever already exists; commits.

    A sandbox gateway is added only when there is no gateway at all, so a real one imported
    by the user is never shadowed. The admin's password is set when the admin is created, or
    when ``password`` is given.
    """
    region = region.strip().upper()
    if not phonenumbers.country_code_for_region(region):
        raise ValueError(f"{region!r} is not a two-letter region phonenumbers knows (e.g. ZA).")
    report = SeedReport()
    session = db.session

    location = session.scalar(select(Location).where(Location.slug == DEMO_SLUG))
    if location is None:
        location = Location(name="Demo Café", slug=DEMO_SLUG, timezone="UTC", region=region)
        session.add(location)
        report.lines.append(f"Created location 'Demo Café' (/{DEMO_SLUG}, region {region}).")
    else:
        report.lines.append(f"Location /{DEMO_SLUG} exists (region {location.region}).")
    if location.splash_page is None:
        location.splash_page = SplashPage(
            title="Free Wi-Fi at Demo Café", terms=DEMO_TERMS, otp_enabled=True
        )
        report.lines.append("Created its splash page (SMS code on).")

    if not session.scalar(select(func.count()).select_from(Gateway)):
        sms.save_gateway({"name": DEMO_GATEWAY, "type": "sandbox"}, commit=False)
        report.lines.append(f"Created gateway {DEMO_GATEWAY!r}: messages go to /demo/inbox.")
    else:
        report.lines.append("Gateways exist: none added.")

    admin = session.scalar(select(Admin).where(Admin.username == DEMO_ADMIN))
    if admin is None or password:
        if admin is None:
            admin = Admin(username=DEMO_ADMIN)
            session.add(admin)
        report.password = password or secrets.token_urlsafe(12)
        admin.set_password(report.password)
        report.lines.append(f"Admin {DEMO_ADMIN!r}: password set.")
    else:
        report.lines.append(f"Admin {DEMO_ADMIN!r} exists: password unchanged.")
    session.commit()
    return report


def _say_database() -> None:
    click.echo(f"Database: {database_text(get_state())}", err=True)


@click.group("portal", help="Demo data, admins and vouchers of the portal.")
def portal_cli() -> None:
    pass


@portal_cli.command("seed-demo")
@click.option(
    "--region", default="ZA", show_default=True, help="Region for numbers typed without +."
)
@click.option("--password", default=None, help="Set this admin password (default: random).")
@with_appcontext
def seed_demo_command(region: str, password: str | None) -> None:
    """Create the demo location, splash page, sandbox gateway and admin (idempotent)."""
    _say_database()
    try:
        report = seed_demo(region, password)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--region") from None
    for line in report.lines:
        click.echo(line)
    if report.password and not password:
        click.echo(
            f"Admin login: {DEMO_ADMIN} / {report.password}  (shown once: note it; {RESET_HINT})"
        )


@portal_cli.command("create-admin")
@click.argument("username")
@click.password_option(help="The password (asked twice when not given).")
@with_appcontext
def create_admin_command(username: str, password: str) -> None:
    """Create an admin, or set a new password for an existing one (which ends their sessions)."""
    _say_database()
    username = username.strip()
    if not username or len(username) > 80:
        raise click.BadParameter("1 to 80 characters.", param_hint="USERNAME")
    if len(password) < 10:
        raise click.BadParameter("at least 10 characters.", param_hint="--password")
    admin = db.session.scalar(select(Admin).where(Admin.username == username))
    created = admin is None
    if created:
        admin = Admin(username=username)
        db.session.add(admin)
    admin.set_password(password)
    db.session.commit()
    click.echo(f"Admin {username!r} {'created' if created else 'password changed'}.")


@portal_cli.group("vouchers", help="Wi-Fi vouchers.")
def vouchers_cli() -> None:
    pass


@vouchers_cli.command("generate")
@click.option("--count", type=click.IntRange(1, MAX_COUNT), required=True)
@click.option("--duration", required=True, help="Online time from the first login: 90m, 2h, 1d.")
@click.option("--location", "locations", multiple=True, help="Location key (repeatable).")
@click.option("--data-limit", type=click.IntRange(1), default=None, help="MB (default: none).")
@click.option("--devices", type=click.IntRange(1, MAX_DEVICES), default=1, show_default=True)
@click.option("--valid-days", type=click.IntRange(1, MAX_VALID_DAYS), default=30, show_default=True)
@click.option("--batch", default="", help="Batch label (default: date and time).")
@with_appcontext
def vouchers_generate_command(
    count: int,
    duration: str,
    locations: tuple[str, ...],
    data_limit: int | None,
    devices: int,
    valid_days: int,
    batch: str,
) -> None:
    """Generate a batch of vouchers and print their codes, one per line."""
    _say_database()
    try:
        minutes = parse_duration(duration)
    except VoucherError as exc:
        raise click.BadParameter(str(exc), param_hint="--duration") from None
    spec = BatchSpec(count, minutes, data_limit, devices, valid_days, list(locations), batch)
    try:
        vouchers = generate_batch(spec)
    except VoucherError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(f"Batch {vouchers[0].batch!r}: {len(vouchers)} vouchers.", err=True)
    for voucher in vouchers:
        click.echo(voucher.code)
