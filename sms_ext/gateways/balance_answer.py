"""Reading the balance out of a provider's answer: a dotted path into JSON, or a regular
expression with one group for answers that are not JSON.

Python's ``re`` has no timeout, and an admin's pattern runs in every worker, so patterns are
kept simple rather than interrupted: at most :data:`MAX_PATTERN` characters, no quantifier
inside a quantified group (``(a+)+``, the catastrophic backtracking shape), no alternation
under a quantifier, no backreferences or lookarounds; and only the first
:data:`MAX_SEARCHED` characters of an answer are searched. Such a pattern backtracks at most
polynomially over a bounded input.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

# The parser behind ``re`` (Python 3.11+) says what a pattern is made of.
from re import _constants as sre_constants  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]

MAX_PATTERN = 200
MAX_SEARCHED = 64 * 1024
LIMIT = Decimal(10) ** 10
"""Balances from this size up do not fit the column (and are no balance anyway)."""
THOUSANDS = re.compile(r"-?\d{1,3}(,\d{3})+(\.\d+)?")
_REPEATS = {sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT, sre_constants.POSSESSIVE_REPEAT}
_REFUSED = {
    sre_constants.GROUPREF,
    sre_constants.GROUPREF_EXISTS,
    sre_constants.ASSERT,
    sre_constants.ASSERT_NOT,
}


class BalanceAnswerError(ValueError):
    """Why an answer holds no balance, in words for the gateway page."""


def _walk(items: object, under_repeat: bool) -> str | None:
    """Why the parsed pattern ``items`` is not simple, or ``None``."""
    for op, argument in items:  # type: ignore[attr-defined]
        if op in _REFUSED:
            return "backreferences and lookarounds are not allowed"
        if op in _REPEATS:
            if under_repeat:
                return "a repeated group must not contain another quantifier"
            if problem := _walk(argument[2], True):
                return problem
        elif op == sre_constants.SUBPATTERN:
            if problem := _walk(argument[3], under_repeat):
                return problem
        elif op == sre_constants.BRANCH:
            if under_repeat:
                return "alternatives (|) must not be repeated"
            for branch in argument[1]:
                if problem := _walk(branch, under_repeat):
                    return problem
        elif op == sre_constants.ATOMIC_GROUP and (problem := _walk(argument, under_repeat)):
            return problem
    return None


def check_pattern(pattern: str) -> str | None:
    """Why ``pattern`` cannot be a balance pattern (for the form), or ``None``."""
    if len(pattern) > MAX_PATTERN:
        return f"Pattern must be at most {MAX_PATTERN} characters."
    try:
        compiled = re.compile(pattern)
        parsed = sre_parse.parse(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        return f"Pattern is not a valid regular expression: {exc}."
    if compiled.groups != 1:
        return "Pattern must have exactly one group around the balance, e.g. Balance: ([0-9.]+)"
    if problem := _walk(list(parsed), False):
        return f"Pattern too complex to run safely: {problem}."
    return None


def amount(raw: object) -> Decimal:
    """A balance from a JSON value or matched text: ``12.5``, ``"12.50"``, ``"1,234.50"``."""
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise BalanceAnswerError(f"not a number: {_shown(raw)}")
    text = str(raw).strip()
    if THOUSANDS.fullmatch(text):
        text = text.replace(",", "")
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise BalanceAnswerError(f"not a number: {_shown(raw)}") from None
    if not value.is_finite() or abs(value) >= LIMIT:
        raise BalanceAnswerError(f"not a usable balance: {_shown(raw)}")
    return value


def _shown(raw: object) -> str:
    text = repr(raw) if isinstance(raw, str) else type(raw).__name__ if raw is not None else "null"
    return text if len(text) <= 40 else text[:37] + "..."


def at_path(document: object, path: str) -> object:
    """The value at dotted ``path`` (list items by index: ``items.0.balance``); object keys
    match exactly, else ignoring case (providers document one casing and send another)."""
    node = document
    for part in path.split("."):
        if isinstance(node, dict):
            if part in node:
                node = node[part]
                continue
            folded = {str(key).lower(): value for key, value in node.items()}
            if part.lower() in folded:
                node = folded[part.lower()]
                continue
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
            continue
        raise BalanceAnswerError(f"field {path} missing in the answer")
    return node


def from_json(document: object, path: str) -> Decimal:
    """The balance at ``path`` of a parsed JSON answer (``None``: the answer was not JSON)."""
    if document is None:
        raise BalanceAnswerError(f"the answer is not JSON, so it has no field {path}")
    return amount(at_path(document, path))


def from_text(text: str, pattern: str) -> Decimal:
    """The balance matched by ``pattern``'s group in the first part of ``text``."""
    match = re.search(pattern, text[:MAX_SEARCHED])
    if match is None or match.group(1) is None:
        raise BalanceAnswerError("the pattern does not match the answer")
    return amount(match.group(1))
