"""What a gateway entry's raw values must be before any validation reads them.

An entry comes from the admin form, an import file or an API caller, so a value may be any
JSON: a list where text was meant, a number no column holds, a NUL PostgreSQL refuses, a lone
surrogate no driver can encode. These checks run first and name the field, so the store's and
the drivers' validation only ever see text and numbers they can use.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..checks import text_problem

MAX_TEXT = 2_000
"""Longest one-line value (a URL, a key, a sender)."""
MULTILINE_LIMITS = {"payload": 20_000, "lua_script": 64 * 1024, "headers": MAX_TEXT}
"""Free-text fields and their longest value; every other text field is one line. (Header
cells are one line too, but the custom driver says so in its own words.)"""
LABELS = {
    "url": "URL",
    "base_url": "Base URL",
    "api_key": "API key",
    "api_secret": "API secret",
    "account_sid": "Account SID",
    "client_id": "Client ID",
    "from_number": "Sender",
    "status_callback": "Status callback URL",
    "lua_script": "Lua script",
}


def label(name: str) -> str:
    """The form label of field ``name``, for messages."""
    return LABELS.get(name, name.replace("_", " ").capitalize())


def _texts(value: Any) -> Iterable[str]:
    """The text a field holds: itself, or the cells of a list of rows (custom headers)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list | tuple):
        for row in value:
            if isinstance(row, Mapping):
                yield from (cell for cell in row.values() if isinstance(cell, str))


def text_errors(names: Iterable[str], data: Mapping[str, Any]) -> dict[str, str]:
    """Field -> message for every field of ``names`` whose text could not be stored."""
    errors: dict[str, str] = {}
    for name in names:
        multiline = name in MULTILINE_LIMITS
        limit = MULTILINE_LIMITS.get(name, MAX_TEXT)
        for text in _texts(data.get(name)):
            problem = text_problem(text, label(name), limit, multiline=multiline)
            if problem is not None:
                errors[name] = problem
                break
    return errors


def whole_number(raw: Any, low: int, high: int) -> int:
    """``raw`` (a number, or its text from a form) as an int from ``low`` to ``high``.

    Raises ``ValueError`` for anything else: booleans, fractions, ``NaN``, infinities, and
    numbers the database column could not hold.
    """
    if isinstance(raw, bool):
        raise ValueError("a boolean is not a number")
    if isinstance(raw, float):
        if not raw.is_integer():  # NaN and infinities too
            raise ValueError("not a whole number")
        raw = int(raw)
    if isinstance(raw, int):
        value = raw
    else:
        text = str(raw).strip()
        if len(text) > len(str(high)) + 1:  # Python refuses to read 4,300+ digits anyway
            raise ValueError("too long")
        value = int(text)
    if not low <= value <= high:
        raise ValueError("out of range")
    return value
