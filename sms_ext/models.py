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
    HELD = "held"
    """A campaign message not yet handed to the workers (the campaign is expanding, paused,
    outside its sending window, or throttled); the campaign runner releases it as ``queued``."""
    CANCELLED = "cancelled"
    """Never sent: its campaign was cancelled first."""


FINAL_STATUSES = frozenset(
    {Status.SENT, Status.DELIVERED, Status.UNDELIVERED, Status.FAILED, Status.CANCELLED}
)
"""States in which no worker will touch a message again (a receipt may still refine ``sent``)."""


class Kind(StrEnum):
    """Why a message was sent (a string enum, stored as its value)."""

    OTP = "otp"
    PERSONAL = "personal"
    VOUCHER = "voucher"
    CAMPAIGN = "campaign"
    TEST = "test"
    NOTICE = "notice"
    """An operational message to a guest (a service notice campaign, a maintenance warning)."""


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
    currency: Mapped[str | None] = mapped_column(String(8))
    """Currency (or unit, "credits") of ``balance`` and ``price_per_part``."""
    price_per_part: Mapped[Decimal | None] = mapped_column(Numeric(12, 5))
    """What one SMS part costs on this gateway: campaign previews estimate the cost with it."""
    balance_check: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """The scheduled balance check: enabled, url, method, field, pattern, period, emails,
    dashboard, minimum (see :mod:`sms_ext.gateways.balance_checks`); empty = none."""
    balance_alert: Mapped[str | None] = mapped_column(String(16))
    """The last balance level alerted on (``ok``, ``min``, ``half``, ``zero``, ``unknown``)."""
    balance_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Balance checks failed in a row; past a threshold the balance is alerted "unknown"."""
    hook_token: Mapped[str | None] = mapped_column(String(64), unique=True)
    """Random secret in the URL of this gateway's generic webhooks (receipts, inbound SMS)."""
    hooks: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """How a custom gateway's webhooks read: field names of message id, status, error code,
    sender and text, and the status mapping (see :mod:`sms_ext.hooks`)."""
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
    campaign_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("sms_campaign.id", ondelete="SET NULL")
    )
    """The campaign this message belongs to; one message per campaign and phone."""
    error_code: Mapped[str | None] = mapped_column(String(32))
    """The provider's error code from a delivery receipt (Twilio's 30003, ...)."""
    receipt_at: Mapped[datetime | None] = mapped_column(DateTime)
    """When the last delivery receipt that changed this message arrived."""

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
        Index("ix_sms_message_campaign_status", "campaign_id", "status"),
        UniqueConstraint("campaign_id", "to", name="uq_sms_message_campaign_to"),
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


class Campaign(Base):
    """A mass SMS to an audience, sent at a scheduled time (see :mod:`sms_ext.campaigns`).

    Its messages are rows of ``sms_message`` with ``campaign_id`` set, born ``held`` and
    released to the workers by the campaign runner; the unique (campaign, phone) pair makes a
    repeated expansion (after a crash) insert nothing twice.
    """

    __tablename__ = "sms_campaign"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    purpose: Mapped[str] = mapped_column(String(16))
    """``marketing`` (only guests with marketing consent) or ``notice`` (every guest)."""
    body: Mapped[str] = mapped_column(Text, default="")
    """The campaign's own text (a sandboxed template) when no stored template is used."""
    template_id: Mapped[int | None] = mapped_column(
        ForeignKey("sms_template.id", ondelete="SET NULL")
    )
    audience: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """``locations``, ``seen_within_days``, ``regions`` and ``phones`` (a pasted list)."""
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    """Zone of the schedule and the sending window (the first location's, by default)."""
    scheduled_at: Mapped[datetime | None] = mapped_column(DateTime)
    """When to start, naive UTC; ``None`` while a draft."""
    window_start: Mapped[int | None] = mapped_column(SmallInteger)
    window_end: Mapped[int | None] = mapped_column(SmallInteger)
    """Sending window in minutes after local midnight; outside it the campaign waits."""
    status: Mapped[str] = mapped_column(String(16), default="draft")
    """draft, scheduled, expanding, sending, paused, done, cancelled."""
    expanded: Mapped[bool] = mapped_column(Boolean, default=False)
    """Whether every recipient has its message row (expansion is over)."""
    recipients: Mapped[int] = mapped_column(Integer, default=0)
    parts: Mapped[int] = mapped_column(Integer, default=0)
    """Messages and SMS parts inserted so far (parts are the cost driver)."""
    exclusions: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    """Recipients left out, counted by reason (opted_out, no_consent, invalid, ...)."""
    created_by: Mapped[str | None] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_sms_campaign_status_scheduled", "status", "scheduled_at"),)

    def __repr__(self) -> str:
        return f"<Campaign {self.id} {self.name!r} {self.status}>"


class OptOut(Base):
    """A phone number that campaigns never reach (OTP, vouchers and 1:1 messages still do)."""

    __tablename__ = "sms_opt_out"

    phone: Mapped[str] = mapped_column(String(20), primary_key=True)
    """E.164."""
    source: Mapped[str] = mapped_column(String(16))
    """``admin``, ``guest`` (the splash page), ``stop`` (an inbound STOP reply), ``import``."""
    note: Mapped[str] = mapped_column(String(200), default="")
    gateway_id: Mapped[int | None] = mapped_column(
        ForeignKey("sms_gateway.id", ondelete="SET NULL")
    )
    """The gateway a STOP reply came through."""
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class PendingReceipt(Base):
    """A delivery receipt that arrived before its send was recorded (the provider answered
    the webhook faster than the worker settled): applied when the provider id is stored."""

    __tablename__ = "sms_pending_receipt"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    gateway_id: Mapped[int] = mapped_column(ForeignKey("sms_gateway.id", ondelete="CASCADE"))
    provider_message_id: Mapped[str] = mapped_column(String(120))
    status: Mapped[str] = mapped_column(String(12))
    error_code: Mapped[str | None] = mapped_column(String(32))
    occurred_at: Mapped[datetime] = mapped_column(DateTime)
    received_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    __table_args__ = (
        Index("ix_sms_pending_receipt_provider", "gateway_id", "provider_message_id"),
        Index("ix_sms_pending_receipt_received", "received_at"),
    )


class BalanceReading(Base):
    """One balance check of one gateway: the figure, or why there was none."""

    __tablename__ = "sms_balance_reading"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    gateway_id: Mapped[int] = mapped_column(ForeignKey("sms_gateway.id", ondelete="CASCADE"))
    checked_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    value: Mapped[Decimal | None] = mapped_column(Numeric(14, 4))
    currency: Mapped[str | None] = mapped_column(String(8))
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_sms_balance_reading_gateway_checked", "gateway_id", "checked_at"),)


MESSAGES: Table = Message.__table__  # type: ignore[assignment]
"""The message table, for Core statements on the hot paths (no ORM objects to build)."""
CHALLENGES: Table = OtpChallenge.__table__  # type: ignore[assignment]
