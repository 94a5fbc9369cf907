"""Admin pages for SMS templates: list, create, edit, delete, and the counter under the editor.

The counter (characters, GSM-7 or UCS-2, parts, and the characters that force UCS-2) is
rendered here, on the server, for the template filled with sample values: the page works
without JavaScript (the "Preview" button), and its script only asks :func:`template_preview`
for the same fragment while the admin types, so the live figures are exactly those of
:mod:`sms_ext.text.segments` and of the text that will be sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import groupby

from flask import abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_wtf import FlaskForm
from wtforms import BooleanField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice

from ..checks import INT32_MAX, parse_id
from ..errors import TemplateError
from ..messages import template_store
from ..models import MessageTemplate
from ..state import get_state
from ..text import gsm, templates
from ..text.segments import SegmentInfo, analyze, is_gsm7
from . import bp
from .gateway_forms import check_action, check_csrf

KIND_LABELS = {
    "otp": "OTP (guest code)",
    "voucher": "Voucher",
    "personal": "Personal (1:1)",
    "campaign": "Campaign",
    "notice": "Notice",
}


class TemplateForm(FlaskForm):
    name = StringField("Name")
    kind = SelectField(
        "Kind",
        choices=[SelectChoice(value, label) for value, label in KIND_LABELS.items()],
        validate_choice=False,
    )
    language = StringField("Language", default=template_store.DEFAULT_LANGUAGE)
    body = TextAreaField("Text")
    plain = BooleanField("Replace smart quotes and dashes with GSM-7 look-alikes on save")


@dataclass
class Preview:
    """What the counter shows for a template filled with the sample values."""

    text: str = ""
    error: str = ""
    info: SegmentInfo | None = None
    pieces: list[tuple[str, bool]] = field(default_factory=list)
    """The text in runs; True marks a run of characters that force UCS-2."""
    forcing: list[tuple[str, str]] = field(default_factory=list)
    """Each character that forces UCS-2 with its code point (``U+2019``), once, in order."""


def preview(body: str, kind: str, plain: bool) -> Preview:
    """The counter for ``body`` as it would be saved (``plain``: look-alikes applied)."""
    if plain:
        body = gsm.plain(body)
    if not body.strip():  # a new template: nothing to complain about yet
        return Preview(info=analyze(""))
    try:
        text = templates.check(body, kind)
    except TemplateError as exc:
        return Preview(error=str(exc))
    info = analyze(text)
    if info.encoding == "gsm7":
        return Preview(text, info=info, pieces=[(text, False)])
    pieces = [("".join(run), not ok) for ok, run in groupby(text, key=is_gsm7)]
    chars = dict.fromkeys(char for char in text if not is_gsm7(char))
    forcing = [(char, f"U+{ord(char):04X}") for char in chars]
    return Preview(text, info=info, pieces=pieces, forcing=forcing)


def _sample_parts(template: MessageTemplate) -> int | None:
    """Parts of ``template``'s sample text, for the list (None if it no longer renders)."""
    try:
        return analyze(
            templates.render(template.body, templates.sample_values(template.kind))
        ).segments
    except TemplateError:
        return None


def _template(template_id: int | str) -> MessageTemplate:
    number = parse_id(template_id, INT32_MAX)
    template = None if number is None else get_state().session.get(MessageTemplate, number)
    if template is None:
        abort(404)
    return template


def _editor(
    form: TemplateForm, template: MessageTemplate | None, error: str = ""
) -> ResponseReturnValue:
    kind = form.kind.data if form.kind.data in KIND_LABELS else templates.KINDS[0]
    counter = preview(form.body.data or "", kind, bool(form.plain.data))
    page = render_template(
        "sms/admin/templates/form.html",
        form=form,
        template=template,
        error=error,
        counter=counter,
        kind=kind,
        all_variables=templates.VARIABLES,
        samples=templates.SAMPLES,
    )
    return page, 400 if error else 200


def _submit(form: TemplateForm, template: MessageTemplate | None) -> ResponseReturnValue:
    check_csrf(form)
    if request.form.get("action") == "preview":
        return _editor(form, template)
    session = get_state().session
    try:
        saved = template_store.save(session, form.data, template)
    except TemplateError as exc:
        session.rollback()
        return _editor(form, template, error=str(exc))
    session.commit()
    flash(f"Template {saved.name} saved.", "ok")
    return redirect(url_for(".templates"), 303)


@bp.get("/templates", endpoint="templates")
def templates_list() -> ResponseReturnValue:
    rows = [(t, _sample_parts(t)) for t in template_store.listed(get_state().session)]
    return render_template("sms/admin/templates/list.html", rows=rows, kinds=KIND_LABELS)


@bp.route("/templates/new", methods=["GET", "POST"])
def template_new() -> ResponseReturnValue:
    form = TemplateForm()
    if request.method == "GET" and request.args.get("kind") in KIND_LABELS:
        form.kind.data = request.args["kind"]
    if request.method == "POST":
        return _submit(form, None)
    return _editor(form, None)


@bp.route("/templates/<template_id>", methods=["GET", "POST"])
def template_edit(template_id: str) -> ResponseReturnValue:
    template = _template(template_id)
    form = TemplateForm(obj=template)
    if request.method == "POST":
        return _submit(form, template)
    return _editor(form, template)


@bp.post("/templates/<template_id>/delete")
def template_delete(template_id: str) -> ResponseReturnValue:
    check_action()
    template = _template(template_id)
    session = get_state().session
    session.delete(template)
    session.commit()
    flash(f"Template {template.name} deleted.", "ok")
    return redirect(url_for(".templates"), 303)


@bp.post("/templates/preview")
def template_preview() -> ResponseReturnValue:
    """The counter fragment for the editor's script (same CSRF token as the form)."""
    form = TemplateForm()
    check_csrf(form)
    kind = form.kind.data if form.kind.data in KIND_LABELS else templates.KINDS[0]
    counter = preview(form.body.data or "", kind, bool(form.plain.data))
    return render_template("sms/admin/templates/_counter.html", counter=counter)
