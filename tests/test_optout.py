"""The opt-out list through ``sms.opt_outs`` and ``flask sms optout ...``: add, remove, CSV
import (a ``phone`` column or the first), pages, and what a campaign does with it."""

from __future__ import annotations

import io

import pytest
from flask import Flask

from sms_ext import SMS, CampaignError, CampaignSpec, PhoneNumberError
from sms_ext.campaigns import Recipient
from tests.campaign_app import ListSource

UK = "+447400000001"


def test_add_remove_contains_normalize_the_number(app_ctx: Flask, sms: SMS) -> None:
    opt_outs = sms.opt_outs
    assert opt_outs.add("+44 7400 000001", note="asked at the desk") is True
    assert opt_outs.add(UK, source="stop") is False  # the first entry is kept
    assert opt_outs.contains("00447400000001") and not opt_outs.contains("+447400000002")
    entry = opt_outs.get(UK)
    assert (entry.source, entry.note) == ("admin", "asked at the desk")
    with pytest.raises(PhoneNumberError):
        opt_outs.add("hello")
    with pytest.raises(CampaignError, match="Unknown opt-out source 'fax'"):
        opt_outs.add(UK, source="fax")
    with pytest.raises(CampaignError, match="The note must be at most 200 characters"):
        opt_outs.add("+447400000002", note="x" * 201)
    assert opt_outs.remove("+447400000001") is True
    assert opt_outs.remove(UK) is False and opt_outs.remove("junk") is False
    assert not opt_outs.contains(UK)


def test_csv_import_reads_the_phone_column_and_reports_bad_lines(app_ctx: Flask, sms: SMS) -> None:
    sms.opt_outs.add("+447400000003")
    csv_text = (
        "name,phone\n"
        "Ann,+447400000001\n"
        "Bob,+44 7400 000002\n"
        "Ann again,00447400000001\n"
        "Known,+447400000003\n"
        "Bad,12ab\n"
        "Nobody,\n"
        "Desk,+442079460000\n"
    )
    result = sms.opt_outs.import_csv(io.StringIO(csv_text))
    assert (result.added, result.already) == (3, 2)  # a landline may opt out too
    assert [line for line, _ in result.invalid] == [6, 7]
    assert result.invalid[0][1] == "12ab: A phone number can only contain digits."
    assert result.invalid[1][1] == "No phone number in this line."
    assert sms.opt_outs.get("+447400000002").source == "import"
    # No header: the first column.
    plain = sms.opt_outs.import_csv(io.StringIO("+34612000001;x\n+34612000002\n"))
    assert (plain.added, plain.invalid) == (
        1,
        [(1, "+34612000001;x: A phone number can only contain digits.")],
    )


def test_csv_import_of_many_numbers(app_ctx: Flask, sms: SMS) -> None:
    lines = "\n".join(f"+4474{i:08d}" for i in range(2500))
    result = sms.opt_outs.import_csv(io.StringIO("phone\n" + lines))
    assert (result.added, result.already, result.invalid) == (2500, 0, [])
    page = sms.opt_outs.page(page=3, per_page=1000)  # at most 500 a page
    assert (page.total, page.pages, page.page, len(page.items)) == (2500, 5, 3, 500)
    assert sms.opt_outs.page(search="7400002499").total == 1
    assert sms.opt_outs.page(search="import").total == 2500
    assert sms.opt_outs.page(page=99).page == 50  # past the end: the last page


def test_campaigns_never_reach_the_list_nor_the_hosts_flag(app_ctx: Flask, sms: SMS) -> None:
    sms.campaign_audience(
        ListSource(
            [
                Recipient(UK, location="harbour", marketing_consent=True),
                Recipient(
                    "+447400000002", location="harbour", marketing_consent=True, opted_out=True
                ),
                Recipient("+447400000003", location="harbour", marketing_consent=True),
            ]
        )
    )
    sms.opt_outs.import_csv(io.StringIO("+447400000003\n"))
    for purpose in ("marketing", "notice"):
        preview = sms.campaigns.preview(CampaignSpec(name="x", purpose=purpose, body="Hi"))
        assert (preview.recipients, preview.excluded["opted_out"]) == (1, 2)


def run(app: Flask, *args: str):
    return app.test_cli_runner().invoke(args=["sms", "optout", *args])


def test_optout_commands(app: Flask, tmp_path) -> None:
    added = run(app, "add", "+44 7400 000001", "--note", "phoned")
    assert added.exit_code == 0 and "+44 7400 000001: opted out" in added.output
    assert "already on the list" in run(app, "add", UK).output
    bad = run(app, "add", "nope")
    assert bad.exit_code == 1 and "A phone number can only contain digits." in bad.output
    source = tmp_path / "stop.csv"
    source.write_text("phone\n+447400000002\n+447400000001\nxx\n", encoding="utf-8")
    imported = run(app, "import", str(source))
    assert imported.exit_code == 0
    assert "Added 1, already listed 1, refused 1" in imported.stdout
    assert "line 4: xx: A phone number can only contain digits." in imported.stderr
    listed = run(app, "list")
    assert "+447400000001  admin" in listed.stdout and "phoned" in listed.stdout
    assert "Page 1 of 1, 2 in all" in listed.stderr
    assert run(app, "remove", UK).exit_code == 0
    gone = run(app, "remove", UK)
    assert gone.exit_code == 1 and f"{UK} is not on the opt-out list." in gone.output
    missing = run(app, "import", str(tmp_path / "none.csv"))
    assert missing.exit_code == 2 and "No such file or directory" in missing.output
