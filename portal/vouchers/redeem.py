"""A guest logging in with a voucher: the checks, and counting the device.

The voucher row is locked while its devices are counted (``FOR UPDATE`` on PostgreSQL; SQLite
has one writer at a time anyway), so two phones cannot both take a voucher's last device.
A device that used the voucher before comes back in without using another one.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from flask_babel import gettext, ngettext
from sqlalchemy import select

from ..extensions import db
from ..models import Voucher, VoucherDevice
from .codes import normalise


class VoucherRefused(Exception):
    """The code does not let this guest online; the message is for the guest."""


def redeem(typed: str, location_id: int, mac: str | None, now: datetime) -> Voucher:
    """Check the voucher typed at ``location_id`` and count the device; commits.

    Raises :class:`VoucherRefused` with a sentence for the guest.
    """
    code = normalise(typed)
    voucher = None
    if code is not None:
        voucher = db.session.scalar(select(Voucher).where(Voucher.code == code).with_for_update())
    if voucher is None:
        raise VoucherRefused(
            gettext("This voucher code is not valid. Please check it and try again.")
        )
    try:
        _check(voucher, location_id, mac, now)
    except VoucherRefused:
        db.session.rollback()  # release the row lock
        raise
    if not _known(voucher, mac):
        voucher.devices.append(VoucherDevice(mac=mac, first_used_at=now))
    if voucher.first_used_at is None:
        voucher.first_used_at = now
    voucher.state = "used"
    db.session.commit()
    return voucher


def _check(voucher: Voucher, location_id: int, mac: str | None, now: datetime) -> None:
    if voucher.locations and location_id not in {loc.id for loc in voucher.locations}:
        raise VoucherRefused(
            gettext("This voucher is for another location and cannot be used here.")
        )
    if voucher.first_used_at is None:
        if voucher.valid_until < now:
            raise VoucherRefused(gettext("This voucher has expired."))
        return
    if voucher.first_used_at + timedelta(minutes=voucher.duration_minutes) <= now:
        raise VoucherRefused(gettext("This voucher's time is used up."))
    if not _known(voucher, mac) and len(voucher.devices) >= voucher.devices_allowed:
        raise VoucherRefused(
            ngettext(
                "This voucher is already used on %(num)d device, as many as it allows.",
                "This voucher is already used on %(num)d devices, as many as it allows.",
                voucher.devices_allowed,
            )
        )


def _known(voucher: Voucher, mac: str | None) -> bool:
    """The device logged in with this voucher before (never so without a MAC)."""
    return mac is not None and any(device.mac == mac for device in voucher.devices)
