"""SMS segment counting (GSM 03.38 / UCS-2), boundaries from docs/gateways.md.

The counts are checked against a character-by-character packing into parts
(:func:`_reference_parts`): slow, obviously right.
"""

from __future__ import annotations

import random

import pytest

from sms_ext.text.segments import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    SegmentInfo,
    analyze,
    is_gsm7,
)

EMOJI = "\U0001f600"  # 😀, a surrogate pair in UTF-16


def _units(part: str, encoding: str) -> int:
    if encoding == "gsm7":
        return sum(2 if ch in GSM7_EXTENSION else 1 for ch in part)
    return len(part.encode("utf-16-le")) // 2


def _reference_parts(text: str) -> list[str]:
    """Character-by-character greedy packing: slow, obviously right. An ESC pair or a surrogate
    pair is one character here, so it is never split across parts."""
    encoding = "gsm7" if is_gsm7(text) else "ucs2"
    single, per_part = (160, 153) if encoding == "gsm7" else (70, 67)
    if _units(text, encoding) <= single:
        return [text]
    parts, current, used = [], "", 0
    for ch in text:
        cost = _units(ch, encoding)
        if used + cost > per_part:
            parts.append(current)
            current, used = "", 0
        current += ch
        used += cost
    parts.append(current)
    return parts


# GSM 03.38 default alphabet by position, 16 per row; ESC (0x1B) written as None.
GSM_TABLE = [
    [*"@£$¥èéùìòÇ\nØø\rÅå"],
    [*"Δ_ΦΓΛΩΠΨΣΘΞ", None, *"ÆæßÉ"],
    [*" !\"#¤%&'()*+,-./"],
    [*"0123456789:;<=>?"],
    [*"¡ABCDEFGHIJKLMNO"],
    [*"PQRSTUVWXYZÄÖÑÜ§"],
    [*"¿abcdefghijklmno"],
    [*"pqrstuvwxyzäöñüà"],
]


def test_basic_alphabet_matches_the_gsm_table() -> None:
    assert all(len(row) == 16 for row in GSM_TABLE)
    assert GSM_TABLE[0][0x09] == "Ç"
    assert {ch for row in GSM_TABLE for ch in row if ch is not None} == GSM7_BASIC
    assert set("\f^{}\\[~]|€") == GSM7_EXTENSION
    assert not GSM7_BASIC & GSM7_EXTENSION


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello, World! 0123456789", True),
        ("Ça va? Ñandù, Øresund, Straße, Δ", True),
        ("Ñandú", False),  # ú is not GSM-7, ù is
        ("line\nbreak\rreturn", True),
        ("{[~]}|\\^€\f", True),
        ("garçon", False),  # lowercase ç is not GSM-7, only Ç is
        ("á", False),
        ("`", False),
        ("\t", False),
        (EMOJI, False),
        ("", True),
    ],
)
def test_is_gsm7(text: str, expected: bool) -> None:
    assert is_gsm7(text) is expected


@pytest.mark.parametrize(
    ("text", "segments", "per_segment", "remaining"),
    [
        ("a" * 160, 1, 160, 0),
        ("a" * 161, 2, 153, 145),
        ("a" * 306, 2, 153, 0),
        ("a" * 307, 3, 153, 152),
        ("ç" * 70, 1, 70, 0),
        ("ç" * 71, 2, 67, 63),
        ("ç" * 134, 2, 67, 0),
        ("ç" * 135, 3, 67, 66),
    ],
)
def test_boundaries(text: str, segments: int, per_segment: int, remaining: int) -> None:
    info = analyze(text)
    assert (info.segments, info.per_segment, info.remaining) == (segments, per_segment, remaining)
    assert info.units == len(text)
    assert len(_reference_parts(text)) == segments


def test_lowercase_c_cedilla_forces_ucs2_for_the_whole_message() -> None:
    assert analyze("a" * 69 + "ç").encoding == "ucs2"
    assert analyze("a" * 70 + "ç").segments == 2
    assert analyze("a" * 69 + "Ç") == SegmentInfo("gsm7", 70, 1, 160, 90)


def test_extension_character_counts_two_septets() -> None:
    assert analyze("€") == SegmentInfo("gsm7", 2, 1, 160, 158)
    assert analyze("a" * 158 + "€") == SegmentInfo("gsm7", 160, 1, 160, 0)


def test_159_plain_plus_euro_is_two_parts_without_splitting_the_esc_pair() -> None:
    text = "a" * 159 + "€"
    assert analyze(text) == SegmentInfo("gsm7", 161, 2, 153, 145)
    assert _reference_parts(text) == ["a" * 153, "a" * 6 + "€"]  # 153 - 8 septets left


def test_esc_pair_straddling_a_boundary_moves_to_the_next_part() -> None:
    text = "a" * 152 + "€" + "a" * 10
    assert _reference_parts(text) == ["a" * 152, "€" + "a" * 10]
    # The first part wastes one septet, so the last part holds 12 of 153.
    assert analyze(text) == SegmentInfo("gsm7", 164, 2, 153, 141)


