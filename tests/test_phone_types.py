"""Our compiled-once replica of phonenumbers' region and type lookup against phonenumbers itself.

``sms_ext.text.phone`` answers ``region_code_for_number`` and ``number_type`` with its own
copy of phonenumbers' checks (for speed); any divergence would accept or refuse numbers that
phonenumbers' policy would not, so every region's example numbers, numbers one edit away from
them and seeded random numbers must get exactly phonenumbers' answer.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from typing import Any

import phonenumbers
import pytest
from phonenumbers import NumberParseException, PhoneMetadata, PhoneNumberDesc, PhoneNumberType

from sms_ext.text import number_types, phone
from sms_ext.text.phone import PhoneNumberError, normalize_phone

_TYPES = [
    value
    for name, value in vars(PhoneNumberType).items()
    if name.isupper() and isinstance(value, int)
]
_DESCS = (
    "general_desc",
    "fixed_line",
    "mobile",
    "toll_free",
    "premium_rate",
    "shared_cost",
    "personal_number",
    "voip",
    "pager",
    "uan",
    "voicemail",
)


def _parse(text: str) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(text)
    except NumberParseException:
        return None


def _edits(number: phonenumbers.PhoneNumber) -> Iterator[phonenumbers.PhoneNumber]:
    """The number, its last digit changed through 0-9, a digit dropped and a digit added."""
    yield number
    national = phonenumbers.national_significant_number(number)
    prefix = f"+{number.country_code}"
    variants = [national[:-1] + digit for digit in "0123456789"]
    variants += [national[:-1], national[1:], national[:1] + national[2:]]
    variants += [national + digit for digit in "0123456789"]
    variants += [national[:1] + digit + national[1:] for digit in "0123456789"]
    for variant in variants:
        parsed = _parse(prefix + variant)
        if parsed is not None:
            yield parsed


def _examples_for_region(region: str) -> Iterator[phonenumbers.PhoneNumber]:
    for number_type in _TYPES:
        example = phonenumbers.example_number_for_type(region, number_type)
        if example is not None:
            yield example


def _examples_for_non_geo(country_code: int) -> Iterator[phonenumbers.PhoneNumber]:
    example = phonenumbers.example_number_for_non_geo_entity(country_code)
    if example is not None:
        yield example
    metadata = PhoneMetadata.metadata_for_nongeo_region(country_code)
    assert metadata is not None
    for attribute in _DESCS:
        desc = getattr(metadata, attribute)
        if desc is not None and desc.example_number:
            parsed = _parse(f"+{country_code}{desc.example_number}")
            if parsed is not None:
                yield parsed


def _mismatches(numbers: Iterable[phonenumbers.PhoneNumber]) -> tuple[int, list[str]]:
    """How many numbers were compared, and a line for each that our replica got wrong."""
    count = 0
    wrong = []
    for number in numbers:
        count += 1
        expected = (phonenumbers.region_code_for_number(number), phonenumbers.number_type(number))
        ours = number_types.region_and_type(number)
        if ours != expected:
            e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
            wrong.append(f"{e164}: ours {ours}, phonenumbers {expected}")
    return count, wrong


def _assert_same(numbers: Iterable[phonenumbers.PhoneNumber], minimum: int) -> None:
    count, wrong = _mismatches(numbers)
    assert not wrong, f"{len(wrong)} of {count} differ, e.g. {wrong[:5]}"
    assert count >= minimum


@pytest.mark.parametrize("region", sorted(phonenumbers.SUPPORTED_REGIONS))
def test_region_examples_and_edits(region: str) -> None:
    _assert_same(
        (edited for example in _examples_for_region(region) for edited in _edits(example)),
        minimum=1,
    )


@pytest.mark.parametrize("country_code", sorted(phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS))
def test_non_geographic_examples_and_edits(country_code: int) -> None:
    _assert_same(
        (edited for example in _examples_for_non_geo(country_code) for edited in _edits(example)),
        minimum=1,
    )


_RANDOM_CODES = [1, 44, 7, 39, 49, 27, 61, 262, 590, 599, 800, 882]
_SAMPLES = 3000


def _random_numbers(country_code: int) -> Iterator[phonenumbers.PhoneNumber]:
    """Random digit strings, half of them tails on example prefixes so many are valid."""
    rng = random.Random(country_code)
    regions = phonenumbers.region_codes_for_country_code(country_code)
    examples = [
        phonenumbers.national_significant_number(example)
        for region in regions
        for example in (
            _examples_for_non_geo(country_code)
            if region == phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY
            else _examples_for_region(region)
        )
    ]
    assert examples
    for i in range(_SAMPLES):
        if i % 2:
            example = rng.choice(examples)
            keep = rng.randint(1, len(example))
            tail = rng.randint(0, 2) + len(example) - keep
            national = example[:keep] + "".join(rng.choices("0123456789", k=tail))
        else:
            length = rng.randint(4, 14)
            national = "".join(rng.choices("0123456789", k=length))
        if country_code == 39 and i % 3 == 0:
            national = "0" + national[1:]  # Italian fixed lines keep their leading zero
        parsed = _parse(f"+{country_code}{national}")
        if parsed is not None:
            yield parsed


@pytest.mark.parametrize("country_code", _RANDOM_CODES)
def test_random_numbers(country_code: int) -> None:
    numbers = list(_random_numbers(country_code))
    valid = sum(phonenumbers.number_type(n) != PhoneNumberType.UNKNOWN for n in numbers)
    assert valid >= _SAMPLES // 20, "the sample should include many valid numbers"
    _assert_same(numbers, minimum=_SAMPLES // 2)


_TYPE_DESCS = _DESCS[1:]


def _random_desc(rng: random.Random, pattern: str | None = None) -> PhoneNumberDesc | None:
    """A description over 3-5 digit numbers, overlapping others often; sometimes absent or
    without a pattern, with or without possible lengths (-1 as phonenumbers uses for none)."""
    if rng.random() < 0.15:
        return None
    if pattern is None:
        choice = rng.random()
        if choice < 0.1:
            pattern = rng.choice([None, ""])
        else:
            pieces = [
                f"[{rng.randint(1, 5)}-{rng.randint(5, 9)}]\\d{{{rng.randint(1, 4)}}}"
                for _ in range(rng.randint(1, 3))
            ]
            pattern = "|".join(pieces) if rng.random() < 0.5 else f"(?:{'|'.join(pieces)})"
    lengths = rng.choice([(), (3,), (4,), (3, 4), (4, 5), (3, 4, 5), (-1,)])
    return PhoneNumberDesc(national_number_pattern=pattern, possible_length=lengths)


def _random_metadata(rng: random.Random, region: str, country_code: int) -> PhoneMetadata:
    descs: dict[str, Any] = {name: _random_desc(rng) for name in _TYPE_DESCS}
    descs["general_desc"] = _random_desc(
        rng, pattern=rng.choice(["\\d{3,5}", "[1-8]\\d{2,4}", "\\d{3}|\\d{5}", None])
    )
    if rng.random() < 0.3 and descs["fixed_line"] is not None:  # same pattern, other lengths
        descs["mobile"] = _random_desc(rng, pattern=descs["fixed_line"].national_number_pattern)
    leading = rng.choice([None, None, "", "[1-3]", "4|5[0-5]", "9"])
    return PhoneMetadata(
        id=region, country_code=country_code, leading_digits=leading, register=False, **descs
    )


def test_random_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real metadata rarely lets two types overlap, so the order of the checks, the length
    pre-check and the same-pattern shortcut are compared on made-up metadata too, where they
    decide the answer: calling code 999 shared by three regions, 998 with one."""
    rng = random.Random(20240607)
    shared = ("XA", "XB", "XC")
    monkeypatch.setitem(phonenumbers.COUNTRY_CODE_TO_REGION_CODE, 999, shared)
    monkeypatch.setitem(phonenumbers.COUNTRY_CODE_TO_REGION_CODE, 998, ("XD",))
    compared = typed = 0
    for _ in range(60):
        metadata = {region: _random_metadata(rng, region, 999) for region in shared}
        metadata["XD"] = _random_metadata(rng, "XD", 998)

        def metadata_for_region(
            cls: type[PhoneMetadata],
            region_code: str,
            default: PhoneMetadata | None = None,
            table: dict[str, PhoneMetadata] = metadata,
        ) -> PhoneMetadata | None:
            return table.get(region_code, default)

        monkeypatch.setattr(PhoneMetadata, "metadata_for_region", classmethod(metadata_for_region))
        monkeypatch.setattr(number_types, "_calling_codes", {})
        monkeypatch.setattr(number_types, "_typers", {})
        numbers = [
            phonenumbers.PhoneNumber(country_code=code, national_number=national)
            for code in (999, 998)
            for national in [*range(100, 1000), *rng.sample(range(1000, 100000), 300)]
        ]
        numbers += [
            phonenumbers.PhoneNumber(
                country_code=999, national_number=national, italian_leading_zero=True
            )
            for national in rng.sample(range(10, 10000), 100)
        ]
        count, wrong = _mismatches(numbers)
        assert not wrong, f"{len(wrong)} of {count} differ, e.g. {wrong[:5]}"
        compared += count
        typed += sum(phonenumbers.number_type(n) != PhoneNumberType.UNKNOWN for n in numbers)
    assert compared > 100000
    assert typed > compared // 10


