"""The public campaign API: ``sms.campaigns`` and ``sms.opt_outs`` (see the README's
"Campaigns").

Both objects hold nothing of their own: every call works on the current app (inside an app
context), in the host's Flask-SQLAlchemy session, and takes ``commit=`` like the rest of the
extension. Runner jobs are enqueued only once the transaction commits.
"""

from __future__ import annotations

from datetime import datetime
from typing import IO

from sqlalchemy import select, update

from ..checks import text_problem
from ..errors import CampaignError, PhoneNumberError
from ..messages import outbox
from ..models import MESSAGES, Campaign, Message, OptOut, Status, utcnow
from ..state import SMSState, get_state
from ..text.phone import normalize_phone
from . import optout, preview, progress, runner
from .audience import AudienceLocation
from .optout import ImportResult, OptOutPage
from .preview import Preview, SampleText
from .progress import Progress
from .selection import Sorter, audience
from .spec import (
    KIND_OF,
    CampaignSpec,
    checked,
    resolve_region,
    shared_region,
    spec_of,
    store,
    to_utc,
)
from .texts import Texts

__all__ = [
    "CampaignSpec",
    "Campaigns",
    "ImportResult",
    "OptOutPage",
    "OptOuts",
    "Preview",
    "Progress",
    "SampleText",
]

EDITABLE = ("draft", "scheduled")
PAUSABLE = ("scheduled", "expanding", "sending")
CANCELLABLE = ("draft", "scheduled", "expanding", "sending", "paused")


