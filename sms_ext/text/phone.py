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
from phonenumbers import NumberParseException, PhoneMetadata, PhoneNumberType, ValidationResult

from ..errors import PhoneErrorCode, PhoneNumberError
from ..i18n import gettext, territory_name

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


class _Desc(NamedTuple):
    """One of a region's number descriptions, its pattern compiled."""

    lengths: frozenset[int]
    """The national lengths it allows; empty means any (the general description decides)."""
    pattern: re.Pattern[str]


def _desc(desc: phonenumbers.PhoneNumberDesc | None) -> _Desc | None:
    """None for a description that can never match: absent, or without a pattern (phonenumbers
    does not let an empty pattern match anything)."""
    if desc is None or not desc.national_number_pattern:
        return None
    return _Desc(frozenset(desc.possible_length), re.compile(desc.national_number_pattern))


def _matches(national: str, desc: _Desc | None) -> bool:
    """phonenumbers' ``_is_number_matching_desc``: lengths first, then a full match."""
    if desc is None:
        return False
    if desc.lengths and len(national) not in desc.lengths:
        return False
    return desc.pattern.fullmatch(national) is not None


class _Typer:
    """One metadata object with its patterns compiled once.

    phonenumbers compiles (or looks up in its pattern cache) every pattern on every call: 18
    lookups per number, a third of what a campaign spends validating. The checks and their
    order are those of its ``_number_type_helper``, which a test compares for every region.
    """

    __slots__ = ("_fixed_line", "_general", "_mobile", "_same_mobile_and_fixed", "_special")

    def __init__(self, metadata: PhoneMetadata) -> None:
        self._general = _desc(metadata.general_desc)
        # Checked in this order before fixed line and mobile; a description that can never
        # match is left out, which changes no answer.
        special = (
            (metadata.premium_rate, PhoneNumberType.PREMIUM_RATE),
            (metadata.toll_free, PhoneNumberType.TOLL_FREE),
            (metadata.shared_cost, PhoneNumberType.SHARED_COST),
            (metadata.voip, PhoneNumberType.VOIP),
            (metadata.personal_number, PhoneNumberType.PERSONAL_NUMBER),
            (metadata.pager, PhoneNumberType.PAGER),
            (metadata.uan, PhoneNumberType.UAN),
            (metadata.voicemail, PhoneNumberType.VOICEMAIL),
        )
        self._special = tuple(
            (compiled, number_type)
            for desc, number_type in special
            if (compiled := _desc(desc)) is not None
        )
        self._fixed_line = _desc(metadata.fixed_line)
        self._mobile = _desc(metadata.mobile)
        self._same_mobile_and_fixed = bool(metadata.same_mobile_and_fixed_line_pattern)

    def number_type(self, national: str) -> int:
        """phonenumbers' ``_number_type_helper`` for this metadata."""
        if not _matches(national, self._general):
            return PhoneNumberType.UNKNOWN
        for desc, number_type in self._special:
            if _matches(national, desc):
                return number_type
        if _matches(national, self._fixed_line):
            if self._same_mobile_and_fixed or _matches(national, self._mobile):
                return PhoneNumberType.FIXED_LINE_OR_MOBILE
            return PhoneNumberType.FIXED_LINE
        if not self._same_mobile_and_fixed and _matches(national, self._mobile):
            return PhoneNumberType.MOBILE
        return PhoneNumberType.UNKNOWN


class _Candidate(NamedTuple):
    """A region sharing a calling code, as ``_region_code_for_number_from_list`` tries it."""

    region: str
    leading_digits: re.Pattern[str] | None
    """When the metadata has leading digits, a prefix match decides, not validation."""
    typer: _Typer
    typer_is_final: bool
    """The typer is also the one ``number_type`` uses once this region is chosen, so a type
    found while choosing is the answer (true unless the region is the non-geographic 001)."""


