"""Stored SMS templates: save (checked), delete, list, and pick one for a kind and language.

Every template is checked by :func:`sms_ext.text.templates.check` before it is written, so a
stored template renders; the admin pages and :meth:`sms_ext.SMS.render_template` both go
through here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..checks import text_problem
from ..errors import TemplateError
from ..models import MessageTemplate
from ..text import gsm, templates

DEFAULT_LANGUAGE = "en"
MAX_NAME = 80
_LANGUAGE = re.compile(r"[a-z]{2,3}(-[a-z0-9]{2,8})*")


def language_tag(raw: str | None) -> str:
    """``raw`` as a stored language tag (``es``, ``pt-br``); raises :class:`TemplateError`."""
    tag = (raw or "").strip().lower().replace("_", "-")
    if not tag:
        raise TemplateError("The language is required, e.g. 'en' or 'es'.")
    if len(tag) > 16 or not _LANGUAGE.fullmatch(tag):
        raise TemplateError(f"'{raw}' is not a language tag; use one like 'en', 'es' or 'pt-br'.")
    return tag


def fallbacks(language: str | None) -> list[str]:
    """The languages to look for, best first: ``es-mx`` -> ``es-mx``, ``es``, ``en``."""
    tags: list[str] = []
    if language:
        try:
            tag = language_tag(language)
        except TemplateError:
            tag = ""
        while tag:
            tags.append(tag)
            tag = tag.rpartition("-")[0]
    if DEFAULT_LANGUAGE not in tags:
        tags.append(DEFAULT_LANGUAGE)
    return tags


def listed(
    session: Session, kind: str | None = None, language: str | None = None
) -> list[MessageTemplate]:
    """Templates by kind, language and name; ``kind``/``language`` narrow the list (exactly)."""
    query = select(MessageTemplate).order_by(
        MessageTemplate.kind, MessageTemplate.language, MessageTemplate.name, MessageTemplate.id
    )
    if kind is not None:
        query = query.where(MessageTemplate.kind == kind)
    if language is not None:
        query = query.where(MessageTemplate.language == language_tag(language))
    return list(session.scalars(query))


def body_for(session: Session, kind: str, language: str | None) -> str | None:
    """The body of the ``kind`` template in ``language`` (or its base language, else English),
    the first by name among several; None when there is none."""
    tags = fallbacks(language)
    rows = session.execute(
        select(MessageTemplate.language, MessageTemplate.body)
        .where(MessageTemplate.kind == kind, MessageTemplate.language.in_(tags))
        .order_by(MessageTemplate.name, MessageTemplate.id)
    ).all()
    best: dict[str, str] = {}
    for tag, body in rows:
        best.setdefault(tag, body)
    return next((best[tag] for tag in tags if tag in best), None)


def render(
    session: Session,
    kind: str,
    variables: Mapping[str, object],
    *,
    language: str | None = None,
    template_id: int | None = None,
) -> str:
    """See :meth:`sms_ext.SMS.render_template`."""
    if template_id is not None:
        template = session.get(MessageTemplate, template_id)
        if template is None:
            raise TemplateError(f"There is no template #{template_id}.")
        return templates.render(template.body, variables)
    if kind not in templates.VARIABLES:
        raise TemplateError(f"Unknown kind {kind!r}; use one of {', '.join(templates.KINDS)}.")
    body = body_for(session, kind, language)
    if body is None:
        raise TemplateError(f"There is no {kind} template in {language or 'English'}.")
    return templates.render(body, variables)


def save(
    session: Session, data: Mapping[str, object], template: MessageTemplate | None = None
) -> MessageTemplate:
    """Create a template (or update ``template``) from form-shaped ``data``: ``name``,
    ``kind``, ``language``, ``body`` and ``plain`` (true: replace smart quotes and dashes with
    their GSM-7 look-alikes first). Flushes, does not commit.

    Raises :class:`TemplateError` with a sentence for the admin.
    """
    name = str(data.get("name") or "").strip()
    if not name:
        raise TemplateError("The name is required.")
    kind = str(data.get("kind") or "")
    language = language_tag(str(data.get("language") or ""))
    body = str(data.get("body") or "").replace("\r\n", "\n")
    # Checked before the database sees them: PostgreSQL refuses NUL, both refuse bad Unicode.
    problem = text_problem(name, "The name", MAX_NAME) or text_problem(
        body, "The template", templates.MAX_SOURCE, multiline=True
    )
    if problem:
        raise TemplateError(problem)
    if data.get("plain"):
        body = gsm.plain(body)
    templates.check(body, kind)
    clash = session.scalar(
        select(MessageTemplate.id).where(
            MessageTemplate.kind == kind,
            MessageTemplate.language == language,
            MessageTemplate.name == name,
        )
    )
    if clash is not None and (template is None or clash != template.id):
        raise TemplateError(f"There is already a {kind} template named '{name}' in '{language}'.")
    if template is None:
        template = MessageTemplate()
        session.add(template)
    template.name, template.kind, template.language, template.body = name, kind, language, body
    session.flush()
    return template