def test_wasted_septets_can_add_a_segment() -> None:
    # 2 * 153 = 306 septets would fit two parts, but the pair at 152/153 wastes one.
    text = "a" * 152 + "€" + "a" * 152
    assert analyze(text) == SegmentInfo("gsm7", 306, 3, 153, 152)
    assert _reference_parts(text) == ["a" * 152, "€" + "a" * 151, "a"]


def test_emoji_counts_two_units() -> None:
    assert analyze(EMOJI) == SegmentInfo("ucs2", 2, 1, 70, 68)
    assert analyze("a" * 68 + EMOJI).segments == 1
    assert analyze("a" * 69 + EMOJI).segments == 2


def test_emoji_is_never_split_across_parts() -> None:
    text = "a" * 66 + EMOJI + "b" * 10
    # The emoji moves whole to the second part: it holds 12 units, 55 left.
    assert analyze(text) == SegmentInfo("ucs2", 78, 2, 67, 55)
    assert _reference_parts(text) == ["a" * 66, EMOJI + "b" * 10]


def test_emoji_ending_exactly_on_a_boundary_stays_in_its_part() -> None:
    text = "a" * 65 + EMOJI + "b" * 10
    assert analyze(text) == SegmentInfo("ucs2", 77, 2, 67, 57)
    assert _reference_parts(text) == ["a" * 65 + EMOJI, "b" * 10]


def test_empty_message_is_one_empty_segment() -> None:
    assert analyze("") == SegmentInfo("gsm7", 0, 1, 160, 160)


def test_long_message() -> None:
    text = ("Your Wi-Fi code is 123456. " * 60)[:1600]
    info = analyze(text)
    assert info == SegmentInfo("gsm7", 1600, 11, 153, 1683 - 1600)


@pytest.mark.parametrize("seed", range(40))
def test_matches_character_by_character_packing(seed: int) -> None:
    rng = random.Random(seed)
    alphabet = ["a", "b", " ", "€", "{", "\f"] + (["ç", EMOJI, "ü"] if seed % 2 else [])
    text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 700)))
    parts = _reference_parts(text)
    info = analyze(text)
    assert info.segments == len(parts)
    assert info.units == _units(text, info.encoding)
    assert info.remaining == info.per_segment - _units(parts[-1], info.encoding)
    assert all(_units(part, info.encoding) <= info.per_segment for part in parts)


@pytest.mark.parametrize("ext", [*"€[]{}^~|\\"])
def test_every_extension_character_at_the_160_and_153_boundaries(ext: str) -> None:
    assert analyze(ext * 80) == SegmentInfo("gsm7", 160, 1, 160, 0)
    # 161 septets: the 77th pair would straddle septets 153/154, so the first part holds 152.
    assert analyze(ext * 80 + "a") == SegmentInfo("gsm7", 161, 2, 153, 144)
    assert _reference_parts(ext * 80 + "a") == [ext * 76, ext * 4 + "a"]
    part = "a" + ext * 76  # 153 septets: exactly one concatenated part
    assert analyze(part * 2) == SegmentInfo("gsm7", 306, 2, 153, 0)
    assert analyze(part * 2 + "a") == SegmentInfo("gsm7", 307, 3, 153, 152)
    straddling = "a" * 152 + ext + "a" * 10  # the ESC pair would sit on septets 153 and 154
    assert analyze(straddling) == SegmentInfo("gsm7", 164, 2, 153, 141)
    assert _reference_parts(straddling) == ["a" * 152, ext + "a" * 10]


def test_emoji_only_at_the_70_and_67_boundaries() -> None:
    assert analyze(EMOJI * 35) == SegmentInfo("ucs2", 70, 1, 70, 0)
    # 71 units: the 34th emoji would straddle units 67/68, so the first part holds 66.
    assert analyze(EMOJI * 35 + "a") == SegmentInfo("ucs2", 71, 2, 67, 62)
    assert _reference_parts(EMOJI * 35 + "a") == [EMOJI * 33, EMOJI * 2 + "a"]
    part = EMOJI * 33 + "a"  # 67 units: exactly one concatenated part
    assert analyze(part * 2) == SegmentInfo("ucs2", 134, 2, 67, 0)
    assert analyze(part * 2 + "a") == SegmentInfo("ucs2", 135, 3, 67, 66)
    assert analyze(EMOJI * 36) == SegmentInfo("ucs2", 72, 2, 67, 61)
    assert _reference_parts(EMOJI * 36) == [EMOJI * 33, EMOJI * 3]  # 66 units, one wasted


def test_an_extension_character_with_a_ucs2_one_counts_one_unit() -> None:
    # Once the text is UCS-2, "€" is one UTF-16 unit like any other BMP character.
    assert analyze("€" * 69 + "ç") == SegmentInfo("ucs2", 70, 1, 70, 0)
    assert analyze("€" * 70 + "ç") == SegmentInfo("ucs2", 71, 2, 67, 63)
