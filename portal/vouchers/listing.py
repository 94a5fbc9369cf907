"""Which vouchers the admin list, the printed sheet and the CSV export show: one filter."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, and_, exists, or_, select
from sqlalchemy.orm import selectinload

from ..models import Location, Voucher, voucher_location
from .codes import MAX_INPUT

STATES = ("new", "sent", "used", "expired")
MAX_ROWS = 500
"""Most rows on a page or a sheet; the CSV export has no limit."""


def printable(value: str, size: int) -> str:
    """``value`` stripped, without control characters (PostgreSQL refuses NUL in a query
    parameter), cut to ``size``."""
    return "".join(ch for ch in value if ch.isprintable()).strip()[:size]


@dataclass(frozen=True)
class VoucherFilter:
    """The list's filters as given in the query string; empty means "any"."""

    state: str = ""
    location: str = ""
    batch: str = ""
    code: str = ""

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> VoucherFilter:
        """Read the filters, dropping values that cannot match (an unknown state)."""
        state = args.get("state", "")
        return cls(
            state=state if state in STATES else "",
            location=printable(args.get("location", ""), 80),
            batch=printable(args.get("batch", ""), 64),
            code=printable(args.get("code", ""), MAX_INPUT).upper(),
        )

    def args(self) -> dict[str, str]:
        """The non-empty filters, for links that keep them (export, sheet, batch send)."""
        return {name: value for name, value in vars(self).items() if value}

    def query(self, now: datetime) -> Select[Voucher]:
        """The matching vouchers, newest batch first, then by code, with their locations and
        devices (every page shows them)."""
        stmt = (
            select(Voucher)
            .options(selectinload(Voucher.locations), selectinload(Voucher.devices))
            .order_by(Voucher.created_at.desc(), Voucher.code)
        )
        unexpired = Voucher.valid_until >= now
        if self.state == "expired":
            stmt = stmt.where(Voucher.state != "used", ~unexpired)
        elif self.state == "used":
            stmt = stmt.where(Voucher.state == "used")
        elif self.state:
            stmt = stmt.where(Voucher.state == self.state, unexpired)
        if self.location:
            linked = voucher_location.c.voucher_id == Voucher.id
            at_location = exists().where(
                linked,
                voucher_location.c.location_id == Location.id,
                Location.slug == self.location,
            )
            stmt = stmt.where(or_(at_location, ~exists().where(and_(linked))))
        if self.batch:
            stmt = stmt.where(Voucher.batch == self.batch)
        if self.code:
            pattern = self.code.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            stmt = stmt.where(Voucher.code.like(f"%{pattern}%", escape="\\"))
        return stmt
