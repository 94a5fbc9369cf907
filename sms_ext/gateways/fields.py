"""Checks shared by the gateway types' ``validate`` methods.

Each helper records a human message under the form field's name in ``errors`` instead of
raising, so one save shows every problem at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

DEFAULT_TIMEOUT = 10.0
MAX_TIMEOUT = 60.0


def text(config: Mapping[str, Any], name: str) -> str:
    """A config value as stripped text ('' when missing)."""
    value = config.get(name)
    return "" if value is None else str(value).strip()


def required(config: Mapping[str, Any], name: str, label: str, errors: dict[str, str]) -> str:
    """A required text field; records "<label> is required." when empty."""
    value = text(config, name)
    if not value:
        errors[name] = f"{label} is required."
    return value


def http_url(value: str, name: str, label: str, errors: dict[str, str]) -> str:
    """An absolute http(s) URL with a host, without trailing slash."""
    try:
        parts = urlsplit(value)
        _ = parts.port  # reading it checks it: "a:99999" and "a:x" raise
    except ValueError:  # "http://[", a port out of range
        errors[name] = f"{label} is not a valid URL (check the host and port)."
        return value
    if parts.scheme not in ("http", "https") or not parts.netloc:
        errors[name] = f"{label} must be an absolute http:// or https:// URL."
    elif any(ch in value for ch in "\r\n\t "):
        errors[name] = f"{label} must not contain spaces or line breaks."
    return value.rstrip("/")


def destination_url(config: Mapping[str, Any], name: str, default: str = "") -> str:
    """A URL field as compared to decide whether secrets may be kept (see
    :meth:`Driver.destination`): blank means ``default``; case of scheme and host and a trailing
    slash do not count as a change."""
    raw = text(config, name) or default
    try:
        parts = urlsplit(raw)
    except ValueError:  # not a URL at all ("http://["): compared as typed
        return raw
    lowered = parts._replace(scheme=parts.scheme.lower(), netloc=parts.netloc.lower())
    return lowered.geturl().rstrip("/")


def timeout(config: Mapping[str, Any], errors: dict[str, str]) -> float:
    """Seconds to wait for the provider: a number from 0.1 to 60 (default 10)."""
    raw = config.get("timeout")
    if raw in (None, ""):
        return DEFAULT_TIMEOUT
    try:
        seconds = float(raw)
    except (TypeError, ValueError):
        errors["timeout"] = "Timeout must be a number of seconds."
        return DEFAULT_TIMEOUT
    if not 0.1 <= seconds <= MAX_TIMEOUT:
        errors["timeout"] = f"Timeout must be between 0.1 and {MAX_TIMEOUT:g} seconds."
    return seconds


def boolean(config: Mapping[str, Any], name: str, default: bool) -> bool:
    """A checkbox-like value: accepts real booleans and the usual form spellings."""
    raw = config.get(name)
    if raw is None or raw == "":
        return default
    if isinstance(raw, bool):
        return raw
    return str(raw).strip().lower() in ("1", "true", "yes", "on", "y")
