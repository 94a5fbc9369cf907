"""Count SMS segments the way handsets and gateways do.

The preview under the message box, the cost estimate and the choice of Vonage's ``type=unicode``
all depend on the same facts (GSM 03.38):

* A message that fits the GSM 7-bit alphabet costs one septet per character, two for the
  extension table (ESC + char). One SMS carries 160 septets; a part of a concatenated message
  carries 153 (the user data header takes the rest).
* A single character outside that alphabet turns the whole message into UCS-2 (UTF-16 code
  units): 70 units for one SMS, 67 per concatenated part. Characters outside the Basic
  Multilingual Plane (most emoji) take a surrogate pair, i.e. two units.
* An ESC pair or a surrogate pair is never split across parts, so a two-unit character that
  would straddle a part boundary moves whole to the next part and leaves one unit unused. The
  segment count is therefore not always ``ceil(units / per_part)``.

An empty message is counted as one (empty) segment: gateways still send and bill one SMS for it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, NamedTuple

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
"""The GSM 03.38 default alphabet (one septet each); 0x1B (ESC) is not a character of its own."""

GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")
"""The GSM 03.38 extension table: each is sent as ESC + char, i.e. two septets."""

GSM7_CHARS = GSM7_BASIC | GSM7_EXTENSION

GSM7_SINGLE, GSM7_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67

# One C-level scan finds the (usually few) two-unit characters; everything else costs one unit.
_GSM7_DOUBLE_RE = re.compile("[" + re.escape("".join(sorted(GSM7_EXTENSION))) + "]")
_UCS2_DOUBLE_RE = re.compile("[\U00010000-\U0010ffff]")


@dataclass(frozen=True)
class SegmentInfo:
    """How a message will be encoded and billed.

    ``units`` are septets for GSM-7 (extension characters count 2) and UTF-16 code units for
    UCS-2. ``per_segment`` is the single-SMS capacity while the message fits one SMS and the
    concatenated-part capacity otherwise; ``remaining`` is what is left in the last segment.
    """

    encoding: Literal["gsm7", "ucs2"]
    units: int
    segments: int
    per_segment: int
    remaining: int


def is_gsm7(text: str) -> bool:
    """True when every character is in the GSM 03.38 basic or extension table.

    Note that only capital ``Ç`` is GSM-7: a lowercase ``ç`` forces UCS-2.
    """
    return GSM7_CHARS.issuperset(text)


class _Layout(NamedTuple):
    encoding: Literal["gsm7", "ucs2"]
    units: int
    per_segment: int
    starts: list[int]  # unit offset where each part starts


def _layout(text: str) -> _Layout:
    """Encode, measure and pack ``text`` into parts.

    Only the two-unit characters can shift a part boundary, so the greedy packing walks the
    parts (a handful) instead of the characters (up to thousands).
    """
    if is_gsm7(text):
        encoding: Literal["gsm7", "ucs2"] = "gsm7"
        single, per_part, double_re = GSM7_SINGLE, GSM7_PART, _GSM7_DOUBLE_RE
    else:
        encoding = "ucs2"
        single, per_part, double_re = UCS2_SINGLE, UCS2_PART, _UCS2_DOUBLE_RE
    # The k-th two-unit character at index i starts at unit offset i + k.
    doubles = [match.start() + k for k, match in enumerate(double_re.finditer(text))]
    units = len(text) + len(doubles)
    starts = [0]
    if units <= single:
        return _Layout(encoding, units, single, starts)
    double_set = set(doubles)
    while units - starts[-1] > per_part:
        end = starts[-1] + per_part
        # A two-unit character starting on the last unit of a part moves to the next part.
        starts.append(end - 1 if end - 1 in double_set else end)
    return _Layout(encoding, units, per_part, starts)


def analyze(text: str) -> SegmentInfo:
    """Encoding, size and segment count of ``text``, as a gateway will bill it."""
    layout = _layout(text)
    return SegmentInfo(
        encoding=layout.encoding,
        units=layout.units,
        segments=len(layout.starts),
        per_segment=layout.per_segment,
        remaining=layout.per_segment - (layout.units - layout.starts[-1]),
    )
