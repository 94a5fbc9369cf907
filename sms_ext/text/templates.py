"""SMS templates: their kinds and variables, the checks made before one is saved, rendering.

A template is Jinja in an immutable sandbox with autoescape off (an SMS is plain text, not
HTML). The language is cut down to what a text message needs: ``{{ variables }}``, a few
filters and ``{% if %}``. Loops, ``{% set %}``, macros, includes, function calls and attribute
or item access are refused when the template is checked, because none has a use in a short
text and each opens a way around the sandbox or to unbounded work; the operators that can
multiply a value's size are checked as they run, and the output is cut off at
:data:`MAX_OUTPUT` characters. So the output of a template is bounded by its own length times
the length of its values, and nothing it does reaches Python objects.

The same code checks and renders ``SMS_OTP_MESSAGE``, the templates admins write, and the
samples the editor previews: one renderer.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from jinja2 import TemplateError as JinjaError
from jinja2 import TemplateSyntaxError, nodes
from jinja2.meta import find_undeclared_variables
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from ..errors import TemplateError

KINDS = ("otp", "voucher", "personal", "campaign", "notice")
"""What a template is for; ``otp`` is the guest's code, ``notice`` an operational message."""

_GUEST = {
    "name": "The guest's name, empty when unknown: {{ name or 'there' }} gives a fallback",
    "phone": "The guest's phone number",
    "location": "The location's name",
    "venue": "The venue's (sender's) name",
}
_OPT_OUT = {"opt_out": "How to stop these messages, e.g. 'Reply STOP to opt out'"}

VARIABLES: dict[str, dict[str, str]] = {
    "otp": {
        "code": "The verification code (required)",
        "minutes": "How many minutes the code stays valid",
        "venue": "The venue's name (the splash page's branding)",
    },
    "voucher": {
        **_GUEST,
        "code": "The voucher code",
        "duration": "How long the voucher connects, e.g. '2 hours'",
        "data_limit": "The data allowance, e.g. '500 MB' (empty: unlimited)",
        "valid_until": "Last day the voucher can be used",
        **_OPT_OUT,
    },
    "personal": {**_GUEST, **_OPT_OUT},
    "campaign": {**_GUEST, **_OPT_OUT},
    "notice": {**_GUEST, **_OPT_OUT},
}
"""Per kind, the variables a template may use: name -> what it holds (shown in the editor)."""

SAMPLES: dict[str, str] = {
    "code": "482913",
    "minutes": "10",
    "venue": "Harbour Café",
    "name": "Alex",
    "phone": "+447700900123",
    "location": "Harbour Café Main Hall",
    "duration": "2 hours",
    "data_limit": "500 MB",
    "valid_until": "2026-12-31",
    "opt_out": "Reply STOP to opt out",
}
"""A plausible value per variable: the editor's preview and the checks render with these."""

MAX_SOURCE = 2000
"""Longest template accepted, in characters."""
MAX_OUTPUT = 1600
"""Longest rendered text, in characters: the outbox's own limit for one message."""
_MAX_POWER_BITS = 64

FILTERS = (
    "capitalize",
    "d",
    "default",
    "first",
    "int",
    "last",
    "length",
    "lower",
    "round",
    "string",
    "title",
    "trim",
    "truncate",
    "upper",
)
"""Filters a template may use: none can grow a value beyond its own length."""

_ALLOWED_NODES = (
    nodes.Template,
    nodes.Output,
    nodes.TemplateData,
    nodes.Name,
    nodes.Const,
    nodes.Tuple,
    nodes.List,
    nodes.If,
    nodes.CondExpr,
    nodes.Filter,
    nodes.Test,
    nodes.Compare,
    nodes.Operand,
    nodes.And,
    nodes.Or,
    nodes.Not,
    nodes.Neg,
    nodes.Pos,
    nodes.Concat,
    nodes.BinExpr,
    nodes.Keyword,
)
_REFUSED = {
    nodes.For: "a {% for %} loop",
    nodes.Assign: "{% set %}",
    nodes.AssignBlock: "{% set %}",
    nodes.Macro: "a {% macro %}",
    nodes.CallBlock: "a {% call %} block",
    nodes.FilterBlock: "a {% filter %} block",
    nodes.With: "{% with %}",
    nodes.Call: "calling a function or method",
    nodes.Getattr: "reading an attribute (like ''.__class__)",
    nodes.Getitem: "reading an item or slice (like code[0])",
    nodes.Include: "{% include %}",
    nodes.Import: "{% import %}",
    nodes.FromImport: "{% import %}",
    nodes.Extends: "{% extends %}",
    nodes.Block: "a {% block %}",
}


