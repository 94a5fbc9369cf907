"""Admin pages: the guests list, a guest's profile, and 1:1 SMS from it.

The list pages by keyset on (``last_seen``, ``id``), newest first, served by the index
``ix_guest_last_seen_id``: the 500th page costs what the first does, with no ``OFFSET`` to walk
and no ``COUNT(*)``. Filters narrow that walk: the location through an ``EXISTS`` on the guest's
sessions (their ``guest_id`` index), the name as a contains-match, the phone exactly (or as a
contains-match of digits when admins may see whole numbers: with masked numbers, matching on
fragments would let anyone read the hidden digits back one search at a time).

A profile's messages are those of the SMS log with ``customer="guest:<id>"`` (what this page
sends) or sent to the guest's number (their codes, which predate the guest record), each
read through its own index (``customer_ref``/``to`` with ``created_at``).

Opting a guest out is recorded here too (``Guest.opted_out_at``), for the campaigns to honour.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from sqlalchemy import and_, exists, or_, select
from sqlalchemy.sql import ColumnElement

from sms_ext import Message, MessageError, PhoneNumberError, Status, TemplateError
from sms_ext.admin.logs import KIND_LABELS, mask_phone, show_full_numbers
from sms_ext.checks import INT32_MAX, parse_id, text_problem
from sms_ext.messages.outbox import MAX_BODY
from sms_ext.models import utcnow
from sms_ext.state import get_state
from sms_ext.text.phone import normalize_phone

from ..extensions import db, sms
from ..models import Guest, GuestSession, Location
from . import bp, guest_sms

RowT = TypeVar("RowT", Location, Guest)

PAGE_SIZE = 50
PROFILE_ROWS = 50
"""Sessions and messages shown on a profile, newest first (the SMS log has the rest)."""
MAX_QUERY = 120


sms.admin_page("portal_admin.guests", "Guests")


def _phone_shown() -> Callable[[str], str]:
    """How pages show numbers: whole, or masked like the SMS log (``SMS_ADMIN_FULL_NUMBERS``)."""
    return (lambda number: number) if show_full_numbers() else mask_phone


def _search(raw: str, errors: list[str]) -> ColumnElement[bool] | None:
    """The condition for the search box: a name, or a phone number."""
    query = raw.strip()
    if not query:
        return None
    problem = text_problem(query, "The search", MAX_QUERY)
    if problem is not None:
        errors.append(problem)
        return None
    if any(ch.isalpha() for ch in query):
        return Guest.name.icontains(query, autoescape=True)
    if show_full_numbers():
        digits = "".join(ch for ch in query if ch.isdigit())
        if not digits:
            errors.append("Type a name or some digits of a phone number.")
            return None
        return Guest.phone.contains(digits, autoescape=True)
    region = get_state().settings.default_region
    try:
        return Guest.phone == normalize_phone(query, default_region=region, allow_fixed_line=True)
    except PhoneNumberError:
        errors.append(
            "Phone numbers are masked: search with the whole number, starting with + and "
            "the country code."
        )
        return None


def _location(raw: str, errors: list[str]) -> Location | None:
    return _row(Location, raw, errors, "Choose a location from the list.")


def _cursor(raw: str, errors: list[str]) -> Guest | None:
    """The last guest of the previous page (``?after=<id>``)."""
    return _row(
        Guest, raw, errors, "That page link is out of date: start again from the first page."
    )


def _row(model: type[RowT], raw: str, errors: list[str], problem: str) -> RowT | None:
    """The row whose id a filter names (None when blank); ``problem`` is added to ``errors``
    when no row can have that id."""
    if not raw.strip():
        return None
    row_id = parse_id(raw, INT32_MAX)
    row = db.session.get(model, row_id) if row_id else None
    if row is None:
        errors.append(problem)
    return row


@bp.get("/guests/")
def guests() -> ResponseReturnValue:
    """Guests, most recently seen first, 50 a page; 400 with the reason for a bad filter."""
    errors: list[str] = []
    condition = _search(request.args.get("q", ""), errors)
    location = _location(request.args.get("location", ""), errors)
    after = _cursor(request.args.get("after", ""), errors)
    rows: list[Guest] = []
    more = False
    if not errors:
        stmt = select(Guest).order_by(Guest.last_seen.desc(), Guest.id.desc())
        if condition is not None:
            stmt = stmt.where(condition)
        if location is not None:
            stmt = stmt.where(
                exists().where(
                    GuestSession.guest_id == Guest.id, GuestSession.location_id == location.id
                )
            )
        if after is not None:
            stmt = stmt.where(
                or_(
                    Guest.last_seen < after.last_seen,
                    and_(Guest.last_seen == after.last_seen, Guest.id < after.id),
                )
            )
        rows = list(db.session.scalars(stmt.limit(PAGE_SIZE + 1)))
        more = len(rows) > PAGE_SIZE
        rows = rows[:PAGE_SIZE]
    locations = db.session.scalars(select(Location).order_by(Location.name)).all()
    filters = {
        key: request.args[key] for key in ("q", "location") if request.args.get(key, "").strip()
    }
    return render_template(
        "portal/admin/guests.html",
        guests=rows,
        errors=errors,
        q=request.args.get("q", ""),
        location=location,
        locations=locations,
        filters=filters,
        next_after=rows[-1].id if more else None,
        first_page=after is not None,
        phone=_phone_shown(),
    ), (400 if errors else 200)


def _guest_or_404(guest_id: int) -> Guest:
    guest = db.session.get(Guest, guest_id) if parse_id(guest_id, INT32_MAX) else None
    if guest is None:
        abort(404)
    return guest


def _messages(guest: Guest) -> list[Message]:
    """The guest's latest messages: by reference or by number, newest first.

    Two queries, each walking its own index backwards for ``PROFILE_ROWS`` rows, merged here:
    one ``OR`` would leave the plan to the database's guess, and a backward walk of the
    whole log for a guest with few messages.
    """
    found: dict[int, Message] = {}
    for condition in (
        Message.customer_ref == guest_sms.customer_ref(guest),
        Message.to == guest.phone,
    ):
        stmt = select(Message).where(condition)
        stmt = stmt.order_by(Message.created_at.desc(), Message.id.desc()).limit(PROFILE_ROWS)
        found.update((message.id, message) for message in db.session.scalars(stmt))
    latest = sorted(found.values(), key=lambda m: (m.created_at, m.id), reverse=True)
    return latest[:PROFILE_ROWS]


def _profile(guest: Guest, status: int = 200, **compose: Any) -> ResponseReturnValue:
    """The profile page; ``compose`` carries the forms' state (text, preview, errors)."""
    location = guest_sms.last_location(guest)
    sessions = db.session.execute(
        select(GuestSession, Location.name)
        .join(Location, Location.id == GuestSession.location_id)
        .where(GuestSession.guest_id == guest.id)
        .order_by(GuestSession.started_at.desc(), GuestSession.id.desc())
        .limit(PROFILE_ROWS)
    ).all()
    messages = _messages(guest)
    shown = {"text": "", "template_id": None, "preview": None, "error": None, "page_error": None}
    shown.update(compose)
    return render_template(
        "portal/admin/guest.html",
        guest=guest,
        phone=_phone_shown()(guest.phone),
        location=location,
        sessions=sessions,
        messages=messages,
        kinds=KIND_LABELS,
        templates=guest_sms.offered_templates(location),
        **shown,
    ), status


