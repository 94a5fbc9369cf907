"""Voucher codes: random, unambiguous, easy to read out and to type on a phone.

The alphabet leaves out characters people confuse on paper and screens: 0/O/Q/D, 1/I/L, and
U/V. Eight characters of 27 give about 2^38 codes, grouped ``WX7K-9PQ2``; guessing is further slowed
by :mod:`.throttle`.
"""

from __future__ import annotations

import secrets

ALPHABET = "23456789ABCEFGHJKMNPRSTWXYZ"
"""Upper-case letters and digits without 0 O Q D 1 I L U V."""
GROUP = 4
LENGTH = 8
MAX_INPUT = 40
"""Typed text longer than this is not a code (and is not worth normalising)."""


def new_code() -> str:
    """A fresh random code, grouped for reading (``WX7K-9PQ2``)."""
    raw = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
    return _grouped(raw)


def _grouped(raw: str) -> str:
    return "-".join(raw[i : i + GROUP] for i in range(0, len(raw), GROUP))


def normalise(typed: str) -> str | None:
    """The stored form of what a guest typed (any case, with or without dash and spaces), or
    ``None`` when it cannot be a code, so that no database query is spent on it."""
    if len(typed) > MAX_INPUT:
        return None
    raw = "".join(ch for ch in typed.upper() if ch not in " -")
    if len(raw) != LENGTH or any(ch not in ALPHABET for ch in raw):
        return None
    return _grouped(raw)
