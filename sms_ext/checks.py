"""Checks a value passes before the database sees it: text it can store, ids in its range.

Values from a form, a URL, an import file or an API caller reach columns with limits the
databases enforce in their own way: PostgreSQL refuses NUL characters in text and integers wider
than the column (``DataError``), SQLite refuses integers beyond 64 bits (``OverflowError``), and
both drivers fail on text that is not valid Unicode (lone surrogates, which is what undecodable
bytes in a command-line argument become). Checked here first, the person gets a sentence naming
the field instead of a 500 or a traceback.
"""

from __future__ import annotations

import re

INT32_MAX = 2**31 - 1
"""Largest value of an ``Integer`` column on PostgreSQL (gateway ids, priorities)."""
INT64_MAX = 2**63 - 1
"""Largest value of a ``BigInteger`` column, and of any integer SQLite stores (message ids)."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def text_problem(
    value: object, label: str, max_length: int, *, multiline: bool = False
) -> str | None:
    """Why ``value`` cannot be stored as the text field ``label``, or ``None`` when it can.

    :param multiline: free text (an SMS body, a payload, a script), where only NUL and
        invalid Unicode are refused; otherwise a one-line value (a name, a key), which must
        not hold line breaks or other control characters either.
    """
    if not isinstance(value, str):
        return f"{label} must be text."
    if len(value) > max_length:
        return f"{label} must be at most {max_length:,} characters."
    if "\x00" in value:
        return f"{label} must not contain NUL characters."
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return f"{label} contains characters that are not valid Unicode."
    if not multiline and _CONTROL.search(value):
        return f"{label} must not contain line breaks or control characters."
    return None


def parse_id(raw: object, maximum: int = INT64_MAX) -> int | None:
    """A row id from a URL, a query string or a form: a whole number from 1 to ``maximum``
    (the column's range), or ``None`` for anything else, so the caller answers 404 or 400
    instead of sending the database a number it cannot compare.

    Only ASCII digits count: ``str.isdigit`` also accepts ``"²"``, which ``int`` refuses.
    """
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        number = raw
    elif isinstance(raw, str):
        text = raw.strip()
        if not (text.isascii() and text.isdigit()) or len(text) > len(str(maximum)):
            return None
        number = int(text)
    else:
        return None
    return number if 1 <= number <= maximum else None