class _CallingCode(NamedTuple):
    """What finding the region and type of a number needs, per calling code."""

    single: str | None
    """The region when the code has exactly one (``region_code_for_number`` then asks no
    more); None when the candidates decide."""
    candidates: tuple[_Candidate, ...]
    typers: dict[str, _Typer | None]
    """By region: the metadata ``number_type`` uses once the region is known."""


_typers: dict[int, tuple[PhoneMetadata, _Typer]] = {}
_calling_codes: dict[int, _CallingCode] = {}
"""Built on first use per calling code and kept: metadata never changes in a process. Two
threads building the same entry is harmless (equal values, the last one stays)."""


def _typer(metadata: PhoneMetadata | None) -> _Typer | None:
    """The typer of a metadata object, compiled once however many regions share it."""
    if metadata is None:
        return None
    known = _typers.get(id(metadata))
    if known is not None and known[0] is metadata:  # the object is kept alive, so is its id
        return known[1]
    typer = _Typer(metadata)
    _typers[id(metadata)] = (metadata, typer)
    return typer


def _calling_code(country_code: int) -> _CallingCode:
    """Resolve a calling code's regions and metadata as phonenumbers would, once."""
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(country_code) or ()
    typers = {
        region: _typer(PhoneMetadata.metadata_for_region_or_calling_code(country_code, region))
        for region in regions
    }
    if len(regions) == 1:
        return _CallingCode(regions[0], (), typers)
    candidates = []
    for region in regions:
        metadata = PhoneMetadata.metadata_for_region(region.upper(), None)
        typer = _typer(metadata)
        if metadata is None or typer is None:
            continue
        leading = metadata.leading_digits
        candidates.append(
            _Candidate(
                region,
                re.compile(leading) if leading is not None else None,
                typer,
                typers[region] is typer,
            )
        )
    return _CallingCode(None, tuple(candidates), typers)


def _region_and_type(number: phonenumbers.PhoneNumber) -> tuple[str | None, int]:
    """``(region_code_for_number(number), number_type(number))``, computed once each.

    phonenumbers finds the region twice (``number_type`` asks for it too) and, for a calling
    code shared by several regions (+1, +44, +7), types the number once to choose the region
    and again for the answer; this reuses that first answer.
    """
    country_code = number.country_code or 0
    code = _calling_codes.get(country_code)
    if code is None:
        code = _calling_codes[country_code] = _calling_code(country_code)
    national = phonenumbers.national_significant_number(number)
    region = code.single
    if region is None:
        for candidate in code.candidates:
            if candidate.leading_digits is not None:
                if candidate.leading_digits.match(national):
                    region = candidate.region
                    break
                continue
            number_type = candidate.typer.number_type(national)
            if number_type != PhoneNumberType.UNKNOWN:
                if candidate.typer_is_final:
                    return candidate.region, number_type
                region = candidate.region
                break
        else:
            return None, PhoneNumberType.UNKNOWN  # number_type finds no metadata for None
    typer = code.typers[region]
    return region, typer.number_type(national) if typer is not None else PhoneNumberType.UNKNOWN


def _check_valid(number: phonenumbers.PhoneNumber) -> tuple[str | None, int]:
    """The number's region and type, once it is valid. Length problems get specific messages
    first: ``is_valid_number`` alone only says no.

    A number is valid exactly when phonenumbers finds it a type (``is_valid_number`` is
    ``number_type(...) != UNKNOWN`` in its own code): asking for the type once instead of
    both halves the work a campaign of 100,000 numbers spends here, and :func:`_region_and_type`
    answers both questions in one pass.
    """
    reason = phonenumbers.is_possible_number_with_reason(number)
    region = phonenumbers.region_code_for_country_code(number.country_code or 0)
    if reason in (ValidationResult.TOO_SHORT, ValidationResult.IS_POSSIBLE_LOCAL_ONLY):
        raise _length_error("too_short", region)
    if reason == ValidationResult.TOO_LONG:
        raise _length_error("too_long", region)
    if reason == ValidationResult.INVALID_LENGTH:
        raise _length_error("invalid", region)
    number_region, number_type = _region_and_type(number)
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