def test_shared_calling_code_regions_are_told_apart() -> None:
    """The cases where the region choice matters are really exercised."""
    cases: dict[str, tuple[str | None, int]] = {
        "+447797123456": ("JE", PhoneNumberType.MOBILE),
        "+447624123456": ("IM", PhoneNumberType.MOBILE),
        "+447400123456": ("GB", PhoneNumberType.MOBILE),
        "+16135550123": ("CA", PhoneNumberType.FIXED_LINE_OR_MOBILE),
        "+12684641234": ("AG", PhoneNumberType.MOBILE),
        "+77012345678": ("KZ", PhoneNumberType.MOBILE),
        "+79123456789": ("RU", PhoneNumberType.MOBILE),
        "+262639012345": ("YT", PhoneNumberType.MOBILE),
        "+262692123456": ("RE", PhoneNumberType.MOBILE),
        "+390612345678": ("IT", PhoneNumberType.FIXED_LINE),
        "+80012345678": ("001", PhoneNumberType.TOLL_FREE),
    }
    numbers = {text: phonenumbers.parse(text) for text in cases}
    numbers["+999123456"] = phonenumbers.PhoneNumber(country_code=999, national_number=123456)
    cases["+999123456"] = (None, PhoneNumberType.UNKNOWN)  # no such calling code
    for text, expected in cases.items():
        number = numbers[text]
        assert number_types.region_and_type(number) == expected, text
        assert expected == (
            phonenumbers.region_code_for_number(number),
            phonenumbers.number_type(number),
        )


