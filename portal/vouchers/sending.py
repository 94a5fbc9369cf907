"""Sending vouchers by SMS, one voucher or one per number of a pasted list.

The text is the voucher template in the location's language (:meth:`SMS.render_template`),
or :func:`default_text` while the venue has written none. Messages are of kind ``voucher``
with ``customer="voucher:<code>"``, so the SMS log shows which voucher each one carried, and
every send is kept in :class:`~portal.models.VoucherSend` so the voucher shows where it went.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from sms_ext import Kind, PhoneNumberError, SMSError
from sms_ext.messages.template_store import fallbacks
from sms_ext.models import utcnow
from sms_ext.text.phone import normalize_phone

from ..extensions import db, sms
from ..models import Voucher, VoucherSend
from .durations import describe_duration

MAX_NUMBERS = 500


def variables(voucher: Voucher, phone: str) -> dict[str, object]:
    """The voucher template's variables (see ``sms_ext.text.templates.VARIABLES``)."""
    names = ", ".join(location.name for location in voucher.locations)
    return {
        "code": voucher.code,
        "duration": describe_duration(voucher.duration_minutes),
        "data_limit": f"{voucher.data_limit_mb} MB" if voucher.data_limit_mb else "",
        "valid_until": voucher.valid_until.strftime("%Y-%m-%d"),
        "location": names,
        "venue": names,
        "name": "",
        "phone": phone,
        "opt_out": "",
    }


def _language(voucher: Voucher) -> str | None:
    """The locations' language when they share one; else the templates' fallback."""
    languages = {location.language for location in voucher.locations}
    return languages.pop() if len(languages) == 1 else None


def default_text(values: dict[str, object]) -> str:
    """The text sent while the venue has no voucher template."""
    where = f" for {values['location']}" if values["location"] else ""
    data = f", {values['data_limit']}" if values["data_limit"] else ""
    return (
        f"Your Wi-Fi voucher{where}: {values['code']}. {values['duration']}{data}. "
        f"Valid until {values['valid_until']}."
    )


def voucher_text(voucher: Voucher, phone: str) -> str:
    """The SMS text for ``voucher`` sent to ``phone``."""
    values = variables(voucher, phone)
    language = _language(voucher)
    # Only a template the extension would pick (this language, its base, English) replaces the
    # default: a Spanish-only template must not make English vouchers fail.
    stored = {template.language for template in sms.templates("voucher")}
    if stored & set(fallbacks(language)):
        return sms.render_template("voucher", values, language=language)
    return default_text(values)


def send_voucher(voucher: Voucher, raw_phone: str, sent_by: str) -> VoucherSend:
    """Queue the voucher's SMS to ``raw_phone`` and record it; commits.

    Raises :class:`~sms_ext.PhoneNumberError` for a bad number, and another
    :class:`~sms_ext.SMSError` (:class:`~sms_ext.TemplateError`...) when no message can be
    made; then nothing is recorded.
    """
    record = _queue(voucher, raw_phone, sent_by)
    db.session.commit()
    return record


def _queue(voucher: Voucher, raw_phone: str, sent_by: str) -> VoucherSend:
    region = voucher.locations[0].region if voucher.locations else None
    phone = normalize_phone(raw_phone, default_region=region)
    message = sms.send(
        phone,
        voucher_text(voucher, phone),
        kind=Kind.VOUCHER,
        location=voucher.locations[0].slug if len(voucher.locations) == 1 else None,
        customer=f"voucher:{voucher.code}",
        region=region,
        sent_by=sent_by,
        commit=False,
    )
    db.session.flush()
    record = VoucherSend(voucher=voucher, phone=phone, message_id=message.id, sent_at=utcnow())
    db.session.add(record)
    if voucher.state == "new":
        voucher.state = "sent"
    return record


@dataclass
class BatchResult:
    """What a batch send did, or why it did nothing: the per-line errors of the pasted list."""

    sends: list[VoucherSend]
    errors: list[str]


def _numbers(pasted: str, region: str | None) -> tuple[list[str], list[str]]:
    """The pasted lines as E.164 numbers (blank lines skipped), and a sentence per bad line."""
    numbers, errors = [], []
    for number, line in enumerate(pasted.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            phone = normalize_phone(line, default_region=region)
        except PhoneNumberError as exc:
            errors.append(f"Line {number} ({line.strip()[:40]}): {exc}")
            continue
        if phone in numbers:
            errors.append(f"Line {number}: {phone} is already in the list.")
        else:
            numbers.append(phone)
    return numbers, errors


def send_batch(batch: str, pasted: str, sent_by: str, region: str | None) -> BatchResult:
    """Send one unused voucher of ``batch`` (oldest first) to each number of ``pasted``.

    Nothing is sent while a line is bad or the batch has fewer unused vouchers than numbers:
    half a list sent is harder to finish by hand than none.
    """
    if pasted.count("\n") > 2 * MAX_NUMBERS:
        return BatchResult([], [f"At most {MAX_NUMBERS} numbers at a time."])
    numbers, errors = _numbers(pasted, region)
    if not numbers and not errors:
        errors.append("Paste at least one phone number, one per line.")
    if len(numbers) > MAX_NUMBERS:
        errors.append(f"At most {MAX_NUMBERS} numbers at a time.")
    if errors:
        return BatchResult([], errors)
    now = utcnow()
    unused = db.session.scalars(
        select(Voucher)
        .where(Voucher.batch == batch, Voucher.state == "new", Voucher.valid_until >= now)
        .order_by(Voucher.id)
        .limit(len(numbers))
        .with_for_update()
    ).all()
    if len(unused) < len(numbers):
        db.session.rollback()
        return BatchResult(
            [],
            [f"Batch {batch!r} has {len(unused)} unused vouchers for {len(numbers)} numbers."],
        )
    try:
        sends = [
            _queue(voucher, phone, sent_by) for voucher, phone in zip(unused, numbers, strict=True)
        ]
    except SMSError:
        db.session.rollback()
        raise
    db.session.commit()
    return BatchResult(sends, [])
