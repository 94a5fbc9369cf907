"""Keep secrets out of logs, attempt records and admin pages.

A secret can leak in several spellings (as typed, URL-encoded, inside a Basic auth header), so
:func:`redact` masks each of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import quote, quote_plus

MASK = "****"

SENSITIVE_HEADER_WORDS = ("authorization", "auth", "key", "token", "secret", "password", "cookie")


def _spellings(secret: str) -> set[str]:
    forms = {secret, quote(secret, safe=""), quote_plus(secret)}
    return {form for form in forms if form}


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every spelling of every secret in ``text`` with :data:`MASK`."""
    values = [s for s in secrets if s and len(s) >= 3]
    for secret in sorted(values, key=len, reverse=True):
        for form in sorted(_spellings(secret), key=len, reverse=True):
            text = text.replace(form, MASK)
    return text


def redact_headers(headers: dict[str, str], secrets: Iterable[str]) -> dict[str, str]:
    """Headers as they may be shown: secrets masked, credentials-like headers masked whole."""
    secrets = list(secrets)
    shown: dict[str, str] = {}
    for name, value in headers.items():
        lowered = name.lower()
        if lowered == "authorization":
            scheme, _, _ = value.partition(" ")
            shown[name] = f"{scheme} {MASK}" if scheme and scheme != value else MASK
        elif any(word in lowered for word in SENSITIVE_HEADER_WORDS):
            shown[name] = MASK
        else:
            shown[name] = redact(value, secrets)
    return shown
