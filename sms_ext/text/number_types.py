"""A phone number's region and type, exactly as phonenumbers finds them, in a fraction of the time.

A campaign checks 100,000 numbers. phonenumbers finds a number's region twice (``number_type``
asks for it again), types a number of a shared calling code (+1, +44, +7) once to choose the
region and again for the answer, and looks every pattern up in its cache on every call (18
lookups per number). Here each metadata object's patterns are compiled once and each question
is answered once; the checks and their order are those of phonenumbers' own
``_number_type_helper`` and ``_region_code_for_number_from_list``, which
``tests/test_phone_types.py`` compares on every region's example numbers and on random ones.
Only phonenumbers' public objects are used.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import phonenumbers
from phonenumbers import PhoneMetadata, PhoneNumberType


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


def region_and_type(number: phonenumbers.PhoneNumber) -> tuple[str | None, int]:
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
