"""Vouchers: codes that let a guest online without a phone number, sold or handed out by the
venue and sent by SMS from the admin.

Small modules with one job each: :mod:`.codes` (the alphabet and code format), :mod:`.durations`
("2h", "90m"), :mod:`.generate` (batches), :mod:`.redeem` (a guest's login), :mod:`.throttle`
(brute-force limits), :mod:`.sending` (by SMS), :mod:`.listing` and :mod:`.export` (the admin's
list, sheet and CSV) and :mod:`.login` (the splash page's form).
"""

from __future__ import annotations


class VoucherError(ValueError):
    """Bad input for a voucher operation; the message is one sentence for the admin."""
