"""Tables of the extension: gateways, the message outbox/log, and every send attempt.

They live on their own :data:`metadata` (tables prefixed ``sms_``) so a host app keeps its own
declarative base; the host's Flask-SQLAlchemy session reads and writes them. Times are naive UTC
everywhere, which SQLite and PostgreSQL store alike.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    select,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.sql import Select

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Deterministic constraint names, so migrations can alter them (SQLite batch mode needs names)."""

metadata = MetaData(naming_convention=NAMING_CONVENTION)

BigId = BigInteger().with_variant(Integer, "sqlite")
"""64-bit ids; SQLite only auto-increments an INTEGER PRIMARY KEY."""


def utcnow() -> datetime:
    """Now, as the naive UTC datetime every column stores."""
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    metadata = metadata


class Status(StrEnum):
    """Message states; a message moves forward only (a retry goes back to QUEUED).

    Members are strings, stored as their value: ``Status.SENT == "sent"``.
    """

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    FAILED = "failed"


class Kind(StrEnum):
    """Why a message was sent (a string enum, stored as its value)."""

    OTP = "otp"
    PERSONAL = "personal"
    VOUCHER = "voucher"
    CAMPAIGN = "campaign"
    TEST = "test"


class Gateway(Base):
    """An SMS provider account; enabled gateways are tried in ``priority`` order."""

    __tablename__ = "sms_gateway"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    type: Mapped[str] = mapped_column(String(20))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    priority: Mapped[int] = mapped_column(Integer, default=0, index=True)
    locations: Mapped[list[str]] = mapped_column(JSON, default=list)
    """Location keys this gateway serves; empty means every location."""
    max_per_second: Mapped[int | None] = mapped_column(Integer)
    """Requests per second the provider accepts, counted across every worker; None = no limit."""
    max_in_flight: Mapped[int | None] = mapped_column(Integer)
    """Requests the provider may hold at once, across every worker; None = no limit."""
    lua_enabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """Whether a custom gateway runs its Lua script; off keeps the script without running it."""
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """Non-secret settings of the type (URL, payload, sender...)."""
    secrets_sealed: Mapped[str | None] = mapped_column(Text)
    """Secret settings, encrypted with :class:`sms_ext.vault.Vault`."""
    balance: Mapped[Decimal | None] = mapped_column(Numeric(14, 4))
    """The account balance the provider last reported (its own currency or credits)."""
    balance_checked_at: Mapped[datetime | None] = mapped_column(DateTime)
    balance_error: Mapped[str | None] = mapped_column(Text)
    """Why the last balance check gave no figure."""
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    @classmethod
    def in_order(cls) -> Select[Gateway]:
        """Every gateway, primary first: the order fallback follows and pages list them in."""
        return select(cls).order_by(cls.priority, cls.id)

    def serves(self, location: str | None) -> bool:
        """Whether a message for ``location`` may go through this gateway."""
        return not self.locations or (location is not None and location in self.locations)

    def __repr__(self) -> str:
        return f"<Gateway {self.id} {self.name!r} {self.type}>"


