"""The one interface every gateway driver implements.

Drivers never see ORM objects: they get a plain config mapping (secrets already decrypted) and
:class:`OutgoingSMS` values, and answer with :class:`SendResult`. That keeps them testable
against the simulator alone and lets the pipeline decide about retries and fallback.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar

import requests

from ..errors import GatewayConfigError, LuaScriptError
from .masking import STORED_MASK, redact, show_stored_mask, summarize


@dataclass(frozen=True)
class OutgoingSMS:
    """One message as a driver sees it."""

    reference: str
    """Our message id, as text; drivers pass it where a provider accepts a client reference."""
    to: str
    """Recipient in E.164 with the leading ``+``."""
    body: str

    @property
    def phone_digits(self) -> str:
        """The recipient without the ``+``: what many providers expect."""
        return self.to.lstrip("+")


@dataclass
class SendResult:
    """What happened when one message was handed to one gateway."""

    ok: bool
    provider_id: str | None = None
    http_status: int | None = None
    response_excerpt: str = ""
    error: str = ""
    retryable: bool = False
    """True when trying again later may succeed (timeouts, 5xx, 429, connection errors)."""
    retry_after: float | None = None
    """Seconds the provider asked us to wait (``Retry-After``), when it said."""
    request_summary: str = ""
    """Method, URL, headers and body of the request with every secret masked."""
    duration_ms: int = 0


@dataclass
class PreparedCall:
    """A request a driver would send, kept apart from sending so the admin can preview it."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    auth: tuple[str, str] | None = None


class Driver(ABC):
    """Base class of gateway drivers; one module per gateway type.

    :param config: the gateway's settings merged with its decrypted secrets, as produced by
        :meth:`validate`.
    :param session: a kept-alive HTTP session shared by every send of one worker batch.
    """

    kind: ClassVar[str]
    """The gateway type stored in ``Gateway.type``."""
    fields: ClassVar[tuple[str, ...]]
    """Config fields this type uses (the admin form's names)."""
    secret_fields: ClassVar[tuple[str, ...]] = ()
    """Fields stored encrypted and shown masked."""
    max_batch: ClassVar[int] = 1
    """How many messages one provider request can carry (bulk endpoints)."""
    last_error: str = ""
    """Why the last :meth:`check_balance` returned ``None`` ('' after a success). A balance is
    advisory (a dashboard figure, a low-credit warning), so failing to read it is a reason to
    show, not an exception."""

    def __init__(self, config: Mapping[str, Any], session: requests.Session) -> None:
        self.config = config
        self.session = session

    @classmethod
    @abstractmethod
    def validate(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """Check and normalise a config; raise :class:`GatewayConfigError` listing every problem."""

    @classmethod
    def destination(cls, config: Mapping[str, Any]) -> tuple[str, ...]:
        """Where ``config`` (form-shaped, unvalidated) would send the secrets. A stored secret is
        only ever sent to where it was typed for: when the destination changes, the store
        asks for the secrets again instead of keeping the stored ones."""
        return ()

    @abstractmethod
    def send(self, sms: OutgoingSMS) -> SendResult:
        """Hand one message to the provider. Never raises for provider or network trouble."""

    def send_many(self, batch: Sequence[OutgoingSMS]) -> list[SendResult]:
        """Hand several messages over; drivers with a bulk endpoint override this."""
        return [self.send(sms) for sms in batch]

    def prepare(self, sms: OutgoingSMS) -> PreparedCall:
        """The request that would send ``sms``, as far as it is known before sending.

        Raises ``ValueError`` or :class:`~sms_ext.LuaScriptError` when the configuration
        cannot build it. Drivers that make no HTTP request override :meth:`preview` instead.
        """
        raise NotImplementedError(f"{type(self).__name__} builds no HTTP request.")

    def preview(self, sms: OutgoingSMS) -> str:
        """What :meth:`send` would send for ``sms``, as text with every secret masked: the
        admin's "Preview request", the same for every gateway type.

        :raises GatewayConfigError: under ``"preview"``, why the request cannot be built.
        """
        try:
            call = self.prepare(sms)
        except (ValueError, LuaScriptError) as exc:
            raise GatewayConfigError({"preview": redact(str(exc), self.secrets)}) from None
        return show_stored_mask(summarize(call, self.secrets))

    def check_balance(self) -> Decimal | None:
        """The account balance when the provider tells it, else ``None`` (see last_error)."""
        self.last_error = "This gateway type does not report a balance."
        return None

    @property
    def secrets(self) -> list[str]:
        """Secret values of this config, to mask wherever they could appear."""
        values = (str(self.config.get(name) or "") for name in self.secret_fields)
        return [value for value in values if value and value != STORED_MASK]