@bp.get("/guests/<int:guest_id>")
def guest(guest_id: int) -> ResponseReturnValue:
    """One guest: sessions, messages, consent, and the 1:1 message form."""
    return _profile(_guest_or_404(guest_id))


@bp.post("/guests/<int:guest_id>/message")
def message(guest_id: int) -> ResponseReturnValue:
    """Preview (``action=preview``) or send (``action=send``) a 1:1 SMS.

    Preview with a template chosen puts the rendered template in the text box; preview without
    one counts the typed text. Send sends the text box as it is (what the preview showed).
    """
    guest = _guest_or_404(guest_id)
    action = request.form.get("action", "")
    text = request.form.get("text", "").replace("\r\n", "\n")
    raw_template = request.form.get("template", "").strip()
    template_id = parse_id(raw_template, INT32_MAX) if raw_template else None
    location = guest_sms.last_location(guest)
    state: dict[str, Any] = {"text": text, "template_id": template_id}
    if action not in ("preview", "send"):
        return _profile(guest, 400, error="Choose Preview or Send.", **state)
    if raw_template and template_id is None:
        return _profile(guest, 400, error="Choose a template from the list.", **state)
    if action == "preview" and template_id is not None:
        try:
            text = guest_sms.render(guest, location, template_id)
        except TemplateError as exc:
            return _profile(guest, 400, error=str(exc), **state)
        # The text box now holds the template's text: a second preview counts the admin's edits.
        state.update(text=text, template_id=None)
    if not text.strip():
        return _profile(guest, 400, error="Write a message or choose a template.", **state)
    problem = text_problem(text, "The message", MAX_BODY, multiline=True)
    if problem is not None:
        return _profile(guest, 400, error=problem, **state)
    if action == "preview":
        return _profile(guest, preview=guest_sms.preview(text), **state)
    try:
        sent = guest_sms.send(guest, location, text, current_user.username)
    except (MessageError, PhoneNumberError) as exc:
        return _profile(guest, 400, error=str(exc), preview=guest_sms.preview(text), **state)
    if sent.status == Status.FAILED:
        flash(f"Message {sent.id} was not sent: {sent.last_error}", "error")
    else:
        flash(f"Message {sent.id} queued for sending.", "ok")
    return redirect(url_for(".guest", guest_id=guest.id), 303)


@bp.post("/guests/<int:guest_id>/opt-out")
def opt_out(guest_id: int) -> ResponseReturnValue:
    """Record that the guest wants no more marketing (``opted_out=1``), or undo it (``0``).

    Opting out also withdraws marketing consent (and its time, see ``Guest.consent_at``);
    undoing it does not give consent back: only the guest can, on the splash page.
    """
    guest = _guest_or_404(guest_id)
    choice = request.form.get("opted_out", "")
    if choice not in ("0", "1"):
        return _profile(guest, 400, page_error="Choose whether the guest opted out.")
    # The extension's opt-out list follows, in the same transaction: campaigns check it
    # (besides Guest.opted_out_at), and so does its own admin page.
    if choice == "1":
        guest.opted_out_at = guest.opted_out_at or utcnow()
        guest.marketing_consent, guest.consent_at = False, None
        sms.opt_outs.add(guest.phone, source="admin", note="Guest profile", commit=False)
        flash("The guest is marked as opted out of marketing messages.", "ok")
    else:
        guest.opted_out_at = None
        sms.opt_outs.remove(guest.phone, commit=False)
        flash("The opt-out is undone; marketing consent stays withdrawn.", "ok")
    db.session.commit()
    return redirect(url_for(".guest", guest_id=guest.id), 303)
