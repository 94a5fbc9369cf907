"""Signing helpers for Lua scripts, computed in Python.

HMAC-SHA256 written in Lua costs tens of thousands of instructions per call, a real part of a
script's budget, so scripts get these instead. They are plain functions of byte strings that
return a byte string (or ``None`` when the input is unusable, which the prelude's Lua wrappers
turn into a clean script error): the script only ever sees those Lua wrappers, never a Python
object. The prelude checks that every argument is a string before calling.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time


def hmac_sha256_hex(key: bytes, data: bytes) -> bytes:
    """HMAC-SHA256 of ``data`` keyed with ``key``, as lowercase hex."""
    return hmac.new(key, data, hashlib.sha256).hexdigest().encode("ascii")


def hmac_sha256_base64(key: bytes, data: bytes) -> bytes:
    """HMAC-SHA256 of ``data`` keyed with ``key``, as standard base64."""
    return base64.b64encode(hmac.new(key, data, hashlib.sha256).digest())


def sha256_hex(data: bytes) -> bytes:
    """SHA-256 of ``data``, as lowercase hex."""
    return hashlib.sha256(data).hexdigest().encode("ascii")


def base64_decode(data: bytes) -> bytes | None:
    """Standard or URL-safe base64 (padding optional) decoded; ``None`` when it is not base64."""
    text = data.strip().replace(b"-", b"+").replace(b"_", b"/")
    try:
        return base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def now() -> int:
    """Seconds since 1970-01-01 UTC: what request signatures carry as a timestamp."""
    return int(time.time())


HELPERS = {
    "hmac_sha256_hex": hmac_sha256_hex,
    "hmac_sha256_base64": hmac_sha256_base64,
    "sha256_hex": sha256_hex,
    "base64_decode": base64_decode,
    "now": now,
}
"""What the prelude wraps, by the name scripts call it under."""
