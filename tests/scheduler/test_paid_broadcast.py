"""TELEGRAM_PAID_BROADCAST: announcements go with allow_paid_broadcast on their own limiter at
TELEGRAM_PAID_BROADCAST_RATE; the delivery report and every other message stay free and under
SEND_RATE_PER_SECOND. Off (the default), nothing is paid."""

from __future__ import annotations

import time

import pytest

from scheduler.sender import Sender, sender_state
from storage.models import OutboxMessage
from tests.conftest import ADMIN_TG
from tests.scheduler.support import add_learners, count_rows, has, start_telegram_app

LEARNERS = 80
FREE_RATE = 10


async def announce_and_drain(app, tg) -> float:
    """/announce to every learner, then drain the outbox; the seconds the drain took."""
    admin = tg.user(ADMIN_TG, first_name="Boss", language_code="en")
    await admin.send("/announce all Paid news")
    await admin.wait_for_message(has("Announcement #1"))
    sender = Sender(app)
    started = time.monotonic()
    while await count_rows(app, OutboxMessage, OutboxMessage.status.in_(["pending", "sending"])):
        await sender.run_once()
        assert time.monotonic() - started < 60
    elapsed = time.monotonic() - started
    await sender.run_once()  # the delivery report
    return elapsed


def paid_flags(tg, text: str) -> list[bool | None]:
    """allow_paid_broadcast of each sendMessage whose text contains `text`."""
    return [
        p.get("allow_paid_broadcast")
        for p in tg.calls("sendMessage")
        if text in str(p.get("text") or "")
    ]


@pytest.mark.parametrize("paid", [True, False])
async def test_announcements_are_paid_broadcasts_only_when_turned_on(sqlite_url, clock, tg, paid):
    app, channel = await start_telegram_app(
        sqlite_url,
        clock,
        tg,
        send_rate_per_second=FREE_RATE,
        sender_concurrency=16,
        telegram_paid_broadcast=paid,
        telegram_paid_broadcast_rate=1000,
    )
    try:
        ids = list(range(200_000, 200_000 + LEARNERS))
        await add_learners(app, ids)
        for user_id in ids:
            tg.user(user_id)
        elapsed = await announce_and_drain(app, tg)
        announced = paid_flags(tg, "Paid news")
        assert len(announced) == LEARNERS + 1  # the admin is a learner too
        assert all(flag is (True if paid else None) for flag in announced)
        report = paid_flags(tg, "Delivery report")
        assert report == [None], "the report to the admin is an ordinary message"
        if paid:  # 81 sends at the free 10/s take 8 s
            assert elapsed < 5 and "telegram:paid" in sender_state(app).limiters
        else:
            assert tg.peak_rate(1.0) <= FREE_RATE
    finally:
        await channel.stop()
        await app.close()
