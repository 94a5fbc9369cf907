"""Reading the location settings form: every field checked, every problem named by field.

Kept apart from the views so the rules (what a key, a region, a timezone or a brand colour may
be) read in one place, and so a refused form changes nothing: :func:`read_location_form`
only returns values, the view writes them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from zoneinfo import available_timezones

import phonenumbers
from werkzeug.datastructures import MultiDict

from sms_ext.checks import parse_id, text_problem

from ..i18n import LANGUAGE_CHOICES

SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
"""A location key: the splash page URL ``/s/<key>/`` and the gateways' location key."""
HEX_COLOUR = re.compile(r"#[0-9a-fA-F]{6}")
MIN_CONTRAST = 3.0
"""Brand colour against the white button text: WCAG's minimum for large text and controls."""
LIMITS = {"name": 120, "slug": 80, "title": 200, "text": 2_000, "terms": 20_000}
LABELS = {
    "name": "Name",
    "slug": "Key",
    "title": "Page title",
    "text": "Welcome text",
    "terms": "Terms of use",
}
MULTILINE = ("text", "terms")


@cache
def timezones() -> frozenset[str]:
    """Every IANA timezone name this machine knows (read once: it scans the tz database)."""
    return frozenset(available_timezones())


@dataclass
class LocationValues:
    """A checked location settings form."""

    name: str
    slug: str
    region: str
    timezone: str
    language: str
    title: str
    text: str
    terms: str
    brand_color: str
    otp_enabled: bool
    gateway_ids: list[int]


def _contrast_with_white(colour: str) -> float:
    """WCAG contrast ratio of ``#rrggbb`` against white."""

    def channel(hex_pair: str) -> float:
        value = int(hex_pair, 16) / 255
        return value / 12.92 if value <= 0.03928 else ((value + 0.055) / 1.055) ** 2.4

    red, green, blue = (channel(colour[i : i + 2]) for i in (1, 3, 5))
    luminance = 0.2126 * red + 0.7152 * green + 0.0722 * blue
    return 1.05 / (luminance + 0.05)


def _texts(form: MultiDict[str, str], errors: dict[str, str]) -> dict[str, str]:
    values = {}
    for field, limit in LIMITS.items():
        raw = form.get(field, "")
        multiline = field in MULTILINE
        value = raw.strip() if multiline else " ".join(raw.split())
        if problem := text_problem(value, LABELS[field], limit, multiline=multiline):
            errors[field] = problem
        elif not value and field in ("name", "slug", "title"):
            errors[field] = f"{LABELS[field]} is required."
        values[field] = value.replace("\r\n", "\n")
    slug = values["slug"]
    if "slug" not in errors and not SLUG.fullmatch(slug):
        errors["slug"] = (
            "Key may hold only lowercase letters, digits and single dashes between them "
            "(like main-street)."
        )
    return values


def _choice(form: MultiDict[str, str], errors: dict[str, str]) -> dict[str, str]:
    region = form.get("region", "").strip().upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        errors["region"] = "Region must be a two-letter country code, like ZA or GB."
    timezone = form.get("timezone", "").strip()
    if timezone not in timezones():
        errors["timezone"] = "Timezone must be an IANA name, like Africa/Johannesburg or UTC."
    language = form.get("language", "")
    if language not in dict(LANGUAGE_CHOICES):
        errors["language"] = "Choose one of the listed languages."
    colour = form.get("brand_color", "").strip()
    if not HEX_COLOUR.fullmatch(colour):
        errors["brand_color"] = "Brand colour must be #rrggbb, like #2563eb."
    elif _contrast_with_white(colour) < MIN_CONTRAST:
        errors["brand_color"] = (
            "This colour is too light for the white button text: choose a darker one."
        )
    return {
        "region": region,
        "timezone": timezone,
        "language": language,
        "brand_color": colour.lower(),
    }


def _gateway_ids(form: MultiDict[str, str], errors: dict[str, str]) -> list[int]:
    ids = []
    for raw in form.getlist("gateways"):
        gateway_id = parse_id(raw)
        if gateway_id is None:
            errors["gateways"] = "Choose gateways from the list."
            return []
        ids.append(gateway_id)
    return ids


def read_location_form(form: MultiDict[str, str]) -> tuple[LocationValues, dict[str, str]]:
    """The form's values, cleaned, and the problems by field name (empty when it can be saved).

    Uniqueness of the key needs the database: the view checks it.
    """
    errors: dict[str, str] = {}
    values = LocationValues(
        **_texts(form, errors),
        **_choice(form, errors),
        otp_enabled=bool(form.get("otp_enabled")),
        gateway_ids=_gateway_ids(form, errors),
    )
    return values, errors
