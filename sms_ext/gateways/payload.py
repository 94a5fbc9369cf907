"""Payload templates of custom gateways: placeholders substituted in the encoding of their place.

A message is user text: quotes, ``&``, ``=``, ``#``, ``%``, newlines and emoji must reach the
provider exactly as written. So a template is parsed first (as JSON, or as form pairs) and the
values are substituted into the parsed structure, which is then serialised; in a URL each value
is percent-encoded. Nothing is ever pasted into raw text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

from ..errors import TemplateError

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")

PLACEHOLDERS: dict[str, str] = {
    "phone": "recipient in E.164 with + (e.g. +27831234567)",
    "phone_digits": "recipient without + (e.g. 27831234567)",
    "message": "the message text",
    "reference": "our message id",
    "from": "the sender (From number or sender ID)",
    "api_key": "the gateway's API key (secret, masked in logs)",
    "api_secret": "the gateway's API secret (secret, masked in logs)",
}
"""Every placeholder a template may use, with what it stands for (shown on the admin form)."""

FORM = "form"
JSON = "json"


def unknown_placeholders(template: str) -> list[str]:
    """Names in ``{...}`` that are not placeholders we know, in order of appearance."""
    seen: list[str] = []
    for name in PLACEHOLDER.findall(template):
        if name not in PLACEHOLDERS and name not in seen:
            seen.append(name)
    return seen


def substitute(template: str, values: Mapping[str, str], encode=lambda value: value) -> str:
    """Replace each placeholder with ``encode(value)``; unknown names are left as written."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        return encode(values[name]) if name in values else match.group(0)

    return PLACEHOLDER.sub(replace, template)


def render_url(template: str, values: Mapping[str, str]) -> str:
    """The URL with every placeholder percent-encoded (``+``, ``&``, ``#`` and ``/`` too)."""
    return substitute(template, values, lambda value: quote(value, safe=""))


def parse_form_template(template: str) -> list[tuple[str, str]]:
    """Split a form template (``a=1&b={message}``, or one pair a line) into its pairs.

    Splitting happens before substitution so that ``&`` or ``=`` inside a message cannot create
    new fields. Literal values are taken as typed (not URL-decoded): they are encoded once, on
    rendering, like the substituted values.
    """
    joined = "&".join(line.strip() for line in template.strip().splitlines() if line.strip())
    if not joined:
        return []
    pairs = []
    for chunk in joined.split("&"):
        if not chunk:
            continue
        name, separator, value = chunk.partition("=")
        if not separator or not name.strip():
            raise TemplateError(f"Form payload part '{chunk[:40]}' is not a name=value pair.")
        pairs.append((name.strip(), value))
    return pairs


def render_form(template: str, values: Mapping[str, str]) -> str:
    """The form body (or query string), each name and value URL-encoded after substitution."""
    pairs = [
        (substitute(name, values), substitute(value, values))
        for name, value in parse_form_template(template)
    ]
    return urlencode(pairs, quote_via=quote)


def parse_json_template(template: str) -> Any:
    """Parse a JSON template; placeholders must sit inside JSON strings (``"{message}"``)."""
    try:
        return json.loads(template)
    except json.JSONDecodeError as exc:
        hint = ""
        if PLACEHOLDER.search(template):
            hint = ' Placeholders go inside JSON strings, e.g. "text": "{message}".'
        raise TemplateError(
            f"Payload is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.{hint}"
        ) from None


def _fill(node: Any, values: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return substitute(node, values)
    if isinstance(node, list):
        return [_fill(item, values) for item in node]
    if isinstance(node, dict):
        return {substitute(key, values): _fill(item, values) for key, item in node.items()}
    return node


def render_json(template: str, values: Mapping[str, str]) -> bytes:
    """The JSON body: the parsed template with placeholders filled, serialised as UTF-8."""
    document = _fill(parse_json_template(template), values)
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def validate_template(template: str, content_type: str) -> None:
    """Refuse a payload that cannot be rendered, before it is saved."""
    unknown = unknown_placeholders(template)
    if unknown:
        names = ", ".join("{" + name + "}" for name in unknown)
        known = ", ".join("{" + name + "}" for name in PLACEHOLDERS)
        raise TemplateError(f"Unknown placeholder {names}. Known placeholders: {known}.")
    if not template.strip():
        return
    if content_type == JSON:
        parse_json_template(template)
    else:
        parse_form_template(template)
