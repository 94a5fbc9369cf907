"""What receipts show to admins: the SMS log (time and code), the CSV export and the
dashboard's delivery rate and median time to deliver, computed in SQL on both backends."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from sms_ext.admin.delivery_stats import delivery_by_gateway
from sms_ext.models import MESSAGES, Gateway, Message, Status, utcnow
from tests.conftest import drain
from tests.helpers import custom_gateway
from tests.simulator import GatewaySimulator

PREFIX = "/sms/admin"


def messages(app: Flask, gateway: Gateway, count: int) -> list[int]:
    """``count`` messages sent for real through ``gateway``."""
    sms = app.extensions["sms"]
    ids = []
    for n in range(count):
        from sms_ext.messages import outbox

        row = outbox.compose(sms, f"+2783123{n:04d}", "Hello", gateway=gateway)
        ids.append(outbox.queue_one(sms, row, commit=True).id)
    drain(app)
    return ids


def settle(
    app: Flask, message_id: int, status: str, seconds: float | None, **extra: object
) -> None:
    """Give a sent message the outcome a receipt would, ``seconds`` after its send."""
    session = app.extensions["sms"].session
    sent_at = utcnow() - timedelta(hours=1)
    values: dict[str, object] = {"status": status, "sent_at": sent_at, **extra}
    if status == Status.DELIVERED and seconds is not None:
        values["delivered_at"] = sent_at + timedelta(seconds=seconds)
    elif status in (Status.UNDELIVERED, Status.FAILED):
        values["failed_at"] = sent_at + timedelta(seconds=seconds or 1)
    session.execute(update(MESSAGES).where(MESSAGES.c.id == message_id).values(**values))
    session.commit()


def test_rate_and_median_per_gateway(app_ctx: Flask, simulator: GatewaySimulator) -> None:
    even = custom_gateway(app_ctx, simulator, "even")
    odd = custom_gateway(app_ctx, simulator, "odd")
    quiet = custom_gateway(app_ctx, simulator, "quiet")
    a = messages(app_ctx, even, 8)
    for message_id, seconds in zip(a, (100, 10, 30, 20), strict=False):
        settle(app_ctx, message_id, Status.DELIVERED, seconds)
    settle(app_ctx, a[4], Status.UNDELIVERED, 5, error_code="30003")
    settle(app_ctx, a[5], Status.FAILED, 5)
    settle(app_ctx, a[6], Status.FAILED, None, sent_at=None)  # we failed it: not the gateway's
    # a[7] stays "sent": no receipt yet, left out
    b = messages(app_ctx, odd, 3)
    for message_id, seconds in zip(b, (50, 5, 7), strict=True):
        settle(app_ctx, message_id, Status.DELIVERED, seconds)
    messages(app_ctx, quiet, 1)

    stats = delivery_by_gateway(app_ctx.extensions["sms"].session, utcnow() - timedelta(days=1))

    assert set(stats) == {even.id, odd.id}  # no receipt at all: no row
    assert (stats[even.id].delivered, stats[even.id].not_delivered) == (4, 2)
    assert stats[even.id].rate == 4 / 6
    assert stats[even.id].p50_seconds is not None
    assert abs(stats[even.id].p50_seconds - 25) < 0.01  # (20 + 30) / 2
    assert stats[odd.id].rate == 1.0
    assert stats[odd.id].p50_seconds is not None and abs(stats[odd.id].p50_seconds - 7) < 0.01


def test_dashboard_shows_the_delivery_table(
    app: Flask, admin: FlaskClient, simulator: GatewaySimulator
) -> None:
    with app.app_context():
        gateway = custom_gateway(app, simulator, "Main")
        ids = messages(app, gateway, 3)
        settle(app, ids[0], Status.DELIVERED, 3)
        settle(app, ids[1], Status.DELIVERED, 200)
        settle(app, ids[2], Status.UNDELIVERED, 3)
    page = admin.get(f"{PREFIX}/").text
    assert "Delivery, last 7 days" in page
    row = page[page.index('<tr class="delivery-row">') :]
    assert "Main" in row[:200]
    assert '<td class="num" data-figure="rate">66.7 %</td>' in row
    assert '<td class="num" data-figure="p50">101.5 s</td>' in row  # (3 + 200) / 2


def test_log_list_detail_and_csv_show_receipts(
    app: Flask, admin: FlaskClient, simulator: GatewaySimulator
) -> None:
    with app.app_context():
        gateway = custom_gateway(app, simulator, "Main")
        delivered, undelivered = messages(app, gateway, 2)
        settle(app, delivered, Status.DELIVERED, 4)
        settle(app, undelivered, Status.UNDELIVERED, 4, error_code="=30003")
        session = app.extensions["sms"].session
        delivered_at = session.get(Message, delivered).delivered_at

    listing = admin.get(f"{PREFIX}/logs/").text
    assert delivered_at.strftime("%H:%M:%S") in listing
    assert "code =30003" in listing
    detail = admin.get(f"{PREFIX}/logs/{undelivered}").text
    assert "Receipt error code</dt><dd>=30003" in detail

    exported = admin.get(f"{PREFIX}/logs/export.csv").get_data(as_text=True).lstrip("\ufeff")
    rows = list(csv.DictReader(io.StringIO(exported)))
    by_id = {int(r["message_id"]): r for r in rows}
    assert by_id[delivered]["delivered_utc"] == delivered_at.isoformat(timespec="seconds") + "Z"
    assert by_id[delivered]["error_code"] == ""
    assert by_id[undelivered]["error_code"] == "'=30003"  # neutralised like every cell
    assert by_id[undelivered]["delivered_utc"] == ""
