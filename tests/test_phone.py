"""Phone number normalization and the mobile-only policy, against real phonenumbers metadata."""

from __future__ import annotations

from typing import Any

import pytest

from sms_ext.text.phone import MAX_INPUT_LENGTH, PhoneNumberError, calling_code, normalize_phone

DE_MOBILE = "+4915123456789"


@pytest.mark.parametrize(
    ("raw", "kwargs", "expected"),
    [
        ("+49 1512 3456789", {}, DE_MOBILE),
        ("0049 1512 3456789", {}, DE_MOBILE),
        ("  +49 (0)1512 345-67.89  ", {}, DE_MOBILE),
        ("01512 3456789", {"default_region": "DE"}, DE_MOBILE),
        ("01512 3456789", {"default_region": "de"}, DE_MOBILE),
        ("0151/23456789", {"default_region": "DE"}, DE_MOBILE),
        ("+49\u00a01512\u20133456789", {}, DE_MOBILE),  # pasted: no-break space, en dash
        ("+٤٩١٥١٢٣٤٥٦٧٨٩", {}, DE_MOBILE),  # Arabic-Indic digits
        ("011 49 1512 3456789", {"default_region": "US"}, DE_MOBILE),  # US exit code
        ("+49 1512 3456789", {"default_region": "FR"}, DE_MOBILE),  # + wins over the default
        ("+1 415 555 2671", {}, "+14155552671"),  # FIXED_LINE_OR_MOBILE
        ("(415) 555-2671", {"default_region": "US"}, "+14155552671"),
        ("+33 6 12 34 56 78", {}, "+33612345678"),
        ("+44 7797 123456", {}, "+447797123456"),
        ("+49 30 123456", {"allow_fixed_line": True}, "+4930123456"),
        ("+49 1512 3456789", {"allowed_regions": ["de", "AT"]}, DE_MOBILE),
        ("+800 1234 5678", {"allow_fixed_line": True}, "+80012345678"),  # toll-free
    ],
)
def test_accepted(raw: str, kwargs: dict[str, Any], expected: str) -> None:
    assert normalize_phone(raw, **kwargs) == expected


@pytest.mark.parametrize(
    ("raw", "kwargs", "code", "message"),
    [
        ("", {}, "empty", "Please enter your phone number."),
        ("   ", {}, "empty", "Please enter your phone number."),
        (
            "+49 151 1234 5678 abc",
            {},
            "letters",
            "A phone number can only contain digits.",
        ),
        ("0800-FLOWERS", {"default_region": "US"}, "letters", None),
        ("+49 1512 3456789 ext. 12", {}, "letters", None),
        ("+49 1512 #3456789", {}, "unparseable", "This does not look like a phone number."),
        ("49+15123456789", {}, "unparseable", None),
        ("+", {}, "unparseable", None),
        ("+49", {}, "too_short", "This number is too short."),
        ("+491", {}, "too_short", "This number is too short."),
        ("+4915", {}, "too_short", "This number is too short for Germany."),
        ("+1 415 555 267", {}, "too_short", "This number is too short for the United States."),
        ("+49 151 1234 5678 901234", {}, "too_long", "This number is too long for Germany."),
        ("+49 1512 3456789 0000 0000 0000 00", {}, "too_long", "This number is too long."),
        ("1" * (MAX_INPUT_LENGTH + 1), {"default_region": "DE"}, "too_long", None),
        ("+999 1234 5678", {}, "invalid_country_code", "This country code does not exist."),
        ("+0049 1512 3456789", {}, "invalid_country_code", None),
        (
            "01512 3456789",
            {},
            "invalid_country_code",
            "Please include your country code, starting with + (for example +49 or +1).",
        ),
        ("01512 3456789", {"default_region": "XX"}, "invalid_country_code", None),
        ("+49 1512", {}, "invalid", "This is not a valid phone number for Germany."),
        ("+49 32 1234 5678", {}, "invalid", None),
        ("+44 7700 900123", {}, "invalid", None),  # Ofcom drama range, never assigned
        (
            "+49 30 123456",
            {},
            "not_mobile",
            "This does not look like a mobile number. Please use a mobile number.",
        ),
        ("+44 20 7946 0958", {}, "not_mobile", None),
        ("+800 1234 5678", {}, "not_mobile", None),
        (
            "+44 909 879 0000",
            {},
            "not_mobile",
            "This number cannot receive text messages. Please use a mobile number.",
        ),
        ("+44 909 879 0000", {"allow_fixed_line": True}, "not_mobile", None),  # premium rate
        ("+44 843 123 4567", {"allow_fixed_line": True}, "not_mobile", None),  # shared cost
        ("+44 70 1234 5678", {"allow_fixed_line": True}, "not_mobile", None),  # personal
        (
            "+33 6 12 34 56 78",
            {"allowed_regions": ["de", "AT"]},
            "region_not_allowed",
            "Numbers from France are not accepted here.",
        ),
        (
            "+44 7797 123456",
            {"allowed_regions": {"GB"}},
            "region_not_allowed",
            "Numbers from Jersey are not accepted here.",
        ),
        (
            "+61 412 345 678",
            {"allowed_regions": ("DE",)},
            "region_not_allowed",
            "Numbers from Australia are not accepted here.",
        ),
        (
            "+81 90 1234 5678",
            {"allowed_regions": ("DE",)},
            "region_not_allowed",
            "Numbers from Japan are not accepted here.",  # no built-in name: the ISO code
        ),
        (
            "+800 1234 5678",
            {"allowed_regions": ("DE",), "allow_fixed_line": True},
            "region_not_allowed",
            "Numbers from international networks are not accepted here.",
        ),
    ],
)
def test_rejected(raw: str, kwargs: dict[str, Any], code: str, message: str | None) -> None:
    with pytest.raises(PhoneNumberError) as info:
        normalize_phone(raw, **kwargs)
    assert info.value.code == code
    if message is not None:
        assert str(info.value) == message


