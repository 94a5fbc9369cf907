"""The filters of the SMS logs, parsed from the query string into index-friendly predicates.

Each filter becomes a plain predicate an index can serve: ``created_at`` ranges, a phone
prefix as a string range on ``to``, equality on status, kind, location and gateway.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import date, datetime, time, timedelta

from sqlalchemy import ColumnElement

from ..checks import parse_id, text_problem
from ..errors import PhoneNumberError
from ..models import Kind, Message, Status
from ..state import get_state
from ..text.phone import normalize_phone

_PHONE_SEPARATORS = re.compile(r"[\s().\-/]")
_PHONE_DIGITS = re.compile(r"\+?\d+")


@dataclass(frozen=True)
class LogFilter:
    """The filters of the logs table, already validated."""

    status: str | None = None
    kind: str | None = None
    date_from: date | None = None
    date_to: date | None = None
    phone: str | None = None
    """E.164 prefix (``+2783``) or a whole number."""
    location: str | None = None
    gateway: int | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        where: list[ColumnElement[bool]] = []
        if self.status:
            where.append(Message.status == self.status)
        if self.kind:
            where.append(Message.kind == self.kind)
        if self.date_from:
            where.append(Message.created_at >= datetime.combine(self.date_from, time()))
        if self.date_to:
            end = datetime.combine(self.date_to + timedelta(days=1), time())
            where.append(Message.created_at < end)
        if self.phone:
            # A range the (to, created_at) index serves; LIKE alone would not use it on SQLite.
            where.append(Message.to >= self.phone)
            upper = _prefix_upper_bound(self.phone)
            if upper:
                where.append(Message.to < upper)
            where.append(Message.to.startswith(self.phone, autoescape=True))
        if self.location:
            where.append(Message.location == self.location)
        if self.gateway is not None:
            where.append(Message.gateway_id == self.gateway)
        return where

    def query_args(self) -> dict[str, str]:
        """The filters as query parameters, for links that keep them."""
        names = {"date_from": "from", "date_to": "to"}
        return {
            names.get(key, key): str(value)
            for key, value in asdict(self).items()
            if value is not None and value != ""
        }


def _prefix_upper_bound(prefix: str) -> str | None:
    """The smallest string above every number starting with ``prefix`` (digits after ``+``)."""
    body = prefix.rstrip("9")
    if len(body) <= 1:  # "+" or "+999": nothing above within digits
        return None
    return body[:-1] + chr(ord(body[-1]) + 1)


def parse_filters(
    args: Mapping[str, str], gateways: Mapping[int, str]
) -> tuple[LogFilter, list[str]]:
    """Validate the query string; returns the filter and sentences for what was wrong."""
    errors: list[str] = []

    def choice(name: str, allowed: tuple[str, ...], label: str) -> str | None:
        value = args.get(name, "").strip()
        if value and value not in allowed:
            errors.append(f"{label} must be one of: {', '.join(allowed)}.")
            return None
        return value or None

    def day(name: str, label: str) -> date | None:
        value = args.get(name, "").strip()
        if not value:
            return None
        try:
            return date.fromisoformat(value)
        except ValueError:
            errors.append(f"{label} must be a date like 2026-01-31 (got {value[:20]!r}).")
            return None

    status = choice("status", tuple(Status), "Status")
    kind = choice("kind", tuple(Kind), "Type")
    date_from = day("from", "From date")
    date_to = day("to", "To date")
    if date_from and date_to and date_from > date_to:
        errors.append("From date must be on or before the To date.")
    phone = _phone_prefix(args.get("phone", ""), errors)
    location = args.get("location", "").strip() or None
    if location and (problem := text_problem(location, "Location", 80)):
        errors.append(problem)
        location = None
    gateway: int | None = None
    raw_gateway = args.get("gateway", "").strip()
    if raw_gateway:
        gateway = parse_id(raw_gateway)
        if gateway not in gateways:
            errors.append("Gateway: choose one from the list.")
            gateway = None
    flt = LogFilter(status, kind, date_from, date_to, phone, location, gateway)
    return flt, errors


def _phone_prefix(raw: str, errors: list[str]) -> str | None:
    """``+27 83-12`` -> ``+278312``; a national number (``083...``) needs SMS_DEFAULT_REGION."""
    text = _PHONE_SEPARATORS.sub("", raw.strip())
    if not text:
        return None
    if text.startswith("00"):
        text = "+" + text[2:]
    if not _PHONE_DIGITS.fullmatch(text):
        errors.append("Phone must be digits, optionally starting with + (e.g. +2783).")
        return None
    if text.startswith("0"):
        region = get_state().settings.default_region
        if region is not None:
            try:
                return normalize_phone(text, default_region=region, allow_fixed_line=True)
            except PhoneNumberError:
                pass
        errors.append("Phone: type the number in international form, starting with +.")
        return None
    if not text.startswith("+"):
        text = "+" + text
    if len(text) > 16:
        errors.append("Phone must have at most 15 digits.")
        return None
    return text
