"""Turn what a guest types into an E.164 number we are willing to text, or say why not.

Every OTP we send costs money and SMS pumping fraud targets exactly this kind of form, so the
policy is strict: the number must be valid (not merely the right length), a mobile unless the
operator allows landlines, never a premium-rate, shared-cost, UAN or personal number, and
optionally from an allowed set of regions. Errors carry a machine ``code`` and a sentence a
guest understands.

Only the core ``phonenumbers`` module is imported: ``phonenumbers.geocoder`` would add about
100 MB to every worker, so country names come from a small table and fall back to ISO codes.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Collection
from typing import NamedTuple

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType, ValidationResult

from ..errors import PhoneErrorCode, PhoneNumberError
from ..i18n import gettext, territory_name
from .number_types import region_and_type

MAX_INPUT_LENGTH = 32
"""Longer input is rejected before any parsing: no real number with separators needs more."""
KNOWN_NUMBERS = 4096
"""Valid numbers whose facts this process remembers (see :func:`normalize_phone`)."""

# Separators people type or paste: whitespace (including no-break spaces), dots, dashes (ASCII
# and Unicode), parentheses and slashes ("0151/2345678" is common in Germany).
_SEPARATORS = re.compile(r"[\s.\-\u2010-\u2015\u2212()/]+")
_DIGITS_ONLY = re.compile(r"\+?[0-9]+")

_MOBILE_TYPES = frozenset({PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE})
# Revenue-sharing ranges are what SMS pumping fraud sends to: never text them. Personal numbers
# (UK 070) forward anywhere at a premium and are a known fraud vehicle too.
_NEVER_TYPES = frozenset(
    {
        PhoneNumberType.PREMIUM_RATE,
        PhoneNumberType.SHARED_COST,
        PhoneNumberType.UAN,
        PhoneNumberType.PERSONAL_NUMBER,
    }
)

_COUNTRY_NAMES = {
    "001": "international networks",
    "AE": "the United Arab Emirates",
    "AR": "Argentina",
    "AT": "Austria",
    "AU": "Australia",
    "BE": "Belgium",
    "BR": "Brazil",
    "BW": "Botswana",
    "CA": "Canada",
    "CH": "Switzerland",
    "CL": "Chile",
    "CN": "China",
    "CO": "Colombia",
    "CZ": "Czechia",
    "DE": "Germany",
    "DK": "Denmark",
    "EG": "Egypt",
    "ES": "Spain",
    "FI": "Finland",
    "FR": "France",
    "GB": "the United Kingdom",
    "GG": "Guernsey",
    "GH": "Ghana",
    "GR": "Greece",
    "HU": "Hungary",
    "ID": "Indonesia",
    "IE": "Ireland",
    "IL": "Israel",
    "IM": "the Isle of Man",
    "IN": "India",
    "IT": "Italy",
    "JE": "Jersey",
    "JP": "Japan",
    "KE": "Kenya",
    "KR": "South Korea",
    "LS": "Lesotho",
    "LU": "Luxembourg",
    "MA": "Morocco",
    "MU": "Mauritius",
    "MX": "Mexico",
    "MY": "Malaysia",
    "MZ": "Mozambique",
    "NA": "Namibia",
    "NG": "Nigeria",
    "NL": "the Netherlands",
    "NO": "Norway",
    "NZ": "New Zealand",
    "PH": "the Philippines",
    "PL": "Poland",
    "PT": "Portugal",
    "RO": "Romania",
    "SA": "Saudi Arabia",
    "SE": "Sweden",
    "SG": "Singapore",
    "SZ": "Eswatini",
    "TH": "Thailand",
    "TR": "Türkiye",
    "TZ": "Tanzania",
    "UG": "Uganda",
    "US": "the United States",
    "VN": "Vietnam",
    "ZA": "South Africa",
    "ZM": "Zambia",
    "ZW": "Zimbabwe",
}


def country_name(region: str) -> str:
    """A name for a region code, for guest-facing text; the ISO code when we have none.

    In the current locale when the app translates (Flask-Babel, CLDR names), else English from
    a small table instead of phonenumbers' geocoder, which costs about 100 MB per process.
    """
    code = region.upper()
    return territory_name(code, _COUNTRY_NAMES.get(code, code))


def _country(region: str | None) -> str | None:
    """A name for messages, None if the region is unknown."""
    if region is None or region == phonenumbers.UNKNOWN_REGION:
        return None
    return country_name(region)


def _length_error(code: PhoneErrorCode, region: str | None) -> PhoneNumberError:
    """A length or validity refusal naming the country when it is known (" for Germany.")."""
    name = _country(region)
    if code == "too_short":
        text = (
            gettext("This number is too short for %(country)s.", country=name)
            if name
            else gettext("This number is too short.")
        )
    elif code == "too_long":
        text = (
            gettext("This number is too long for %(country)s.", country=name)
            if name
            else gettext("This number is too long.")
        )
    elif name:
        text = gettext("This number has the wrong number of digits for %(country)s.", country=name)
    else:
        text = gettext("This number has the wrong number of digits.")
    return PhoneNumberError(code, text)


def _compact(raw: str) -> str:
    """Drop separators, turn any Unicode decimal digit into ASCII and a leading 00 into +."""
    text = _SEPARATORS.sub("", raw)
    text = "".join(str(unicodedata.decimal(ch)) if ch.isdecimal() else ch for ch in text)
    return "+" + text[2:] if text.startswith("00") else text


def _parse(compact: str, default_region: str | None) -> phonenumbers.PhoneNumber:
    """Parse, translating phonenumbers' exceptions into guest-facing errors.

    ``compact`` is already digits with an optional leading +, so NOT_A_NUMBER can only mean
    too few digits.
    """
    try:
        return phonenumbers.parse(compact, default_region)
    except NumberParseException as exc:
        if exc.error_type == NumberParseException.TOO_LONG:
            raise _length_error("too_long", None) from exc
        if exc.error_type != NumberParseException.INVALID_COUNTRY_CODE:
            raise _length_error("too_short", None) from exc
        if compact.startswith("+"):
            raise PhoneNumberError(
                "invalid_country_code", gettext("This country code does not exist.")
            ) from exc
        raise _missing_country_code() from exc


def _missing_country_code() -> PhoneNumberError:
    return PhoneNumberError(
        "invalid_country_code",
        gettext("Please include your country code, starting with + (for example +49 or +1)."),
    )


def _check_valid(number: phonenumbers.PhoneNumber) -> tuple[str | None, int]:
    """The number's region and type, once it is valid. Length problems get specific messages
    first: ``is_valid_number`` alone only says no.

    A number is valid exactly when phonenumbers finds it a type (``is_valid_number`` is
    ``number_type(...) != UNKNOWN`` in its own code): asking for the type once instead of
    both halves the work a campaign of 100,000 numbers spends here, and
    :func:`~.number_types.region_and_type` answers both questions in one pass.
    """
    reason = phonenumbers.is_possible_number_with_reason(number)
    region = phonenumbers.region_code_for_country_code(number.country_code or 0)
    if reason in (ValidationResult.TOO_SHORT, ValidationResult.IS_POSSIBLE_LOCAL_ONLY):
        raise _length_error("too_short", region)
    if reason == ValidationResult.TOO_LONG:
        raise _length_error("too_long", region)
    if reason == ValidationResult.INVALID_LENGTH:
        raise _length_error("invalid", region)
    number_region, number_type = region_and_type(number)
    if number_type == PhoneNumberType.UNKNOWN:
        name = _country(region)
        text = (
            gettext("This is not a valid phone number for %(country)s.", country=name)
            if name
            else gettext("This is not a valid phone number.")
        )
        raise PhoneNumberError("invalid", text)
    return number_region, number_type


def _check_type(number_type: int, allow_fixed_line: bool) -> None:
    """Mobiles always pass; revenue-sharing ranges never; anything else only if allowed."""
    if number_type in _MOBILE_TYPES:
        return
    if number_type in _NEVER_TYPES:
        raise PhoneNumberError(
            "not_mobile",
            gettext("This number cannot receive text messages. Please use a mobile number."),
        )
    if not allow_fixed_line:
        raise PhoneNumberError(
            "not_mobile",
            gettext("This does not look like a mobile number. Please use a mobile number."),
        )


class _Facts(NamedTuple):
    """What the policy checks need of a number that ``phonenumbers`` found valid."""

    region: str | None
    number_type: int
    number: phonenumbers.PhoneNumber
    """The parsed number, for :func:`readable` (never changed)."""


_known: dict[str, _Facts] = {}
"""Facts of valid numbers by E.164, oldest first: a guest's number is checked again when its
code is queued (and an admin's test number on every send), and parsing costs far more than the
policy checks. The facts come from the metadata alone, so they never go stale in a process."""
_known_lock = threading.Lock()


def _facts(compact: str, region_hint: str | None) -> tuple[str, _Facts]:
    """The E.164 form and the facts of a valid number; parsed unless already known."""
    known = _known.get(compact)
    if known is not None:  # only an E.164 string is a key, and it parses to itself
        return compact, known
    number = _parse(compact, region_hint)
    region, number_type = _check_valid(number)
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    facts = _Facts(region, number_type, number)
    with _known_lock:
        if len(_known) >= KNOWN_NUMBERS:
            del _known[next(iter(_known))]
        _known[e164] = facts
    return e164, facts


NON_GEOGRAPHIC = "001"
"""phonenumbers' region of the global ranges: +800 freephone, +808 shared cost, +870 Inmarsat,
+878 personal, +881 satellite phones, +882/+883 international networks, +888, +979 premium."""


def normalize_phone(
    raw: str,
    *,
    default_region: str | None = None,
    allowed_regions: Collection[str] = (),
    allow_fixed_line: bool = False,
    allow_international_networks: bool = True,
) -> str:
    """Validate ``raw`` and return it in E.164 (``+4915123456789``) or raise PhoneNumberError.

    ``default_region`` (ISO code) lets guests type national numbers (``01512 3456789``);
    without it a leading ``+`` or ``00`` is required. ``allowed_regions`` (ISO codes, any case),
    when non-empty, limits the region the number belongs to: Jersey mobiles (+44 7797) are
    region JE, not GB. ``allow_fixed_line`` also accepts landlines, VoIP, toll-free and other
    non-mobile types for gateways that can text them; premium-rate, shared-cost, UAN and
    personal numbers are always refused. ``allow_international_networks=False`` refuses the
    global ranges (satellite phones, international networks: :data:`NON_GEOGRAPHIC`), which
    pumping fraud favours and which phonenumbers reports as mobiles; the guest-code policy
    passes ``SMS_OTP_ALLOW_INTERNATIONAL_NETWORKS`` here, an admin's own sends accept them.
    """
    text = raw.strip()
    if not text:
        raise PhoneNumberError("empty", gettext("Please enter your phone number."))
    if len(text) > MAX_INPUT_LENGTH:
        raise _length_error("too_long", None)
    # phonenumbers would read letters as keypad digits ("abc" -> "222"): refuse them first.
    if any(ch.isalpha() for ch in text):
        raise PhoneNumberError("letters", gettext("A phone number can only contain digits."))
    compact = _compact(text)
    if not _DIGITS_ONLY.fullmatch(compact):
        raise PhoneNumberError("unparseable", gettext("This does not look like a phone number."))
    region_hint = default_region.upper() if default_region else None
    if not compact.startswith("+") and region_hint is None:
        raise _missing_country_code()

    e164, (region, number_type, _number) = _facts(compact, region_hint)
    if region == NON_GEOGRAPHIC and not allow_international_networks:
        raise PhoneNumberError(
            "region_not_allowed",
            gettext("Satellite phones and international network numbers are not accepted here."),
        )
    allowed = {code.upper() for code in allowed_regions}
    if allowed and region not in allowed:
        name = _country(region)
        text = (
            gettext("Numbers from %(country)s are not accepted here.", country=name)
            if name
            else gettext("Numbers from this country are not accepted here.")
        )
        raise PhoneNumberError("region_not_allowed", text)
    _check_type(number_type, allow_fixed_line)
    return e164


def _parsed(e164: str) -> phonenumbers.PhoneNumber:
    known = _known.get(e164)
    return known.number if known is not None else phonenumbers.parse(e164)


def calling_code(e164: str) -> str:
    """The country calling code of an E.164 number, as digits (``"27"``)."""
    return str(_parsed(e164).country_code)


def readable(e164: str) -> str:
    """An E.164 number as people write it internationally (``+27 83 123 4567``)."""
    return phonenumbers.format_number(_parsed(e164), phonenumbers.PhoneNumberFormat.INTERNATIONAL)