def test_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="too short"):
        normalize_phone("+4915")


def test_region_is_checked_before_the_number_type() -> None:
    # A French landline on a German-only portal: the region is the more useful answer.
    with pytest.raises(PhoneNumberError) as info:
        normalize_phone("+33 1 42 68 53 00", allowed_regions=["DE"])
    assert info.value.code == "region_not_allowed"


def test_huge_input_is_rejected_without_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    import phonenumbers

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("parsed")

    monkeypatch.setattr(phonenumbers, "parse", fail)
    with pytest.raises(PhoneNumberError) as info:
        normalize_phone("+49" + "1" * 100_000)
    assert info.value.code == "too_long"


@pytest.mark.parametrize(
    ("e164", "region", "kwargs"),
    [
        (DE_MOBILE, "DE", {}),
        ("+14155552671", "US", {"allow_fixed_line": True}),  # US numbers may be either type
        ("+447797123456", "JE", {}),  # +44, but Jersey's
        ("+80012345678", "001", {"allow_fixed_line": True}),  # international, no country
    ],
)
def test_a_number_belongs_to_its_own_region(e164: str, region: str, kwargs: dict) -> None:
    assert normalize_phone(e164, allowed_regions=[region], **kwargs) == e164
    with pytest.raises(PhoneNumberError) as info:
        normalize_phone(e164, allowed_regions=["FR"], **kwargs)
    assert info.value.code == "region_not_allowed"


@pytest.mark.parametrize(
    "e164",
    [
        "+881612345678",  # Iridium-class satellite phone, reported as a mobile
        "+8823421234",  # international network (GMSS), reported as a mobile
        "+870301234567",  # Inmarsat
    ],
)
def test_international_networks_are_refused_unless_allowed(e164: str) -> None:
    """Pumping fraud favours satellite and international-network ranges: phonenumbers calls
    them mobiles, so the mobile-only policy alone let them through."""
    with pytest.raises(PhoneNumberError) as info:
        normalize_phone(e164, allow_international_networks=False)
    assert info.value.code == "region_not_allowed"
    assert "Satellite phones and international network numbers" in str(info.value)
    assert normalize_phone(e164) == e164  # an admin's own sends accept them


def test_calling_code() -> None:
    assert calling_code("+27831234567") == "27"
    assert calling_code("+881612345678") == "881"
