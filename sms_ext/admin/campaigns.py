"""Admin pages for campaigns: the list, the one-page editor with its preview, the progress page.

The preview is rendered on the server (``sms.campaigns.preview``, which writes nothing) and
shown on the editor after "Preview", so the page works without JavaScript; the editor's script
only asks :func:`campaign_preview` for the same panel while the admin types. The progress page
reloads itself every few seconds with ``<meta http-equiv="refresh">`` while the campaign is on
its way: readable and current without JavaScript, and nothing to keep in sync by hand.

Every write is a POST with the form's CSRF token; what the engine refuses
(:class:`CampaignError`) comes back as a sentence on the form or as a flash, never a 500.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from flask import abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from wtforms.fields.choices import SelectChoice

from ..campaigns import Campaigns, CampaignSpec, Preview
from ..checks import INT32_MAX, parse_id
from ..errors import CampaignError, MessageError, PhoneNumberError
from ..messages import template_store
from ..models import Campaign
from ..state import get_state
from ..text.templates import VARIABLES
from . import acting_admin, bp
from .campaign_forms import PURPOSE_RULES, PURPOSES, CampaignForm, fill, read
from .gateway_forms import check_action, check_csrf
from .logs import mask_phone, show_full_numbers

RUNNING = ("scheduled", "expanding", "sending")
"""States in which the progress page refreshes itself."""
EDITABLE = ("draft", "scheduled")
REFRESH_SECONDS = 5
STATUS_LABELS = {
    "draft": "Draft",
    "scheduled": "Scheduled",
    "expanding": "Preparing",
    "sending": "Sending",
    "paused": "Paused",
    "done": "Done",
    "cancelled": "Cancelled",
}
EXCLUSION_LABELS = {
    "opted_out": "opted out",
    "no_consent": "no marketing consent",
    "invalid": "invalid number",
    "not_mobile": "not a mobile number",
    "duplicate": "duplicate number",
    "outside_regions": "outside the allowed regions",
    "unrenderable": "their text could not be rendered",
}


def _campaigns() -> Campaigns:
    """What the host calls ``sms.campaigns``."""
    return Campaigns()


def _campaign(campaign_id: str) -> Campaign:
    number = parse_id(campaign_id, INT32_MAX)
    campaign = None if number is None else get_state().session.get(Campaign, number)
    if campaign is None:
        abort(404)
    return campaign


def local_time(moment: datetime | None, zone: str) -> str:
    """A naive UTC time as the campaign's local time with its offset: ``2026-12-03 09:00
    (Europe/Madrid, UTC+01:00)``."""
    if moment is None:
        return "—"
    try:
        tz = ZoneInfo(zone)
    except (ValueError, KeyError):
        tz, zone = ZoneInfo("UTC"), "UTC"
    local = moment.replace(tzinfo=UTC).astimezone(tz)
    offset = local.strftime("%z")
    return f"{local:%Y-%m-%d %H:%M:%S} ({zone}, UTC{offset[:3]}:{offset[3:]})"


def _form() -> CampaignForm:
    """The form with its choices: the stored campaign/notice templates and the locations."""
    form = CampaignForm()
    session = get_state().session
    stored = [
        *template_store.listed(session, "campaign"),
        *template_store.listed(session, "notice"),
    ]
    form.template.choices = [SelectChoice("", "— Own text below —")] + [
        SelectChoice(str(t.id), f"{t.name} ({t.kind}, {t.language})") for t in stored
    ]
    form.locations.choices = [SelectChoice(loc.key, loc.name) for loc in _campaigns().locations()]
    return form


def described(errors: dict[str, str]) -> Callable[..., dict[str, str]]:
    """The ``aria-describedby`` (and ``aria-invalid``) attributes of a field: its error
    message next to it, then its hint."""

    def attributes(name: str, hint: str = "") -> dict[str, str]:
        ids = [f"{name}-error"] if name in errors else []
        ids += [hint] if hint else []
        found = {"aria-describedby": " ".join(ids)} if ids else {}
        return {**found, "aria-invalid": "true"} if name in errors else found

    return attributes


def _editor(
    form: CampaignForm,
    campaign: Campaign | None,
    *,
    status: int = 200,
    errors: dict[str, str] | None = None,
    error: str = "",
    preview: Preview | None = None,
) -> ResponseReturnValue:
    return render_template(
        "sms/admin/campaigns/form.html",
        form=form,
        campaign=campaign,
        errors=errors or {},
        described=described(errors or {}),
        error=error,
        preview=preview,
        purposes=PURPOSES,
        purpose_rules=PURPOSE_RULES,
        variables=VARIABLES,
        exclusion_labels=EXCLUSION_LABELS,
    ), status


def _preview(spec: CampaignSpec) -> tuple[Preview | None, str]:
    try:
        return _campaigns().preview(spec), ""
    except CampaignError as exc:
        return None, str(exc)


def _submit(form: CampaignForm, campaign: Campaign | None) -> ResponseReturnValue:
    check_csrf(form)
    action = request.form.get("action", "")
    if action not in ("preview", "save", "start", "test"):
        return _editor(
            form, campaign, status=400, error="Choose Preview, Save draft, Start or Send test."
        )
    reading = read(form, schedule=action == "start")
    if reading.spec is None:
        return _editor(form, campaign, status=400, errors=reading.errors)
    spec = reading.spec
    preview, problem = _preview(spec)
    if action == "preview":
        return _editor(
            form, campaign, status=400 if problem else 200, error=problem, preview=preview
        )
    if action == "test":
        return _test_send(form, campaign, spec, preview)
    campaigns = _campaigns()
    session = get_state().session
    try:
        saved = (
            campaigns.create(spec, created_by=acting_admin())
            if campaign is None
            else campaigns.update(campaign.id, spec)
        )
        if action == "start" and spec.start_at is None:  # with a start, saving schedules it
            saved = campaigns.start(saved.id)
    except CampaignError as exc:
        session.rollback()
        return _editor(form, campaign, status=400, error=str(exc), preview=preview)
    if action == "start":
        flash(f"Campaign {saved.name} is scheduled.", "ok")
    else:
        flash(f"Campaign {saved.name} saved as a draft.", "ok")
    return redirect(url_for(".campaign", campaign_id=saved.id), 303)


def _test_send(
    form: CampaignForm, campaign: Campaign | None, spec: CampaignSpec, preview: Preview | None
) -> ResponseReturnValue:
    raw = (form.test_phone.data or "").strip()
    if not raw:
        return _editor(
            form,
            campaign,
            status=400,
            errors={"test_phone": "Type the number to send the test to."},
            preview=preview,
        )
    try:
        message = _campaigns().test_send(spec, raw, sent_by=acting_admin())
    except PhoneNumberError as exc:
        return _editor(form, campaign, status=400, errors={"test_phone": str(exc)}, preview=preview)
    except (CampaignError, MessageError) as exc:
        get_state().session.rollback()
        return _editor(form, campaign, status=400, error=str(exc), preview=preview)
    shown = message.to if show_full_numbers() else mask_phone(message.to)
    flash(f"Test sent to {shown} — see the SMS log (message {message.id}).", "ok")
    return _editor(form, campaign, preview=preview)


@bp.get("/campaigns/", endpoint="campaigns")
def campaigns_list() -> ResponseReturnValue:
    rows = [(c, _campaigns().progress(c.id)) for c in _campaigns().list()]
    return render_template(
        "sms/admin/campaigns/list.html",
        rows=rows,
        purposes=PURPOSES,
        statuses=STATUS_LABELS,
        local_time=local_time,
    )


@bp.route("/campaigns/new", methods=["GET", "POST"])
def campaign_new() -> ResponseReturnValue:
    form = _form()
    if request.method == "POST":
        return _submit(form, None)
    return _editor(form, None)


@bp.route("/campaigns/<campaign_id>/edit", methods=["GET", "POST"])
def campaign_edit(campaign_id: str) -> ResponseReturnValue:
    campaign = _campaign(campaign_id)
    if campaign.status not in EDITABLE:
        state = STATUS_LABELS.get(campaign.status, campaign.status).lower()
        flash(f"A campaign that is {state} can no longer be edited.", "error")
        return redirect(url_for(".campaign", campaign_id=campaign.id), 303)
    form = _form()
    if request.method == "POST":
        return _submit(form, campaign)
    fill(form, _campaigns().spec_of(campaign.id))
    return _editor(form, campaign)


@bp.post("/campaigns/preview")
def campaign_preview() -> ResponseReturnValue:
    """The preview panel for the editor's script (same CSRF token as the form)."""
    form = _form()
    check_csrf(form)
    reading = read(form, schedule=False)
    preview, problem = (None, "") if reading.spec is None else _preview(reading.spec)
    return render_template(
        "sms/admin/campaigns/_preview.html",
        preview=preview,
        error=problem,
        errors=reading.errors,
        exclusion_labels=EXCLUSION_LABELS,
    )


