"""1:1 SMS from a guest's profile: the templates offered, the preview, the send.

The admin writes a text or picks a ``personal`` template, which the server renders with the
guest's values into the text box, with its length, encoding and parts (the segment rules of
:mod:`sms_ext.text.segments`): the preview works without JavaScript and shows exactly what will
be sent. The send goes through the public API like any integrator's: kind ``personal``,
``customer="guest:<id>"`` (how the profile finds its messages) and ``sent_by`` the admin.

A guest who opted out still gets a 1:1 message: the opt-out is about marketing (campaigns),
and a personal message answers something the guest is part of (a lost item, a booking). The
profile warns the admin instead of refusing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select

from sms_ext import Kind, Message, MessageTemplate, TemplateError
from sms_ext.text.segments import analyze

from ..extensions import db, sms
from ..models import Guest, GuestSession, Location

ENCODING_LABELS = {"gsm7": "GSM-7", "ucs2": "UCS-2"}


@dataclass(frozen=True)
class Preview:
    """What the guest will receive and what it costs."""

    text: str
    characters: int
    encoding: str
    parts: int


def preview(text: str) -> Preview:
    """The text as sent, counted as the outbox counts it."""
    info = analyze(text)
    return Preview(text, len(text), ENCODING_LABELS[info.encoding], info.segments)


def customer_ref(guest: Guest) -> str:
    """The SMS log's reference to a guest (``Message.customer_ref``)."""
    return f"guest:{guest.id}"


def last_location(guest: Guest) -> Location | None:
    """Where the guest last logged in: the venue a message speaks for and its gateways."""
    return db.session.scalar(
        select(Location)
        .join(GuestSession, GuestSession.location_id == Location.id)
        .where(GuestSession.guest_id == guest.id)
        .order_by(GuestSession.started_at.desc(), GuestSession.id.desc())
        .limit(1)
    )


def offered_templates(location: Location | None) -> list[MessageTemplate]:
    """Every ``personal`` template, those in the guest's language (their venue's) first."""
    language = location.language if location is not None else "en"
    templates: Sequence[MessageTemplate] = sms.templates("personal")
    return sorted(templates, key=lambda t: (t.language != language, t.name.lower(), t.id))


def render(guest: Guest, location: Location | None, template_id: int) -> str:
    """The chosen ``personal`` template filled with the guest's values; raises
    :class:`~sms_ext.TemplateError` when it cannot be used."""
    if template_id not in {template.id for template in sms.templates("personal")}:
        raise TemplateError("Choose a template from the list.")
    venue = location.name if location is not None else ""
    variables = {
        "name": guest.name or "",
        "phone": guest.phone,
        "location": venue,
        "venue": venue,
        "opt_out": "",  # a personal message is not marketing: no opt-out line to offer
    }
    return sms.render_template(
        "personal",
        variables,
        language=location.language if location is not None else None,
        template_id=template_id,
    )


def send(guest: Guest, location: Location | None, text: str, admin: str) -> Message:
    """Queue ``text`` to the guest; raises :class:`~sms_ext.MessageError` or
    :class:`~sms_ext.PhoneNumberError` for what cannot be sent."""
    return sms.send(
        guest.phone,
        text,
        kind=Kind.PERSONAL,
        location=location.slug if location is not None else None,
        customer=customer_ref(guest),
        sent_by=admin,
    )
