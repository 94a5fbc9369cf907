"""Guest codes in the outbox: masked at rest, revealed only for the gateway request.

A code's message row holds the text with the code masked (``Your Wi-Fi code is ••••••``), which
is what the admin log, its CSV export, its detail page and any log line show. The code itself
is kept apart with the real text, encrypted with the gateway vault, in ``code_sealed``; the
worker opens it in the thread that sends the request, scrubs it from what the gateway's answer
and our request summary recorded, and the column is cleared once the message is final, except
for messages the sandbox gateway "sent": its phone is the demo inbox (:func:`sandbox_text`).
"""

from __future__ import annotations

from dataclasses import replace

from ..errors import VaultError
from ..gateways import SendResult
from ..gateways.vault import Vault
from ..models import Message

MASK = "\u2022"
"""One bullet per hidden digit."""


def masked(code: str) -> str:
    """What stands in for ``code`` in stored and shown text."""
    return MASK * len(code)


def seal(vault: Vault, text: str, code: str) -> str:
    """The value of ``code_sealed``: the real text (whatever the template did with the code)
    and the code, to scrub it from what gets recorded."""
    return vault.seal({"text": text, "code": code})


def reveal(vault: Vault, message: Message) -> tuple[str, str | None]:
    """The text to send for ``message``, and its code (None for a message without one).

    Raises :class:`~sms_ext.errors.VaultError` when the key changed since the code was sealed.
    """
    if not message.code_sealed:
        return message.body, None
    sealed = vault.open(message.code_sealed)
    return sealed["text"], sealed["code"]


def sandbox_text(vault: Vault, message: Message) -> str:
    """What the sandbox gateway "delivered" for ``message``, for a demo inbox: the real text
    of a guest code (the masked one when the key changed since)."""
    try:
        return reveal(vault, message)[0]
    except VaultError:
        return message.body


def scrub(result: SendResult, code: str | None) -> SendResult:
    """``result`` with ``code`` masked wherever the request summary, the gateway's answer or the
    error repeat it (digits survive URL and JSON encoding unchanged)."""
    if not code:
        return result
    hidden = masked(code)
    return replace(
        result,
        request_summary=result.request_summary.replace(code, hidden),
        response_excerpt=result.response_excerpt.replace(code, hidden),
        error=result.error.replace(code, hidden),
    )
