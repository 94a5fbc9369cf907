"""Generating a batch of vouchers.

Codes are random (:func:`.codes.new_code`); uniqueness is the database's unique constraint, not
a look-up first: two admins (or an admin and the CLI) generating at once cannot both check and
then insert the same code. Each voucher is committed on its own, and a collision is retried
with a new code. One transaction per batch would hold every new code locked until the end: two
batches that each drew a code of the other would wait for each other (a deadlock), and a
crash half-way leaves a visibly shorter batch, which is easy to top up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from sms_ext.models import utcnow

from ..extensions import db
from ..models import Location, Voucher
from . import VoucherError
from .codes import new_code

MAX_COUNT = 1000
MAX_VALID_DAYS = 3660
MAX_DEVICES = 100
MAX_DATA_MB = 10_000_000
MAX_TRIES = 10
"""Collisions per code before giving up; with 2^38 codes even one is rare."""


@dataclass
class BatchSpec:
    """What to generate; :meth:`check` refuses values with a sentence."""

    count: int
    duration_minutes: int
    data_limit_mb: int | None = None
    devices_allowed: int = 1
    valid_days: int = 30
    location_slugs: list[str] = field(default_factory=list)
    batch: str = ""

    def check(self) -> None:
        if not 1 <= self.count <= MAX_COUNT:
            raise VoucherError(f"Count must be between 1 and {MAX_COUNT}.")
        if self.data_limit_mb is not None and not 1 <= self.data_limit_mb <= MAX_DATA_MB:
            raise VoucherError(f"Data limit must be between 1 and {MAX_DATA_MB} MB, or empty.")
        if not 1 <= self.devices_allowed <= MAX_DEVICES:
            raise VoucherError(f"Devices must be between 1 and {MAX_DEVICES}.")
        if not 1 <= self.valid_days <= MAX_VALID_DAYS:
            raise VoucherError(f"Valid days must be between 1 and {MAX_VALID_DAYS}.")
        if len(self.batch) > 64 or not self.batch.isprintable():
            raise VoucherError("Batch label: at most 64 printable characters.")


def _locations(slugs: list[str]) -> list[Location]:
    wanted = sorted({slug.strip() for slug in slugs if slug.strip()})
    if not wanted:
        return []
    for slug in wanted:
        if len(slug) > 80 or not slug.isprintable():
            raise VoucherError(f"No location with key {slug[:80]!r}.")
    found = list(db.session.scalars(select(Location).where(Location.slug.in_(wanted))))
    missing = sorted(set(wanted) - {location.slug for location in found})
    if missing:
        raise VoucherError(f"No location with key {missing[0]!r}.")
    return found


def generate_batch(spec: BatchSpec, *, codes: Callable[[], str] = new_code) -> list[Voucher]:
    """Create ``spec.count`` vouchers in one batch, committed; returns them in code order.

    :param codes: where codes come from (a source with few codes shows the retry at work).
    """
    spec.check()
    locations = _locations(spec.location_slugs)
    now = utcnow().replace(microsecond=0)
    batch = spec.batch.strip() or now.strftime("%Y-%m-%d %H:%M:%S")
    vouchers = [_insert_unique(spec, batch, now, locations, codes) for _ in range(spec.count)]
    return sorted(vouchers, key=lambda voucher: voucher.code)


def _insert_unique(
    spec: BatchSpec,
    batch: str,
    now: datetime,
    locations: list[Location],
    codes: Callable[[], str],
) -> Voucher:
    for _ in range(MAX_TRIES):
        voucher = Voucher(
            code=codes(),
            batch=batch,
            duration_minutes=spec.duration_minutes,
            data_limit_mb=spec.data_limit_mb,
            devices_allowed=spec.devices_allowed,
            valid_until=now + timedelta(days=spec.valid_days),
            state="new",
            created_at=now,
            locations=list(locations),
        )
        db.session.add(voucher)
        try:
            db.session.commit()
        except IntegrityError:
            db.session.rollback()  # only this voucher: the ones before are committed
            continue
        return voucher
    raise VoucherError("Could not find a free code: try again.")
