"""Campaigns without workers: specs checked, previews counted, drafts saved and scheduled,
test sends, the sending window's clock, and ``flask sms campaign ...``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from flask import Flask
from redis import Redis
from rq.registry import ScheduledJobRegistry
from sqlalchemy import func, select

from sms_ext import SMS, CampaignError, CampaignSpec, Kind, Message, PhoneNumberError
from sms_ext.campaigns import AudienceLocation, Recipient, window
from sms_ext.campaigns import preview as preview_module
from sms_ext.campaigns.selection import REASONS
from sms_ext.campaigns.spec import resolve_region
from sms_ext.messages import template_store
from sms_ext.models import utcnow
from tests.campaign_app import ListSource, expected
from tests.helpers import custom_gateway
from tests.simulator import GatewaySimulator

UK = "+447400000001"
UK2 = "+447400000002"
ES = "+34612000001"
BODY = "Hi {{ name }} at {{ location }}! {{ opt_out }}"


def people() -> list[Recipient]:
    """One recipient per exclusion reason, plus two who get the campaign."""
    return [
        Recipient(UK, "Ann", location="harbour", marketing_consent=True, customer="guest:1"),
        Recipient(UK2, "Bob", location="harbour", marketing_consent=True),
        Recipient("12345", "Bad", location="harbour", marketing_consent=True),  # invalid
        Recipient("+442079460000", "Desk", location="harbour", marketing_consent=True),  # fixed
        Recipient("+44 7400 000001", "Ann again", location="harbour", marketing_consent=True),
        Recipient("+447400000003", "Out", location="harbour", marketing_consent=True),  # list
        Recipient(
            "+447400000004", "Host", location="harbour", marketing_consent=True, opted_out=True
        ),
        Recipient("+447400000005", "Nope", location="plaza", marketing_consent=False),
    ]


@pytest.fixture
def source(sms: SMS) -> ListSource:
    return sms.campaign_audience(ListSource(people()))  # type: ignore[return-value]


def spec(**changes: object) -> CampaignSpec:
    base = CampaignSpec(name="Summer", purpose="marketing", body=BODY)
    return CampaignSpec(**{**base.__dict__, **changes})  # type: ignore[arg-type]


def test_preview_counts_every_exclusion_once(
    app_ctx: Flask, sms: SMS, source: ListSource, simulator: GatewaySimulator
) -> None:
    gateway = custom_gateway(app_ctx, simulator, "bulk")
    gateway.price_per_part, gateway.currency = Decimal("0.045"), "EUR"
    sms.opt_outs.add("+447400000003", note="asked at the desk")
    app_ctx.extensions["sms"].session.commit()

    preview = sms.campaigns.preview(spec())
    assert preview.excluded == {
        "invalid": 1,
        "not_mobile": 1,
        "outside_regions": 0,
        "duplicate": 1,
        "opted_out": 2,
        "no_consent": 1,
    }
    assert preview.recipients == 2
    assert [s.text for s in preview.samples] == [
        "Hi Ann at Harbour Café! Reply STOP to opt out",
        "Hi Bob at Harbour Café! Reply STOP to opt out",
    ]
    assert preview.samples[0].phone == "+44 74 ••• 0001"  # masked like the SMS log
    assert (preview.samples[0].encoding, preview.samples[0].parts) == ("GSM-7", 1)
    assert (preview.parts_min, preview.parts_max, preview.total_parts) == (1, 1, 2)
    assert (preview.estimated_cost, preview.currency) == (Decimal("0.090"), "EUR")
    assert preview.timezone == "Europe/London"  # the first location's
    assert preview.problems == []
    # Nothing was written.
    assert app_ctx.extensions["sms"].session.scalar(select(func.count(Message.id))) == 0

    notice = sms.campaigns.preview(spec(purpose="notice", regions=("ES",)))
    # Regions come before duplicates and opt-outs; a notice needs no consent.
    assert notice.excluded == {
        **dict.fromkeys(REASONS, 0),
        "invalid": 1,
        "not_mobile": 1,
        "outside_regions": 6,
    }
    assert notice.recipients == 0 and notice.problems == ["Nobody would receive this campaign."]


def test_preview_measures_parts_and_encoding(app_ctx: Flask, sms: SMS, source: ListSource) -> None:
    long = "ça va? " + "x" * 80 + " {{ name }}"  # ç forces UCS-2: 70 per SMS, 67 per part
    preview = sms.campaigns.preview(spec(body=long, purpose="notice", locations=("plaza",)))
    assert preview.recipients == 1
    assert preview.samples[0].encoding == "UCS-2"
    assert preview.total_parts == preview.parts_max == 2
    assert preview.timezone == "Europe/Madrid"
    start = datetime(2026, 7, 1, 9, 0)
    summer = sms.campaigns.preview(spec(timezone="Europe/Madrid", start_at=start))
    assert summer.utc_offset == "+02:00"


def test_pasted_numbers_are_looked_up_and_unknown_ones_have_no_consent(
    app_ctx: Flask, sms: SMS, source: ListSource
) -> None:
    pasted = (UK, "+34 612 000 009", "not a number", UK)
    marketing = sms.campaigns.preview(spec(phones=pasted))
    # Ann is known (consent); the Spanish number is not (no consent); Ann twice: a duplicate.
    assert marketing.recipients == 1
    assert marketing.samples[0].text.startswith("Hi Ann at Harbour Café")
    assert marketing.excluded["no_consent"] == 1
    assert marketing.excluded["invalid"] == 1 and marketing.excluded["duplicate"] == 1
    assert source.queries[-1].phones == (ES[:-1] + "9", UK)
    notice = sms.campaigns.preview(spec(phones=pasted, purpose="notice"))
    assert notice.recipients == 2
    assert notice.samples[1].text == "Hi  at ! Reply STOP to opt out"  # unknown: no name


def test_seen_within_days_asks_the_source(app_ctx: Flask, sms: SMS, source: ListSource) -> None:
    old = utcnow() - timedelta(days=10)
    source.seen = {UK: old, "+44 7400 000001": old}  # Ann, under both spellings
    assert sms.campaigns.preview(spec(seen_within_days=7)).recipients == 2  # not Ann
    assert sms.campaigns.preview(spec(seen_within_days=30)).recipients == 3


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": " "}, "The campaign needs a name."),
        ({"name": "x" * 121}, "The name must be at most 120 characters."),
        ({"purpose": "promo"}, "The kind must be marketing or notice."),
        ({"body": "  "}, "Write the message or choose a template."),
        ({"body": "{{ name"}, "Line 1: unexpected end of template"),
        ({"body": "{{ code }}"}, "Line 1: unknown variable 'code'"),
        ({"template_id": 999}, "The chosen template no longer exists."),
        ({"timezone": "Mars/Olympus"}, "'Mars/Olympus' is not a known timezone"),
        (
            {"window": (9 * 60, 9 * 60)},
            "The sending window must not start and end at the same time.",
        ),
        ({"window": (-1, 60)}, "The sending window must run between 00:00 and 24:00"),
        ({"window": (60, 24 * 60 + 1)}, "The sending window must run between 00:00 and 24:00"),
        ({"locations": ("moon",)}, "Unknown location 'moon'."),
        ({"regions": ("GBR",)}, "Regions are two-letter codes"),
        ({"seen_within_days": 0}, "'Seen within' must be between 1 and 3650 days."),
        ({"phones": ("+1\x00",)}, "A pasted number must not contain NUL characters."),
    ],
)
def test_bad_specs_are_refused_with_a_sentence(
    app_ctx: Flask, sms: SMS, source: ListSource, changes: dict, message: str
) -> None:
    with pytest.raises(CampaignError) as caught:
        sms.campaigns.create(spec(**changes))
    assert str(caught.value).startswith(message)
    # The preview shows the same sentence instead of raising.
    assert sms.campaigns.preview(spec(**changes)).problems == [str(caught.value)]
    assert sms.campaigns.list() == []


def test_without_a_source_only_pasted_lists_work(app_ctx: Flask, sms: SMS) -> None:
    with pytest.raises(CampaignError, match="paste the numbers"):
        sms.campaigns.create(spec())
    campaign = sms.campaigns.create(spec(phones=(UK,), purpose="notice"))
    assert campaign.timezone == "UTC"
    assert sms.campaigns.locations() == []


def test_draft_update_start_and_spec_round_trip(
    app_ctx: Flask, sms: SMS, source: ListSource, redis: Redis
) -> None:
    state = app_ctx.extensions["sms"]
    draft = sms.campaigns.create(spec(window=(9 * 60, 20 * 60)), created_by="ann")
    assert (draft.status, draft.scheduled_at, draft.created_by) == ("draft", None, "ann")
    assert sms.campaigns.spec_of(draft.id) == spec(window=(540, 1200), timezone="Europe/London")
    # A naive start is local time in the campaign's zone (London is UTC+1 in July).
    at = datetime(2030, 7, 1, 9, 30)
    scheduled = sms.campaigns.update(draft.id, spec(start_at=at, timezone="Europe/London"))
    assert scheduled.status == "scheduled"
    assert scheduled.scheduled_at == datetime(2030, 7, 1, 8, 30)
    assert sms.campaigns.spec_of(draft.id).start_at == at.replace(
        tzinfo=window.zone("Europe/London")
    )
    jobs = ScheduledJobRegistry(queue=state.urgent_queue).get_job_ids()
    assert len(jobs) == 1 and jobs[0].startswith(f"sms-campaign-{draft.id}-")
    # Back to a draft, then started now: an aware time is taken as is.
    assert sms.campaigns.update(draft.id, spec()).status == "draft"
    started = sms.campaigns.start(draft.id, at=datetime(2020, 1, 1, tzinfo=UTC))
    assert (started.status, started.scheduled_at) == ("scheduled", datetime(2020, 1, 1))
    assert state.urgent_queue.count == 1  # due in the past: on the (urgent) queue at once
    sms.campaigns.pause(draft.id)
    with pytest.raises(CampaignError, match="Only a draft or scheduled campaign can be changed"):
        sms.campaigns.update(draft.id, spec())
    sms.campaigns.cancel(draft.id)
    resumed = r"Only a paused campaign can be resumed\. It is cancelled"
    with pytest.raises(CampaignError, match=resumed):
        sms.campaigns.resume(draft.id)
    with pytest.raises(CampaignError, match="This campaign has already ended"):
        sms.campaigns.cancel(draft.id)
    with pytest.raises(CampaignError, match="There is no campaign #4242"):
        sms.campaigns.progress(4242)


def test_template_is_used_in_each_recipients_language(
    app_ctx: Flask, sms: SMS, source: ListSource
) -> None:
    session = app_ctx.extensions["sms"].session
    english = template_store.save(
        session, {"name": "promo", "kind": "campaign", "language": "en", "body": "Hello {{ name }}"}
    )
    template_store.save(
        session, {"name": "promo", "kind": "campaign", "language": "es", "body": "Hola {{ name }}"}
    )
    template_store.save(
        session, {"name": "other", "kind": "campaign", "language": "es", "body": "Otro"}
    )
    notice = template_store.save(
        session, {"name": "works", "kind": "notice", "language": "en", "body": "Closed"}
    )
    session.commit()
    source.people = [
        Recipient(UK, "Ann", language="es-MX", location="harbour", marketing_consent=True),
        Recipient(UK2, "Bob", language="fr", location="harbour", marketing_consent=True),
    ]
    preview = sms.campaigns.preview(spec(body="", template_id=english.id))
    assert [s.text for s in preview.samples] == ["Hola Ann", "Hello Bob"]
    with pytest.raises(CampaignError, match="A marketing campaign needs a campaign template"):
        sms.campaigns.create(spec(body="", template_id=notice.id))


def test_test_send_renders_for_the_first_recipient_and_ignores_opt_outs(
    app_ctx: Flask, sms: SMS, source: ListSource
) -> None:
    sms.opt_outs.add("+27831234567")
    message = sms.campaigns.test_send(spec(), "+27 83 123 4567", sent_by="ann")
    assert (message.kind, message.to, message.campaign_id) == (Kind.CAMPAIGN, "+27831234567", None)
    assert message.body == "Hi Ann at Harbour Café! Reply STOP to opt out"
    assert (message.sent_by, message.location) == ("ann", "harbour")
    empty = sms.campaigns.test_send(spec(purpose="notice", phones=("12",)), "+27831234567")
    assert empty.kind == Kind.NOTICE
    assert empty.body == "Hi Alex at Harbour Café Main Hall! Reply STOP to opt out"  # samples
    with pytest.raises(PhoneNumberError):
        sms.campaigns.test_send(spec(), "not a number")


@pytest.mark.parametrize(
    ("chosen", "regions", "expected_region"),
    [
        (("a",), ("GB", "ES"), "GB"),  # the chosen location's region
        ((), ("ZA", "za"), "ZA"),  # none chosen: every location shares ZA
        ((), ("GB", "ES"), "DE"),  # two countries: no guess, SMS_DEFAULT_REGION
        (("a", "b"), ("GB", None), "DE"),  # one location has no region
        ((), (), "DE"),  # no locations at all
    ],
)
def test_numbers_without_a_plus_are_read_in_the_locations_shared_region(
    chosen: tuple[str, ...], regions: tuple[str | None, ...], expected_region: str
) -> None:
    places = [
        AudienceLocation(key, key.upper(), "UTC", region)
        for key, region in zip("ab", regions, strict=False)
    ]
    spec = CampaignSpec(name="x", purpose="notice", body="Hi", locations=chosen)
    assert resolve_region(spec, places, "DE") == expected_region


def test_window_is_local_time_across_clock_changes() -> None:
    night = (22 * 60, 6 * 60)  # spans midnight
    london = "Europe/London"
    assert window.is_open(night, london, datetime(2026, 1, 10, 23, 0))
    assert window.is_open(night, london, datetime(2026, 1, 10, 5, 59))
    assert not window.is_open(night, london, datetime(2026, 1, 10, 6, 0))
    day = (9 * 60, 20 * 60)
    # In July 09:00 in London is 08:00 UTC; in January it is 09:00 UTC.
    assert window.is_open(day, london, datetime(2026, 7, 1, 8, 0))
    assert not window.is_open(day, london, datetime(2026, 1, 1, 8, 0))
    # The night before the clocks go forward (29 March 2026), the next 09:00 is 08:00 UTC.
    assert window.next_opening(day, london, datetime(2026, 3, 28, 21, 0)) == datetime(
        2026, 3, 29, 8, 0
    )
    assert window.next_opening(day, london, datetime(2026, 10, 24, 21, 0)) == datetime(
        2026, 10, 25, 9, 0
    )
    assert window.utc_offset("America/St_Johns", datetime(2026, 1, 1)) == "-03:30"


# -- flask sms campaign ... --------------------------------------------------------------------


def run(app: Flask, *args: str):
    return app.test_cli_runner().invoke(args=["sms", *args])


def test_campaign_commands(app: Flask, sms: SMS, source: ListSource) -> None:
    with app.app_context():
        campaign_id = sms.campaigns.create(spec(name="Autumn")).id
    listed = run(app, "campaign", "list")
    assert listed.exit_code == 0
    assert f"#{campaign_id} draft" in listed.output and "Autumn" in listed.output
    preview = run(app, "campaign", "preview", str(campaign_id))
    assert preview.exit_code == 0, preview.output
    assert "Recipients: 3" in preview.output
    assert "invalid 1, not_mobile 1, outside_regions 0, duplicate 1" in preview.output
    assert "Hi Ann at Harbour Café!" in preview.output
    started = run(app, "campaign", "start", str(campaign_id), "--at", "2031-01-05T10:00")
    assert started.exit_code == 0, started.output
    assert "scheduled for 2031-01-05 10:00 UTC" in started.output
    paused = run(app, "campaign", "pause", str(campaign_id))
    assert "paused: paused" in paused.output
    assert run(app, "campaign", "resume", str(campaign_id)).exit_code == 0
    assert "cancelled: cancelled" in run(app, "campaign", "cancel", str(campaign_id)).output


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["campaign", "pause", "77"], 1, "There is no campaign #77."),
        (["campaign", "preview", "x"], 2, "'x' is not a valid integer"),
        (["campaign", "start", "1", "--at", "tomorrow"], 2, "must be a date and time"),
        (["campaign", "cancel", "0"], 2, "0 is not in the range x>=1"),
    ],
)
def test_campaign_commands_refuse_bad_input(
    app: Flask, args: list[str], code: int, message: str
) -> None:
    result = run(app, *args)
    assert result.exit_code == code
    assert message in result.output
    assert "Traceback" not in result.output


def test_a_large_audience_is_estimated_from_its_first_part(
    app_ctx: Flask, sms: SMS, monkeypatch: pytest.MonkeyPatch
) -> None:
    sms.campaign_audience(ListSource(size=5000))
    exact = sms.campaigns.preview(spec())
    assert exact.exact and exact.recipients == len(expected(5000, "marketing"))
    monkeypatch.setattr(preview_module, "EXACT_LIMIT", 2000)  # checks one chunk, counts the rest
    estimate = sms.campaigns.preview(spec())
    assert not estimate.exact
    assert abs(estimate.recipients - exact.recipients) <= exact.recipients * 0.02
    assert abs(estimate.total_parts - exact.total_parts) <= exact.total_parts * 0.02
    assert sum(estimate.excluded.values()) + estimate.recipients == pytest.approx(5000, abs=2)
