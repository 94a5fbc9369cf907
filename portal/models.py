"""Tables of the portal: venues, their splash pages, the guests who log in, and admins.

They use the portal's own metadata (``db.Model``); sms_ext's tables stay on ``sms_ext.metadata``.
Times are naive UTC, like the extension's.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from sms_ext.models import BigId, utcnow

from .extensions import db


class Location(db.Model):
    """A venue with Wi-Fi; ``slug`` is its splash page URL and the extension's location key."""

    __tablename__ = "location"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    slug: Mapped[str] = mapped_column(String(80), unique=True)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    """IANA name (``Africa/Johannesburg``), for showing times to the venue's staff."""
    region: Mapped[str] = mapped_column(String(2))
    """Two-letter region used to read numbers guests type without ``+`` (``ZA``)."""
    language: Mapped[str] = mapped_column(String(8), default="en", server_default="en")
    """Language of the guest pages and SMS texts (a code of :data:`portal.i18n.LANGUAGES`)."""

    splash_page: Mapped[SplashPage | None] = relationship(back_populates="location")

    def __repr__(self) -> str:
        return f"<Location {self.id} {self.slug!r}>"


class SplashPage(db.Model):
    """What guests of one location see before they get online."""

    __tablename__ = "splash_page"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    location_id: Mapped[int] = mapped_column(
        ForeignKey("location.id", ondelete="CASCADE"), unique=True
    )
    title: Mapped[str] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text, default="", server_default="")
    """Welcome text under the title; empty shows the default sentence."""
    brand_color: Mapped[str] = mapped_column(String(7), default="#2563eb", server_default="#2563eb")
    """``#rrggbb`` of the buttons and accents, on the splash and code pages."""
    terms: Mapped[str] = mapped_column(Text, default="")
    """Terms of use; empty means the page has no terms checkbox."""
    otp_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    """Guests prove their number with a code by SMS; off, the number is taken as typed."""

    location: Mapped[Location] = relationship(back_populates="splash_page")

    def __repr__(self) -> str:
        return f"<SplashPage {self.id} of location {self.location_id}>"


class Guest(db.Model):
    """A person, known by phone number, who logged in at any location."""

    __tablename__ = "guest"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    phone: Mapped[str] = mapped_column(String(20), unique=True)
    """E.164 with the leading ``+``."""
    name: Mapped[str | None] = mapped_column(String(120))
    first_seen: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    marketing_consent: Mapped[bool] = mapped_column(Boolean, default=False)
    consent_at: Mapped[datetime | None] = mapped_column(DateTime)
    """When consent was last given; kept as evidence, cleared when it is withdrawn."""
    opted_out_at: Mapped[datetime | None] = mapped_column(DateTime)
    """When the guest asked for no more marketing messages; ``None`` while they have not."""

    __table_args__ = (Index("ix_guest_last_seen_id", "last_seen", "id"),)
    """The admin list pages by (``last_seen``, ``id``), newest first."""

    def __repr__(self) -> str:
        return f"<Guest {self.id} {self.phone}>"


class GuestSession(db.Model):
    """One login of a guest at a location, with what the Wi-Fi controller told us."""

    __tablename__ = "guest_session"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    guest_id: Mapped[int] = mapped_column(ForeignKey("guest.id", ondelete="CASCADE"), index=True)
    location_id: Mapped[int] = mapped_column(ForeignKey("location.id", ondelete="CASCADE"))
    client_mac: Mapped[str | None] = mapped_column(String(64))
    client_ip: Mapped[str | None] = mapped_column(String(64))
    ap: Mapped[str | None] = mapped_column(String(64))
    phone: Mapped[str] = mapped_column(String(20))
    """The number used for this login (the guest's number may change later)."""
    verified_by_otp: Mapped[bool] = mapped_column(Boolean, default=False)
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    guest: Mapped[Guest] = relationship()
    location: Mapped[Location] = relationship()

    __table_args__ = (Index("ix_guest_session_location_started", "location_id", "started_at"),)

    def __repr__(self) -> str:
        return f"<GuestSession {self.id} guest {self.guest_id} at {self.location_id}>"