def test_metadata_is_compiled_once() -> None:
    number = phonenumbers.parse("+447400123456")
    number_types.region_and_type(number)
    entry = number_types._calling_codes[44]
    typers = dict(number_types._typers)
    number_types.region_and_type(number)
    assert number_types._calling_codes[44] is entry
    assert number_types._typers == typers


@pytest.mark.parametrize(
    ("raw", "kwargs", "expected"),
    [
        ("+447400000000", {"default_region": "ZA"}, "+447400000000"),
        ("+34612000000", {"default_region": "ZA"}, "+34612000000"),
        ("083 123 4567", {"default_region": "ZA"}, "+27831234567"),
        ("+44 7797 123456", {"allowed_regions": ["JE"]}, "+447797123456"),
        ("+1 613 555 0123", {"allowed_regions": ["CA"]}, "+16135550123"),
        ("+882 342 1234", {"default_region": "ZA"}, "+8823421234"),
        ("+39 06 1234 5678", {"allow_fixed_line": True}, "+390612345678"),
        ("+44 7797 123456", {"allowed_regions": ["GB"]}, "region_not_allowed"),
        ("+882 342 1234", {"allow_international_networks": False}, "region_not_allowed"),
        ("+39 06 1234 5678", {}, "not_mobile"),
        ("+44 909 876 5432", {"allow_fixed_line": True}, "not_mobile"),  # premium rate
        ("+44 7700 900123", {}, "invalid"),
        ("+44 7400 12", {}, "too_short"),
        ("+44 7400 123", {}, "invalid"),
        ("+999 1234 5678", {}, "invalid_country_code"),
    ],
)
def test_normalize_outcomes(raw: str, kwargs: dict[str, object], expected: str) -> None:
    phone._known.clear()
    for _ in range(2):  # parsed, then from the known-numbers cache
        try:
            outcome = normalize_phone(raw, **kwargs)  # type: ignore[arg-type]
        except PhoneNumberError as exc:
            outcome = exc.code
        assert outcome == expected
