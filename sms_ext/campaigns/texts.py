"""The text each recipient of a campaign gets: its template, in their language, rendered.

A campaign of 100,000 renders the same few texts over and over (the same location, the same
opt-out line; the name varies): a text is rendered once per template and distinct values of
the variables that template actually uses, and measured once per distinct text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

from jinja2 import Environment, meta
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..messages.template_store import fallbacks
from ..models import MessageTemplate
from ..text import templates
from ..text.segments import SegmentInfo, analyze
from .audience import AudienceLocation, Recipient
from .spec import KIND_OF, CampaignSpec, template_of

if TYPE_CHECKING:
    from ..state import SMSState

CACHE_SIZE = 4096
"""Distinct rendered texts (and their measurements) kept per campaign run."""
ENCODING_NAMES = {"gsm7": "GSM-7", "ucs2": "UCS-2"}


@lru_cache(maxsize=256)
def names_used(body: str) -> tuple[str, ...]:
    """The variables ``body`` reads (it was checked: only plain names, no sets or loops)."""
    return tuple(sorted(meta.find_undeclared_variables(Environment().parse(body))))


class Texts:
    """Renders a campaign's text for its recipients."""

    def __init__(
        self,
        session: Session,
        spec: CampaignSpec,
        *,
        opt_out_text: str,
        location_names: Mapping[str, str],
    ) -> None:
        template = template_of(session, spec)
        self.kind = KIND_OF[spec.purpose]
        self.default = template.body if template is not None else spec.body
        self.by_language: dict[str, str] = {}
        if template is not None:  # the same template name in other languages
            rows = session.execute(
                select(MessageTemplate.language, MessageTemplate.body).where(
                    MessageTemplate.kind == template.kind, MessageTemplate.name == template.name
                )
            ).all()
            self.by_language = {language: body for language, body in rows}
            self.by_language.setdefault(template.language, template.body)
        self.opt_out_text = opt_out_text
        self.location_names = dict(location_names)
        self._rendered: dict[tuple[object, ...], str] = {}
        self._measured: dict[str, SegmentInfo] = {}

    @classmethod
    def of(
        cls, state: SMSState, spec: CampaignSpec, locations: Sequence[AudienceLocation]
    ) -> Texts:
        """The texts of ``spec`` in ``state``'s app: its opt-out line and the host's names of
        ``locations`` (the one way preview, test send and run build them alike)."""
        return cls(
            state.session,
            spec,
            opt_out_text=state.settings.campaign.opt_out_text,
            location_names={place.key: place.name for place in locations},
        )

    def body_for(self, language: str | None) -> str:
        """The template text in ``language`` (or its base language), else the chosen one."""
        if language and self.by_language:
            for tag in fallbacks(language)[:-1]:  # not the English fallback: the chosen one
                if tag in self.by_language:
                    return self.by_language[tag]
        return self.default

    def variables(self, phone: str, person: Recipient) -> dict[str, str]:
        place = self.location_names.get(person.location or "", person.location or "")
        return {
            "name": person.name or "",
            "phone": phone,
            "location": place,
            "venue": place,
            "opt_out": self.opt_out_text,
        }

    def render(self, phone: str, person: Recipient) -> str:
        """The text for ``person``; raises :class:`~sms_ext.TemplateError` when it cannot be
        rendered (too long with their values)."""
        body = self.body_for(person.language)
        values = self.variables(phone, person)
        key = (body, *(values.get(name) for name in names_used(body)))
        text = self._rendered.get(key)
        if text is None:
            if len(self._rendered) >= CACHE_SIZE:
                self._rendered.clear()
            text = self._rendered[key] = templates.render(body, values)
        return text

    def sample(self) -> str:
        """The chosen text with the sample values (no recipient to show)."""
        return templates.render(self.default, templates.sample_values(self.kind))

    def measure(self, text: str) -> SegmentInfo:
        info = self._measured.get(text)
        if info is None:
            if len(self._measured) >= CACHE_SIZE:
                self._measured.clear()
            info = self._measured[text] = analyze(text)
        return info
