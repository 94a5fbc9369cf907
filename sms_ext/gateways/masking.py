"""Keep secrets out of logs, attempt records and admin pages, and what we store printable.

A secret can leak in several spellings (as typed, URL-encoded, inside a Basic auth header), so
:func:`redact` masks each of them; :func:`summarize` is how a request is shown anywhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import quote, quote_plus

if TYPE_CHECKING:
    from .base import PreparedCall

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


_CONTROL = {code: "\ufffd" for code in range(32) if chr(code) not in "\t\n\r"}


def storable(text: str) -> str:
    """Text safe for every database and page: control characters (NUL above all, which
    PostgreSQL refuses) become U+FFFD."""
    return text.translate(_CONTROL)


def summarize(call: PreparedCall, secrets: Iterable[str]) -> str:
    """The request as text, as an admin may see it: every secret masked."""
    secrets = list(secrets)
    lines = [f"{call.method} {redact(call.url, secrets)}"]
    headers = dict(call.headers)
    if call.auth:
        headers["Authorization"] = "Basic <credentials>"
    for name, value in redact_headers(headers, secrets).items():
        lines.append(f"{name}: {value}")
    if call.body:
        lines.append("")
        lines.append(redact(call.body.decode("utf-8", errors="replace"), secrets))
    return storable("\n".join(lines))