class Campaigns:
    """Create, preview, schedule, pause, resume and cancel campaigns (``sms.campaigns``).

    Errors meant for the admin raise :class:`~sms_ext.CampaignError` with a sentence.
    """

    # -- reading ----------------------------------------------------------------------------

    def locations(self) -> list[AudienceLocation]:
        """The locations of the registered audience source (``[]`` without one)."""
        source = get_state().registrations.audience
        return list(source.locations()) if source is not None else []

    def get(self, campaign_id: int) -> Campaign:
        """The campaign ``campaign_id``; raises :class:`CampaignError` when there is none."""
        campaign = (
            get_state().session.get(Campaign, campaign_id)
            if isinstance(campaign_id, int) and 0 < campaign_id < 2**31
            else None
        )
        if campaign is None:
            raise CampaignError(f"There is no campaign #{campaign_id}.")
        return campaign

    def list(self, *, limit: int = 100) -> list[Campaign]:
        """The newest campaigns first."""
        query = select(Campaign).order_by(Campaign.created_at.desc(), Campaign.id.desc())
        return list(get_state().session.scalars(query.limit(max(1, limit))))

    def spec_of(self, campaign_id: int) -> CampaignSpec:
        """The spec the campaign was saved with (to fill the edit form)."""
        return spec_of(self.get(campaign_id))

    def progress(self, campaign_id: int) -> Progress:
        """Its messages counted by status, and the rate over the last minute."""
        campaign = self.get(campaign_id)
        get_state().session.refresh(campaign)  # the runner changes it from other processes
        return progress.of(get_state().session, campaign)

    def preview(self, spec: CampaignSpec, *, samples: int = 3) -> Preview:
        """Reach, exclusions, sample texts, parts and cost of ``spec``; writes nothing. A spec
        that cannot run is not raised: its problem is in ``problems``."""
        return preview.build(get_state(), spec, self.locations(), max(0, samples))

    # -- writing ----------------------------------------------------------------------------

    def create(
        self, spec: CampaignSpec, *, created_by: str | None = None, commit: bool = True
    ) -> Campaign:
        """Save a campaign: a draft, or scheduled when ``spec.start_at`` is set."""
        state = get_state()
        timezone = checked(state.session, spec, self.locations())
        if created_by is not None:
            problem = text_problem(created_by, "The author", outbox.MAX_SENT_BY)
            if problem:
                raise CampaignError(problem)
        campaign = Campaign(status="draft", created_by=created_by, exclusions={})
        store(campaign, spec, timezone)
        state.session.add(campaign)
        state.session.flush()
        self._plan(state, campaign)
        return self._done(state, campaign, commit)

    def update(self, campaign_id: int, spec: CampaignSpec, *, commit: bool = True) -> Campaign:
        """Change a draft or scheduled campaign; ``spec.start_at`` None makes it a draft."""
        state = get_state()
        campaign = self._in(
            campaign_id, EDITABLE, "Only a draft or scheduled campaign can be changed."
        )
        timezone = checked(state.session, spec, self.locations())
        store(campaign, spec, timezone)
        self._plan(state, campaign)
        return self._done(state, campaign, commit)

    def start(
        self, campaign_id: int, *, at: datetime | None = None, commit: bool = True
    ) -> Campaign:
        """Schedule the campaign at ``at`` (naive = its timezone's local time; None = now).
        A time in the past starts it at once."""
        state = get_state()
        campaign = self._in(
            campaign_id, EDITABLE, "Only a draft or scheduled campaign can be started."
        )
        checked(state.session, spec_of(campaign), self.locations())  # a template may be gone
        if at is not None and not isinstance(at, datetime):
            raise CampaignError("The start must be a date and time.")
        campaign.scheduled_at = to_utc(at, campaign.timezone) if at is not None else utcnow()
        self._plan(state, campaign)
        return self._done(state, campaign, commit)

    def pause(self, campaign_id: int, *, commit: bool = True) -> Campaign:
        """Stop handing out messages; queued ones not yet taken by a worker wait again."""
        state = get_state()
        campaign = self._in(
            campaign_id, PAUSABLE, "Only a running campaign can be paused.", lock=True
        )
        campaign.status = "paused"
        state.session.flush()
        state.session.execute(
            update(MESSAGES)
            .where(MESSAGES.c.campaign_id == campaign.id, MESSAGES.c.status == Status.QUEUED)
            .values(status=Status.HELD, job_id=None)
        )
        return self._done(state, campaign, commit)

    def resume(self, campaign_id: int, *, commit: bool = True) -> Campaign:
        """Go on where a pause stopped."""
        state = get_state()
        campaign = self._in(
            campaign_id, ("paused",), "Only a paused campaign can be resumed.", lock=True
        )
        if campaign.started_at is None:
            campaign.status = "scheduled"
        else:
            campaign.status = "sending" if campaign.expanded else "expanding"
        at = max(campaign.scheduled_at or utcnow(), utcnow())
        outbox.after_commit(state.session, lambda: runner.schedule(state, campaign_id, at))
        return self._done(state, campaign, commit)

    def cancel(self, campaign_id: int, *, commit: bool = True) -> Campaign:
        """End the campaign: what was not handed to a worker is never sent."""
        state = get_state()
        campaign = self._in(campaign_id, CANCELLABLE, "This campaign has already ended.", lock=True)
        campaign.status, campaign.finished_at = "cancelled", utcnow()
        state.session.flush()
        runner.cancel_unsent(state.session, campaign.id)
        outbox.after_commit(state.session, lambda: runner.forget(state, campaign_id))
        return self._done(state, campaign, commit)

    def test_send(self, spec: CampaignSpec, phone: str, *, sent_by: str | None = None) -> Message:
        """Send the text of the first recipient (or the sample values) to ``phone`` now,
        whatever its opt-out: an admin checking what guests will read. Commits."""
        state = get_state()
        locations = self.locations()
        checked(state.session, spec, locations)
        texts = Texts.of(state, spec, locations)
        region = resolve_region(spec, locations, state.settings.default_region)
        text, location = self._first_text(state, spec, texts, region)
        row = outbox.compose(
            state,
            phone,
            text,
            kind=KIND_OF[spec.purpose],
            location=location,
            sent_by=sent_by,
            region=region,
        )
        return outbox.queue_one(state, row, commit=True)

    # -- helpers ----------------------------------------------------------------------------

    def _first_text(
        self, state: SMSState, spec: CampaignSpec, texts: Texts, region: str | None
    ) -> tuple[str, str | None]:
        sorter = Sorter(state.session, spec, region)
        for chunk in audience(spec, state.registrations.audience, region):
            for phone, person in sorter.sort(chunk):
                text = texts.render(phone, person)
                if text:
                    return text, person.location
        return texts.sample(), None

    def _in(
        self, campaign_id: int, states: tuple[str, ...], refusal: str, *, lock: bool = False
    ) -> Campaign:
        campaign = self.get(campaign_id)
        if lock:  # against a tick releasing rows at the same moment
            get_state().session.refresh(campaign, with_for_update=True)
        if campaign.status not in states:
            raise CampaignError(f"{refusal} It is {campaign.status}.")
        return campaign

    def _plan(self, state: SMSState, campaign: Campaign) -> None:
        """Scheduled when it has a start, a draft otherwise; the runner follows the commit."""
        campaign.status = "scheduled" if campaign.scheduled_at is not None else "draft"
        campaign_id, at = campaign.id, campaign.scheduled_at
        if at is None:
            outbox.after_commit(state.session, lambda: runner.forget(state, campaign_id))
        else:
            outbox.after_commit(state.session, lambda: runner.schedule(state, campaign_id, at))

    def _done(self, state: SMSState, campaign: Campaign, commit: bool) -> Campaign:
        state.session.flush()
        if commit:
            state.session.commit()
        return campaign