class Message(Base):
    """One SMS: the outbox row a worker delivers and, afterwards, its log entry."""

    __tablename__ = "sms_message"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    to: Mapped[str] = mapped_column(String(20))
    body: Mapped[str] = mapped_column(Text)
    encoding: Mapped[str] = mapped_column(String(8))
    segments: Mapped[int] = mapped_column(SmallInteger)
    status: Mapped[str] = mapped_column(String(12), default=Status.QUEUED)
    location: Mapped[str | None] = mapped_column(String(80))
    customer_ref: Mapped[str | None] = mapped_column(String(120))
    """Free reference to the host's customer/guest record."""
    sent_by: Mapped[str | None] = mapped_column(String(120))
    """Who sent it by hand (an admin's username); ``None`` for the system's own messages."""
    gateway_id: Mapped[int | None] = mapped_column(
        ForeignKey("sms_gateway.id", ondelete="SET NULL")
    )
    """The gateway that took the message; for a test send, the only one to use."""
    only_gateway: Mapped[bool] = mapped_column(Boolean, default=False)
    """True when the message must go through ``gateway_id`` and no other (test sends)."""
    provider_message_id: Mapped[str | None] = mapped_column(String(120))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    """Delivery rounds so far (each round may try several gateways)."""
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime)
    """Lease of the worker sending it; past it, the sweeper takes the message back."""
    claim_token: Mapped[str | None] = mapped_column(String(32))
    job_id: Mapped[str | None] = mapped_column(String(40))
    """The RQ job meant to deliver it next; the sweeper re-enqueues when that job is gone."""
    sent_at: Mapped[datetime | None] = mapped_column(DateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime)
    failed_at: Mapped[datetime | None] = mapped_column(DateTime)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    code_sealed: Mapped[str | None] = mapped_column(Text)
    """A guest code, encrypted; ``body`` shows it masked. Cleared once the message is final
    (see :mod:`sms_ext.messages.secrecy`)."""

    gateway: Mapped[Gateway | None] = relationship(lazy="joined")
    attempt_log: Mapped[list[MessageAttempt]] = relationship(
        back_populates="message", order_by="MessageAttempt.id", lazy="select"
    )

    __table_args__ = (
        Index("ix_sms_message_status_next", "status", "next_attempt_at"),
        Index("ix_sms_message_created", "created_at"),
        Index("ix_sms_message_kind_created", "kind", "created_at"),
        Index("ix_sms_message_to_created", "to", "created_at"),
        Index("ix_sms_message_location_created", "location", "created_at"),
        Index("ix_sms_message_gateway_created", "gateway_id", "created_at"),
        Index("ix_sms_message_provider_id", "provider_message_id"),
        Index("ix_sms_message_claim", "claim_token"),
        Index("ix_sms_message_customer_created", "customer_ref", "created_at"),
    )

    def __repr__(self) -> str:
        return f"<Message {self.id} {self.kind} to {self.to} {self.status}>"


class MessageAttempt(Base):
    """One try of one message on one gateway, kept for the admin and for audits."""

    __tablename__ = "sms_message_attempt"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    message_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("sms_message.id", ondelete="CASCADE"), index=True
    )
    gateway_id: Mapped[int | None] = mapped_column(
        ForeignKey("sms_gateway.id", ondelete="SET NULL")
    )
    gateway_name: Mapped[str] = mapped_column(String(80))
    """The gateway's name at the time, kept when the gateway is renamed or deleted."""
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    ok: Mapped[bool] = mapped_column(Boolean)
    retryable: Mapped[bool] = mapped_column(Boolean, default=False)
    http_status: Mapped[int | None] = mapped_column(SmallInteger)
    request_summary: Mapped[str] = mapped_column(Text, default="")
    response_excerpt: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str] = mapped_column(Text, default="")

    message: Mapped[Message] = relationship(back_populates="attempt_log")


class OtpChallenge(Base):
    """One code sent to one phone for one browser session; only its HMAC is stored.

    A challenge ends when it is used (``used_at``) or revoked (``revoked_at``: a resend, too
    many wrong tries); wrong tries are counted with an atomic UPDATE so parallel guesses cannot
    exceed the limit.
    """

    __tablename__ = "sms_otp_challenge"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    phone: Mapped[str] = mapped_column(String(20))
    code_hmac: Mapped[str] = mapped_column(String(64))
    session_key: Mapped[str] = mapped_column(String(64), index=True)
    """Random value kept in the guest's browser session: the code only works there."""
    client_mac: Mapped[str | None] = mapped_column(String(32))
    client_ip: Mapped[str | None] = mapped_column(String(45))
    location: Mapped[str | None] = mapped_column(String(80))
    message_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("sms_message.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)
    used_at: Mapped[datetime | None] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)

    __table_args__ = (Index("ix_sms_otp_challenge_phone_created", "phone", "created_at"),)


class MessageTemplate(Base):
    """An admin-written SMS text of one kind and language (see :mod:`sms_ext.text.templates`).

    Several templates may share a kind and language (say, two voucher texts); the one picked
    for a send without an explicit template is the first by name.
    """

    __tablename__ = "sms_template"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(80))
    kind: Mapped[str] = mapped_column(String(16))
    language: Mapped[str] = mapped_column(String(16))
    """A language tag such as ``en`` or ``es``."""
    body: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    __table_args__ = (UniqueConstraint("kind", "language", "name"),)

    def __repr__(self) -> str:
        return f"<MessageTemplate {self.id} {self.kind}/{self.language} {self.name!r}>"


class Setting(Base):
    """An admin-editable setting that overrides its ``SMS_*`` config default at run time."""

    __tablename__ = "sms_setting"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


MESSAGES: Table = Message.__table__  # type: ignore[assignment]
"""The message table, for Core statements on the hot paths (no ORM objects to build)."""
CHALLENGES: Table = OtpChallenge.__table__  # type: ignore[assignment]
