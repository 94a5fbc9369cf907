"""How a custom gateway's webhooks read (``Gateway.hooks``): field names and the status mapping.

Every provider names things its own way (``MessageId``, ``msgid``, ``data.id``; ``DELIVRD``,
``DELIVERED``, ``1``), so the admin says where to look and what each status means. The
defaults cover the common SMPP-style words, so many gateways need no mapping at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..models import Status

FIELDS = {
    "id": "Message id",
    "status": "Status",
    "error_code": "Error code",
    "from": "Sender (inbound)",
    "text": "Text (inbound)",
}
"""Field keys of ``Gateway.hooks["fields"]``, with their labels; the default name is the key."""
TARGETS = {
    "delivered": Status.DELIVERED,
    "undelivered": Status.UNDELIVERED,
    "failed": Status.FAILED,
    "ignore": None,
}
"""What a provider's status may mean; ``ignore`` for intermediate ones (accepted, sent...)."""
DEFAULT_STATUSES: dict[str, str] = {
    "delivered": "delivered",
    "delivrd": "delivered",
    "success": "delivered",
    "undelivered": "undelivered",
    "undeliv": "undelivered",
    "expired": "undelivered",
    "expird": "undelivered",
    "soft-bounce": "undelivered",
    "failed": "failed",
    "rejected": "failed",
    "rejectd": "failed",
    "hard-bounce": "failed",
    "deleted": "failed",
}
"""Provider statuses understood without a mapping (matched ignoring case)."""
MAX_FIELD = 100
MAX_LINES = 50


def field_names(hooks: Mapping[str, Any] | None) -> dict[str, str]:
    """The dotted path of each field for this gateway (defaults filled in)."""
    chosen = (hooks or {}).get("fields") or {}
    return {key: str(chosen.get(key) or key) for key in FIELDS}


def statuses(hooks: Mapping[str, Any] | None) -> dict[str, str]:
    """Provider status (lower case) -> our meaning: the defaults, then the admin's lines."""
    return {**DEFAULT_STATUSES, **((hooks or {}).get("statuses") or {})}


def meaning(hooks: Mapping[str, Any] | None, raw: str) -> str | None:
    """Our status for a provider's ``raw`` status; None to ignore it."""
    target = statuses(hooks).get(raw.strip().lower())
    return TARGETS.get(target) if target else None


def parse_statuses(text: str) -> tuple[dict[str, str], list[str]]:
    """Mapping lines (``DELIVRD=delivered``) -> (mapping, problems, one sentence per bad line)."""
    mapping: dict[str, str] = {}
    problems: list[str] = []
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) > MAX_LINES:
        return {}, [f"At most {MAX_LINES} status lines."]
    for number, line in enumerate(lines, start=1):
        raw, sep, target = line.partition("=")
        raw, target = raw.strip().lower(), target.strip().lower()
        if not sep or not raw or len(raw) > MAX_FIELD:
            problems.append(f"Line {number}: write it as PROVIDER_STATUS=meaning.")
        elif target not in TARGETS:
            problems.append(f"Line {number}: the meaning must be one of {', '.join(TARGETS)}.")
        else:
            mapping[raw] = target
    return mapping, problems


def entry(data: Mapping[str, Any], kind: str, errors: dict[str, str]) -> dict[str, Any] | None:
    """``Gateway.hooks`` from form-shaped ``data["hooks"]`` (``fields``: name per key,
    ``statuses``: mapping lines or a mapping); problems go to ``errors`` under ``hooks_<key>``.

    None keeps what is stored: an entry without ``hooks`` (an older export), or a gateway type
    whose webhooks read fixed fields.
    """
    raw = data.get("hooks")
    if kind != "custom" or not isinstance(raw, Mapping):
        return None
    fields: dict[str, str] = {}
    given = raw.get("fields")
    chosen: Mapping[str, Any] = given if isinstance(given, Mapping) else {}
    for key, label in FIELDS.items():
        name = str(chosen.get(key) or "").strip()
        if len(name) > MAX_FIELD or any(ch.isspace() for ch in name):
            errors[f"hooks_{key}"] = f"{label}: a field name or dotted path, without spaces."
        elif name and name != key:
            fields[key] = name
    lines = raw.get("statuses") or ""
    if isinstance(lines, Mapping):
        lines = "\n".join(f"{k}={v}" for k, v in lines.items())
    statuses, problems = parse_statuses(str(lines))
    if problems:
        errors["hooks_statuses"] = " ".join(problems)
    return {"fields": fields, "statuses": statuses}


def format_statuses(hooks: Mapping[str, Any] | None) -> str:
    """The admin's own mapping lines, as the form shows them."""
    own = (hooks or {}).get("statuses") or {}
    return "\n".join(f"{raw}={target}" for raw, target in own.items())
