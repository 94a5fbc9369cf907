"""Refusing weak secret keys: the key that encrypts gateway secrets (and signs a host's sessions)
must not be guessable.

Length alone is not enough: the README's old example ``"a long random string"`` passed a
16-character rule. These are rules of thumb against keys a person typed, not a proof of
randomness: keys from ``secrets.token_urlsafe(32)``, ``token_hex(16)`` or
``Fernet.generate_key()`` pass.
"""

from __future__ import annotations

import math
import re
import string

MIN_LENGTH = 16
MIN_DISTINCT = 6
MIN_BITS = 80
"""Estimated bits: length x log2(size of the character classes used)."""
GENERATE = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
"""The command error messages suggest."""

_PLACEHOLDERS = ("secret", "password", "passwd", "changeme", "change-me", "example", "default")
"""Words of placeholder keys ("my-secret-key-123", "changeme123...")."""
_PHRASE = re.compile(r"([A-Za-z][a-z]*|[A-Z]+)([ _.,:;+-]+([A-Za-z][a-z]*|[A-Z]+))*[ _.,:;+-]*")
"""Words (lower case, capitalised or all capitals) and separators only: "a long random string",
"test-secret-key-that-is-long-enough". Random letters mix cases inside a word."""
_CLASSES = (
    (frozenset(string.ascii_lowercase), 26),
    (frozenset(string.ascii_uppercase), 26),
    (frozenset(string.digits), 10),
)
_OTHER_CLASS = 32
"""Punctuation and anything else."""
_CLASSED = frozenset(string.ascii_letters + string.digits)


def weak_key_reason(key: str) -> str | None:
    """Why ``key`` is too weak to be a secret key, as a phrase that completes "a random string
    (...)"; ``None`` when it passes."""
    if len(key) < MIN_LENGTH:
        return f"at least {MIN_LENGTH} characters; this one has {len(key)}"
    if len(set(key)) < MIN_DISTINCT:
        return f"at least {MIN_DISTINCT} different characters; this one repeats a few"
    if _PHRASE.fullmatch(key):
        return "not words: this one is a phrase anyone can guess"
    lowered = key.lower()
    if any(word in lowered for word in _PLACEHOLDERS):
        return "not a placeholder: this one contains a word like 'secret' or 'example'"
    if _estimated_bits(key) < MIN_BITS:
        return f"about {MIN_BITS} bits or more; this one has too few kinds of characters"
    return None


def _estimated_bits(key: str) -> float:
    chars = set(key)
    pool = sum(size for members, size in _CLASSES if chars & members)
    if chars - _CLASSED:
        pool += _OTHER_CLASS
    return len(key) * math.log2(pool)