_DUMMY_HASH = generate_password_hash(secrets.token_urlsafe(16))
"""Checked for unknown usernames so that they cost the same time as real ones."""


def check_dummy_password(password: str) -> bool:
    """As long as :meth:`Admin.check_password`, and always ``False``."""
    check_password_hash(_DUMMY_HASH, password)
    return False


class Admin(UserMixin, db.Model):
    """A venue administrator; passwords are stored as werkzeug hashes only."""

    __tablename__ = "admin"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    session_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Part of every session cookie; bumped on logout and password change, which ends every
    session (and every copied cookie) made before."""

    def get_id(self) -> str:
        """What Flask-Login keeps in the session: the id and the session version."""
        return f"{self.id}:{self.session_version or 0}"

    def set_password(self, password: str) -> None:
        """Set a new password and end the admin's existing sessions."""
        self.password_hash = generate_password_hash(password)
        self.session_version = (self.session_version or 0) + 1

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)

    def __repr__(self) -> str:
        return f"<Admin {self.id} {self.username!r}>"


voucher_location = db.Table(
    "voucher_location",
    db.Column("voucher_id", ForeignKey("voucher.id", ondelete="CASCADE"), primary_key=True),
    db.Column("location_id", ForeignKey("location.id", ondelete="CASCADE"), primary_key=True),
)
"""Where a voucher may be used; a voucher without rows here is good at every location."""


class Voucher(db.Model):
    """A code that lets a guest online without a phone number (see :mod:`portal.vouchers`).

    ``state`` is what happened to it (new, sent, used); "expired" is derived from
    ``valid_until`` by :meth:`state_at`, so no job has to sweep the table.
    """

    __tablename__ = "voucher"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(16), unique=True)
    """Grouped for reading (``WX7K-9PQ2``); the unique constraint settles concurrent batches."""
    batch: Mapped[str] = mapped_column(String(64), index=True)
    duration_minutes: Mapped[int] = mapped_column(Integer)
    """Online time from the first login; the voucher is refused once it has passed."""
    data_limit_mb: Mapped[int | None] = mapped_column(Integer)
    """``None``: unlimited."""
    devices_allowed: Mapped[int] = mapped_column(Integer, default=1)
    valid_until: Mapped[datetime] = mapped_column(DateTime)
    """Last moment of a first login (naive UTC)."""
    state: Mapped[str] = mapped_column(String(16), default="new")
    first_used_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    locations: Mapped[list[Location]] = relationship(secondary=voucher_location)
    devices: Mapped[list[VoucherDevice]] = relationship(
        back_populates="voucher", order_by="VoucherDevice.id"
    )
    sends: Mapped[list[VoucherSend]] = relationship(
        back_populates="voucher", order_by="VoucherSend.id"
    )

    def state_at(self, now: datetime) -> str:
        """``new``, ``sent``, ``used`` or ``expired`` (unused and past ``valid_until``)."""
        if self.state != "used" and self.valid_until < now:
            return "expired"
        return self.state

    def __repr__(self) -> str:
        return f"<Voucher {self.id} {self.code}>"


class VoucherDevice(db.Model):
    """A device that logged in with a voucher; counted against ``devices_allowed``."""

    __tablename__ = "voucher_device"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    voucher_id: Mapped[int] = mapped_column(ForeignKey("voucher.id", ondelete="CASCADE"))
    mac: Mapped[str | None] = mapped_column(String(64))
    """Lower-case client MAC from the controller; ``None`` (no MAC sent) counts every login."""
    first_used_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    voucher: Mapped[Voucher] = relationship(back_populates="devices")

    __table_args__ = (UniqueConstraint("voucher_id", "mac"),)


class VoucherSend(db.Model):
    """A voucher sent by SMS: to whom, by which message of the SMS log, when."""

    __tablename__ = "voucher_send"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    voucher_id: Mapped[int] = mapped_column(
        ForeignKey("voucher.id", ondelete="CASCADE"), index=True
    )
    phone: Mapped[str] = mapped_column(String(20))
    message_id: Mapped[int | None] = mapped_column(BigId)
    """Id of the :class:`sms_ext.Message` (another metadata: no foreign key)."""
    sent_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    voucher: Mapped[Voucher] = relationship(back_populates="sends")
