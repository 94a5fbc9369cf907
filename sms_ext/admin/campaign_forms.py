"""The campaign form: its fields, and the reading of what the admin typed into a spec.

Only the shape of each value is checked here (a date, a time, a whole number), with the
message shown next to its field; what the values mean (a name too long, no text, a bad
timezone, a window out of range) is the engine's to judge, and its :class:`CampaignError`
sentence is shown on the form as it comes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time

from flask_wtf import FlaskForm
from wtforms import RadioField, SelectField, SelectMultipleField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.widgets import CheckboxInput, ListWidget

from ..campaigns import CampaignSpec
from ..checks import INT32_MAX, parse_id

PURPOSES = {
    "marketing": "Marketing",
    "notice": "Service notice",
}
PURPOSE_RULES = {
    "marketing": "Reaches only guests who agreed to marketing messages.",
    "notice": "Reaches every guest of the audience, with or without marketing consent.",
}
MAX_SEEN_DAYS = 3650
_TIME = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")
_SEPARATORS = re.compile(r"[\n,;]+")


class MultiCheckboxField(SelectMultipleField):
    """Checkboxes for a multiple choice: usable by keyboard and on a phone, unlike a
    ``<select multiple>``."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class CampaignForm(FlaskForm):
    name = StringField("Name")
    purpose = RadioField(
        "Purpose",
        choices=[SelectChoice(value, label) for value, label in PURPOSES.items()],
        default="marketing",
        validate_choice=False,
    )
    template = SelectField("Template", choices=[], validate_choice=False)
    body = TextAreaField("Own text")
    locations = MultiCheckboxField("Locations", choices=[], validate_choice=False)
    seen_days = StringField("Seen in the last … days")
    regions = StringField("Allowed regions")
    phones = TextAreaField("Or paste numbers")
    schedule = RadioField(
        "When",
        choices=[SelectChoice("now", "Now"), SelectChoice("later", "At a date and time")],
        default="now",
        validate_choice=False,
    )
    start_date = StringField("Date")
    start_time = StringField("Time")
    window_from = StringField("Send only from")
    window_to = StringField("until")
    test_phone = StringField("Test number")


@dataclass
class Reading:
    """What the form said: a spec when every field could be read, else the fields' problems."""

    spec: CampaignSpec | None
    errors: dict[str, str] = field(default_factory=dict)


def _minutes(raw: str) -> int | None:
    """``HH:MM`` as minutes after midnight, or None when it is not a time of day."""
    found = _TIME.fullmatch(raw.strip())
    if found is None:
        return None
    hours, minutes = int(found[1]), int(found[2])
    return hours * 60 + minutes if hours < 24 and minutes < 60 else None


def _time_of_day(raw: str) -> time | None:
    found = _TIME.fullmatch(raw.strip())
    if found is None:
        return None
    hours, minutes, seconds = int(found[1]), int(found[2]), int(found[3] or 0)
    if hours > 23 or minutes > 59 or seconds > 59:
        return None
    return time(hours, minutes, seconds)


def clock(minutes: int) -> str:
    """Minutes after midnight as ``HH:MM``."""
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def split_phones(raw: str) -> tuple[str, ...]:
    """A pasted list: one number a line, or separated by commas or semicolons."""
    return tuple(part.strip() for part in _SEPARATORS.split(raw) if part.strip())


def read(form: CampaignForm, *, schedule: bool) -> Reading:
    """The spec the form describes; with ``schedule`` the start time is read too (Save draft
    and Preview leave it aside, so a half-typed date does not block them)."""
    errors: dict[str, str] = {}
    raw_template = (form.template.data or "").strip()
    template_id = parse_id(raw_template, INT32_MAX) if raw_template else None
    if raw_template and template_id is None:
        errors["template"] = "Choose a template from the list."
    seen_raw = (form.seen_days.data or "").strip()
    seen = parse_id(seen_raw, MAX_SEEN_DAYS) if seen_raw else None
    if seen_raw and seen is None:
        errors["seen_days"] = (
            f"Type a whole number of days from 1 to {MAX_SEEN_DAYS}, or leave it empty."
        )
    regions = tuple(
        part.strip().upper() for part in re.split(r"[\s,;]+", form.regions.data or "") if part
    )
    if any(not (len(region) == 2 and region.isascii() and region.isalpha()) for region in regions):
        errors["regions"] = "Type two-letter region codes separated by commas, e.g. GB, ES."
    window = None
    start, end = (form.window_from.data or "").strip(), (form.window_to.data or "").strip()
    if start or end:
        first, last = _minutes(start), _minutes(end)
        if first is None or last is None:
            errors["window"] = "Give both times as HH:MM (e.g. 09:00 and 20:00), or neither."
        elif first == last:
            errors["window"] = "The window needs two different times."
        else:
            window = (first, last)
    start_at = None
    if schedule and form.schedule.data == "later":
        try:
            day = date.fromisoformat((form.start_date.data or "").strip())
        except ValueError:
            errors["start"] = "Choose a date (YYYY-MM-DD)."
        else:
            moment = _time_of_day(form.start_time.data or "")
            if moment is None:
                errors["start"] = "Choose a time (HH:MM)."
            else:
                start_at = datetime.combine(day, moment)  # local time in the campaign's zone
    if errors:
        return Reading(None, errors)
    spec = CampaignSpec(
        name=(form.name.data or "").strip(),
        purpose=form.purpose.data or "",
        body="" if template_id is not None else (form.body.data or "").replace("\r\n", "\n"),
        template_id=template_id,
        locations=tuple(form.locations.data or ()),
        seen_within_days=seen,
        regions=regions,
        phones=split_phones(form.phones.data or ""),
        start_at=start_at,
        window=window,
    )
    return Reading(spec)


def fill(form: CampaignForm, spec: CampaignSpec) -> None:
    """Put a stored campaign's spec into the form (the edit page)."""
    form.name.data = spec.name
    form.purpose.data = spec.purpose
    form.template.data = str(spec.template_id) if spec.template_id else ""
    form.body.data = spec.body
    form.locations.data = list(spec.locations)
    form.seen_days.data = str(spec.seen_within_days or "")
    form.regions.data = ", ".join(spec.regions)
    form.phones.data = "\n".join(spec.phones)
    if spec.window is not None:
        form.window_from.data, form.window_to.data = map(clock, spec.window)
    if spec.start_at is not None:
        form.schedule.data = "later"
        form.start_date.data = spec.start_at.date().isoformat()
        form.start_time.data = spec.start_at.strftime("%H:%M:%S")