class _Environment(ImmutableSandboxedEnvironment):
    """The sandbox, with ``*``, ``**`` and ``%`` checked before they run: ``'x' * 10**9``
    would otherwise allocate a gigabyte before any output limit could see it."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for sized, times in ((left, right), (right, left)):
                if (
                    isinstance(sized, str | list | tuple)
                    and isinstance(times, int)
                    and len(sized) * times > MAX_OUTPUT
                ):
                    raise SecurityError(f"the text would be over {MAX_OUTPUT} characters")
        elif operator == "**":
            if (
                isinstance(left, int)
                and isinstance(right, int)
                and abs(left) > 1
                and right * abs(left).bit_length() > _MAX_POWER_BITS
            ):
                raise SecurityError("the number is too large")
        elif isinstance(left, str):  # "%": printf formatting can pad to any width
            raise SecurityError("'%' formatting is not available; join text with '~'")
        return super().call_binop(context, operator, left, right)


_env = _Environment(autoescape=False)
_env.globals.clear()  # no range(), dict(), lipsum(), cycler(), joiner(), namespace()
_env.filters = {name: _env.filters[name] for name in FILTERS}


def _line(node: nodes.Node) -> str:
    return f"Line {node.lineno}: "


def _checked(body: str) -> nodes.Template:
    """Parse ``body`` and refuse what SMS templates may not do; raises :class:`TemplateError`
    whose message starts with the line."""
    if len(body) > MAX_SOURCE:
        raise TemplateError(f"The template is longer than {MAX_SOURCE} characters.")
    try:
        tree = _env.parse(body)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"Line {exc.lineno}: {exc.message}") from None
    for node in tree.find_all(nodes.Node):
        refused = _REFUSED.get(type(node))
        if refused is not None:
            raise TemplateError(f"{_line(node)}{refused} is not allowed in an SMS template.")
        if not isinstance(node, _ALLOWED_NODES):
            raise TemplateError(f"{_line(node)}this construct is not allowed in an SMS template.")
        if isinstance(node, nodes.Filter) and node.name not in _env.filters:
            allowed = ", ".join(FILTERS)
            raise TemplateError(f"{_line(node)}unknown filter '{node.name}' (use {allowed}).")
        if isinstance(node, nodes.Test) and node.name not in _env.tests:
            raise TemplateError(f"{_line(node)}unknown test '{node.name}'.")
    return tree


@functools.lru_cache(maxsize=256)
def _compiled(body: str) -> Any:
    return _env.from_string(_checked(body))


def render(body: str, variables: Mapping[str, object]) -> str:
    """The text of ``body`` with ``variables`` (missing ones render empty), stripped.

    Raises :class:`TemplateError` when the template is refused, fails while rendering, or
    its text would be longer than :data:`MAX_OUTPUT` characters (rendering stops there).
    """
    template = _compiled(body)
    pieces: list[str] = []
    size = 0
    try:
        for piece in template.generate(dict(variables)):
            size += len(piece)
            if size > MAX_OUTPUT:
                break
            pieces.append(piece)
    except (JinjaError, TypeError, ArithmeticError) as exc:
        raise TemplateError(f"The template cannot be rendered: {exc}.") from None
    if size > MAX_OUTPUT:
        raise TemplateError(f"The text would be longer than {MAX_OUTPUT} characters.")
    return "".join(pieces).strip()


def check(body: str, kind: str) -> str:
    """Refuse what cannot be saved as a ``kind`` template; return the text it gives for the
    :data:`SAMPLES`.

    Raises :class:`TemplateError` for an unknown kind, a syntax error or a refused construct
    (with the line), a variable the kind does not have (by name, with the line of its first
    use), an OTP template that does not show ``{{ code }}``, and whatever :func:`render`
    refuses for the sample values.
    """
    if kind not in VARIABLES:
        raise TemplateError(f"Unknown kind {kind!r}; use one of {', '.join(KINDS)}.")
    if not body.strip():
        raise TemplateError("The template is empty.")
    tree = _checked(body)
    known = VARIABLES[kind]
    # Without {% set %} or loops every name is read from the variables; Jinja does not count
    # ``self`` (the template reference) as undeclared, so the names are collected too.
    names = find_undeclared_variables(tree) | {node.name for node in tree.find_all(nodes.Name)}
    unknown = names - known.keys()
    if unknown:
        first = min(
            (node for node in tree.find_all(nodes.Name) if node.name in unknown),
            key=lambda node: node.lineno,
        )
        allowed = ", ".join(sorted(known))
        raise TemplateError(
            f"{_line(first)}unknown variable '{first.name}'; {kind} templates can use {allowed}."
        )
    text = render(body, sample_values(kind))
    if kind == "otp" and SAMPLES["code"] not in text:
        raise TemplateError("An OTP template must show the code: put {{ code }} in it.")
    return text


def sample_values(kind: str) -> dict[str, str]:
    """The sample value of each variable of ``kind``."""
    return {name: SAMPLES[name] for name in VARIABLES.get(kind, {})}
