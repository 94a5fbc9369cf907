"""Keep secrets out of logs, attempt records and admin pages, and what we store printable.

A secret reaches a request, an answer or an error in many spellings: as typed, escaped inside a
JSON string, percent- or form-encoded, or base64-encoded (alone, or inside a longer encoded text
such as Basic auth's ``user:secret``). :func:`redact` masks each of them; :func:`summarize` is
how a request is shown anywhere.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import quote, quote_plus

if TYPE_CHECKING:
    from .base import PreparedCall

MASK = "****"
STORED_MASK = "\u2022" * 4
"""What a preview uses instead of a stored secret (it only ever uses typed ones); not itself
secret, so shown as it is."""

SENSITIVE_HEADER_WORDS = ("authorization", "auth", "key", "token", "secret", "password", "cookie")


MIN_BASE64_CORE = 4
"""Shortest stable base64 run worth masking: shorter runs would mask unrelated text."""


def _base64_cores(data: bytes) -> set[str]:
    """The base64 text ``data`` always encodes to, whatever precedes or follows it.

    Base64 turns 3 bytes into 4 characters, so the secret's encoding inside a longer text
    (``user:secret`` in Basic auth) depends on its offset modulo 3: for each offset, keep the
    characters made of the secret's bytes only, in both alphabets.
    """
    cores: set[str] = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + data).decode("ascii").rstrip("=")
        start = -(-offset * 4 // 3)  # characters touched by the padding bytes in front
        end = (offset + len(data)) * 4 // 3  # characters made of whole secret bytes only
        core = encoded[start:end]
        if len(core) >= MIN_BASE64_CORE:
            cores.add(core)
            cores.add(core.replace("+", "-").replace("/", "_"))
    return cores


def _spellings(secret: str) -> set[str]:
    escaped = json.dumps(secret)[1:-1]
    forms = {
        secret,
        escaped,
        json.dumps(secret, ensure_ascii=False)[1:-1],
        escaped.replace("/", "\\/"),  # JSON allows (and PHP writes) an escaped slash
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
        *_base64_cores(secret.encode("utf-8")),
    }
    return {form for form in forms if form}


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every spelling of every secret in ``text`` with :data:`MASK`."""
    values = [s for s in secrets if s and len(s) >= 3]
    for secret in sorted(values, key=len, reverse=True):
        for form in sorted(_spellings(secret), key=len, reverse=True):
            text = text.replace(form, MASK)
    return text


def show_stored_mask(text: str) -> str:
    """``text`` with every encoded spelling of :data:`STORED_MASK` (``%E2%80%A2...`` in a URL,
    ``\\u2022...`` in JSON) written back as the mask itself, so a preview reads the same
    wherever a stored secret would go."""
    for form in sorted(_spellings(STORED_MASK) - {STORED_MASK}, key=len, reverse=True):
        text = text.replace(form, STORED_MASK)
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
