"""Alert emails through Flask-Mail (``MAIL_SERVER``, ``MAIL_PORT``, ``MAIL_USE_TLS``,
``MAIL_USERNAME``, ``MAIL_PASSWORD``, ``MAIL_DEFAULT_SENDER``).

Sent from worker jobs only: an SMTP server that is slow or down must never hold up a page.
"""

from __future__ import annotations

import smtplib

from flask import Flask, current_app
from flask_mail import Connection, Mail, Message

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


SMTP_TIMEOUT = 20.0
"""Seconds an SMTP connect or answer may take. Flask-Mail sets none, so a server that accepts
the connection and never answers would hold a worker (and the SMS it should send) forever."""


class _TimedConnection(Connection):
    """Flask-Mail's connection with a timeout: the same steps as its ``configure_host``
    (SSL or plain, STARTTLS, login), each bounded by :data:`SMTP_TIMEOUT`."""

    def configure_host(self) -> smtplib.SMTP | smtplib.SMTP_SSL:
        mail = self.mail
        kind = smtplib.SMTP_SSL if mail.use_ssl else smtplib.SMTP
        host = kind(mail.server, mail.port, timeout=SMTP_TIMEOUT)
        host.set_debuglevel(int(mail.debug))
        if mail.use_tls:
            host.starttls()
        if mail.username and mail.password:
            host.login(mail.username, mail.password)
        return host


def send(message: Message) -> None:
    """Hand ``message`` to the SMTP server through the app's Flask-Mail settings (the host's
    instance or ours); raises on any failure or timeout (the caller retries)."""
    if not (message.sender or current_app.config.get("MAIL_DEFAULT_SENDER")):
        raise RuntimeError("MAIL_DEFAULT_SENDER is not set: alert emails need a sender.")
    with _TimedConnection(current_app.extensions["mail"]) as connection:
        connection.send(message)
