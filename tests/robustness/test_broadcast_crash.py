"""A broadcast on SQLite with learner traffic beside it, a sender killed mid-round and a new
process taking over: the ceiling holds in every second the fake saw, every reachable learner
gets the announcement, exactly one delivery report, and no `database is locked` in the log."""

from __future__ import annotations

import asyncio
import logging

from bot.bootstrap import build_app
from bot.channels.telegram_aiogram import AiogramChannel
from scheduler.sender import Sender
from storage.models import OutboxMessage
from tests.conftest import ADMIN_TG, make_settings, start_telegram_app
from tests.fakes.telegram_api import has
from tests.scheduler.support import add_learners, count_rows

CEILING = 30
LEARNERS = 300


def announced(tg, user_id: int) -> int:
    return sum("Robust news" in (m.get("text") or "") for m in tg.messages_for(user_id))


async def test_broadcast_survives_a_crash_with_the_ceiling_and_one_report(
    sqlite_url, clock, tg, caplog
):
    caplog.set_level(logging.INFO)
    extra = dict(send_rate_per_second=CEILING, sender_concurrency=16, sender_lease_seconds=5)
    app, channel = await start_telegram_app(sqlite_url, clock, tg, **extra)
    ids = list(range(300_000, 300_000 + LEARNERS))
    await add_learners(app, ids)
    for user_id in ids:
        tg.user(user_id)
    admin = tg.user(ADMIN_TG, first_name="Boss", language_code="en")
    await admin.send("/announce all Robust news")
    await admin.wait_for_message(has("Announcement #1"), timeout=30)
    tg.max_per_second = CEILING
    first = Sender(app)
    task = first.start()
    # learners keep talking to the bot while the broadcast goes out
    talkers = [tg.user(310_000 + n, language_code="en") for n in range(20)]
    for talker in talkers:
        await talker.send("/help")
    await tg.wait_until(lambda: sum(announced(tg, i) for i in ids) >= LEARNERS // 3, 60)
    task.cancel()  # the process dies mid-round: claimed rows stay claimed
    await asyncio.gather(task, return_exceptions=True)
    await channel.stop()
    await app.close()

    clock.advance(seconds=6)  # past the lease of the dead sender's claims
    second = await build_app(
        make_settings(
            sqlite_url, telegram_bot_token=tg.token, telegram_api_url=tg.base_url, **extra
        ),
        clock=clock,
    )
    again = AiogramChannel(second)
    second.channels.add(again)
    await again.start()  # polls: updates the dead process left unconfirmed come again
    sender = Sender(second)
    runner = sender.start()
    try:
        await tg.wait_until(
            lambda: all(announced(tg, i) >= 1 for i in ids), 120, what="every learner"
        )
        await tg.wait_until(
            lambda: any(
                "Delivery report" in (m.get("text") or "") for m in tg.messages_for(ADMIN_TG)[1:]
            ),
            30,
            what="the delivery report",
        )
        await asyncio.sleep(1.5)  # a second report would come now
    finally:
        await sender.stop()
        await again.stop()
    duplicated = sum(announced(tg, i) > 1 for i in ids)
    reports = [m for m in tg.messages_for(ADMIN_TG) if "Delivery report" in (m.get("text") or "")]
    assert len(reports) == 1, [m["text"] for m in reports]
    assert tg.peak_rate(1.0) <= CEILING and tg.rate_violations == 0
    assert duplicated <= 16  # at most the sends in flight when the process died
    assert await count_rows(second, OutboxMessage, OutboxMessage.status == "pending") == 0
    assert not [r for r in caplog.records if "database is locked" in r.getMessage()]
    for talker in talkers:  # each got its reply, and only once
        assert sum("Commands" in (m.get("text") or "") for m in tg.messages_for(talker.id)) == 1
    await second.close()
    assert runner.done()