@bp.get("/campaigns/<campaign_id>")
def campaign(campaign_id: str) -> ResponseReturnValue:
    """Progress: counts, a bar, the rate; reloads itself while the campaign runs."""
    found = _campaign(campaign_id)
    progress = _campaigns().progress(found.id)
    return render_template(
        "sms/admin/campaigns/detail.html",
        campaign=found,
        progress=progress,
        refresh=REFRESH_SECONDS if progress.status in RUNNING else None,
        purposes=PURPOSES,
        statuses=STATUS_LABELS,
        exclusion_labels=EXCLUSION_LABELS,
        local_time=local_time,
        editable=progress.status in EDITABLE,
    )


@bp.get("/campaigns/<campaign_id>/cancel")
def campaign_cancel_confirm(campaign_id: str) -> ResponseReturnValue:
    """The confirmation step of Cancel: a page, so it works without JavaScript."""
    found = _campaign(campaign_id)
    return render_template(
        "sms/admin/campaigns/cancel.html", campaign=found, progress=_campaigns().progress(found.id)
    )


ACTIONS = {
    "pause": ("pause", "Campaign {} is paused: no new messages go out until you resume it."),
    "resume": ("resume", "Campaign {} is sending again."),
    "cancel": ("cancel", "Campaign {} is cancelled: messages not yet sent will not be."),
    "start": ("start", "Campaign {} starts now."),
}


@bp.post("/campaigns/<campaign_id>/<action>")
def campaign_action(campaign_id: str, action: str) -> ResponseReturnValue:
    """Pause, resume, cancel or start now; what the state does not allow is flashed."""
    if action not in ACTIONS:
        abort(404)
    check_action()
    found = _campaign(campaign_id)
    method, done = ACTIONS[action]
    try:
        getattr(_campaigns(), method)(found.id)
    except CampaignError as exc:
        get_state().session.rollback()
        flash(str(exc), "error")
    else:
        flash(done.format(found.name), "ok")
    return redirect(url_for(".campaign", campaign_id=found.id), 303)