def host_region(state: SMSState) -> str | None:
    """The region numbers without ``+`` are read in outside a campaign (the opt-out list): the
    one region all the host's locations share, else ``SMS_DEFAULT_REGION``."""
    source = state.registrations.audience
    places = list(source.locations()) if source is not None else []
    return shared_region(places, state.settings.default_region)


class OptOuts:
    """The opt-out list (``sms.opt_outs``): numbers campaigns never reach."""

    def _phone(self, state: SMSState, phone: str) -> str:
        return normalize_phone(phone, default_region=host_region(state), allow_fixed_line=True)

    def add(
        self, phone: str, source: str = "admin", note: str = "", *, commit: bool = True
    ) -> bool:
        """List ``phone`` (any format; raises :class:`~sms_ext.PhoneNumberError`); ``False``
        when it was listed already."""
        state = get_state()
        try:
            kind = optout.Source(source)
        except ValueError:
            raise CampaignError(f"Unknown opt-out source '{str(source)[:20]}'.") from None
        problem = text_problem(note, "The note", optout.MAX_NOTE, multiline=True)
        if problem:
            raise CampaignError(problem)
        added = optout.add(state.session, self._phone(state, phone), kind, note=note)
        if commit:
            state.session.commit()
        return added

    def remove(self, phone: str, *, commit: bool = True) -> bool:
        """Take ``phone`` off the list; ``False`` when it was not there (or is no number)."""
        state = get_state()
        try:
            number = self._phone(state, phone)
        except PhoneNumberError:
            return False
        removed = optout.remove(state.session, number)
        if commit:
            state.session.commit()
        return removed

    def contains(self, phone: str) -> bool:
        state = get_state()
        try:
            return optout.contains(state.session, self._phone(state, phone))
        except PhoneNumberError:
            return False

    def import_csv(
        self, stream: IO[str], *, source: str = "import", commit: bool = True
    ) -> ImportResult:
        """Add the numbers of a CSV file (its ``phone`` column, else the first); bad lines
        are reported, not raised."""
        state = get_state()
        result = optout.import_csv(
            state.session, stream, default_region=host_region(state), source=source
        )
        if commit:
            state.session.commit()
        return result

    def page(self, *, search: str = "", page: int = 1, per_page: int = 50) -> OptOutPage:
        """One page of the list, newest first, optionally filtered (see
        :func:`.optout.page`)."""
        return optout.page(get_state().session, search=search, page=page, per_page=per_page)

    def get(self, phone: str) -> OptOut | None:
        state = get_state()
        try:
            return state.session.get(OptOut, self._phone(state, phone))
        except PhoneNumberError:
            return None
