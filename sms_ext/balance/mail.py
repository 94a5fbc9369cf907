"""Alert emails through Flask-Mail (``MAIL_SERVER``, ``MAIL_PORT``, ``MAIL_USE_TLS``,
``MAIL_USERNAME``, ``MAIL_PASSWORD``, ``MAIL_DEFAULT_SENDER``).

Sent from worker jobs only: an SMTP server that is slow or down must never hold up a page.
"""

from __future__ import annotations

from flask import Flask, current_app
from flask_mail import Mail, Message

from ..gateways.balance_checks import BalanceCheck
from ..models import Gateway
from ..state import SMSState
from .levels import Level

HEADLINES = {
    Level.OK: "balance recovered",
    Level.MIN: "balance below the minimum",
    Level.HALF: "balance below half the minimum",
    Level.ZERO: "balance at zero",
    Level.UNKNOWN: "balance unknown",
}


def init_mail(app: Flask) -> None:
    """Give the app a Flask-Mail instance unless the host made its own."""
    if "mail" not in app.extensions:
        Mail(app)


def _amount(gateway: Gateway, check: BalanceCheck) -> str:
    if gateway.balance is None:
        return "not known"
    currency = check.currency or gateway.currency or ""
    return f"{gateway.balance.normalize():f} {currency}".strip()


def gateway_link(state: SMSState, gateway: Gateway) -> str | None:
    """The gateway's admin page under ``SMS_PUBLIC_URL`` (no link without it: a worker has no
    request to take the host name from)."""
    public = state.settings.public_url
    if not public:
        return None
    return f"{public}{state.settings.admin_url_prefix}/gateways/{gateway.id}/"


def compose(state: SMSState, gateway: Gateway, level: Level, check: BalanceCheck) -> Message:
    """The alert for ``gateway`` reaching ``level``: subject and body name the gateway, the
    level, the balance and the minimum."""
    headline = HEADLINES[level]
    amount = _amount(gateway, check)
    minimum = f"{check.minimum.normalize():f}" if check.minimum is not None else "none set"
    subject = f"[SMS] {gateway.name}: {headline}"
    if level != Level.UNKNOWN:
        subject += f" ({amount})"
    lines = [
        f"Gateway: {gateway.name}",
        f"Level: {headline}",
        f"Balance: {amount}",
        f"Minimum: {minimum}",
    ]
    if level == Level.UNKNOWN:
        lines.append(f"Checks failed in a row: {gateway.balance_failures}")
        lines.append(f"Last error: {gateway.balance_error or 'unknown'}")
    if gateway.balance_checked_at is not None:
        lines.append(f"Checked at: {gateway.balance_checked_at:%Y-%m-%d %H:%M} UTC")
    if link := gateway_link(state, gateway):
        lines.append(f"Gateway page: {link}")
    return Message(subject=subject, recipients=list(check.emails), body="\n".join(lines) + "\n")


def send(message: Message) -> None:
    """Hand ``message`` to the SMTP server; raises on any failure (the caller retries)."""
    if not (message.sender or current_app.config.get("MAIL_DEFAULT_SENDER")):
        raise RuntimeError("MAIL_DEFAULT_SENDER is not set: alert emails need a sender.")
    current_app.extensions["mail"].send(message)
