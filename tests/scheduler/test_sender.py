"""The outbox sender: rate ceilings, 429/403 handling, retries, claims by two senders."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import select

from bot.core import Reply, reply_to_body
from scheduler.sender import RateLimiter, Sender, drain_once
from storage.models import Identity, OutboxMessage
from tests.conftest import ADMIN_TG, PG_URL, REQUIRE_PG, make_settings, reset_postgres
from tests.scheduler.support import FakeTime, add_learners, count_rows, has, start_telegram_app

CEILING = 300


async def enqueue(app, user_refs, text="hi", channel="telegram") -> None:
    """Outbox rows, one per user, due now."""
    now = app.clock.now()
    async with app.uow() as uow:
        await uow.broadcasts.enqueue_many(
            [
                dict(
                    channel=channel,
                    user_ref=str(ref),
                    kind="test",
                    body=reply_to_body(Reply(f"{text} {ref}")),
                    dedupe_key=f"test:{text}:{ref}:{n}",
                    status="pending",
                    attempts=0,
                    not_before=now,
                    created_at=now,
                )
                for n, ref in enumerate(user_refs)
            ]
        )
        await uow.commit()


async def rows_by_status(app) -> dict[str, int]:
    """Outbox rows by status."""
    async with app.uow() as uow:
        return await uow.claims.status_counts()


async def test_rate_limiter_never_exceeds_its_rate_in_any_second():
    """Fake time: 200 acquisitions at 25/s, never more than 25 starts within one second."""
    fake = FakeTime()
    limiter = RateLimiter(25, fake.monotonic, fake.sleep)
    starts = []
    for _ in range(200):
        await limiter.acquire()
        starts.append(fake.t)
    worst = max(sum(1 for s in starts if t <= s < t + 1.0) for t in starts)
    assert worst <= 25
    assert 200 / (starts[-1] - starts[0]) > 0.95 * 25 / 1.03
    limiter.pause(5)
    before = fake.t
    await limiter.acquire()
    assert fake.t - before >= 5


async def test_broadcast_to_2000_learners_with_429s_and_blocked_chats(sqlite_url, clock, tg):
    """2,000 learners, 429 every 300 sends, 5% blocked: one message each, ceiling respected."""
    app, channel = await start_telegram_app(
        sqlite_url, clock, tg, send_rate_per_second=CEILING, sender_concurrency=16
    )
    try:
        ids = list(range(100_000, 102_000))
        await add_learners(app, ids)
        blocked = set(ids[::20])
        for user_id in ids:
            tg.user(user_id)
        for user_id in blocked:
            tg.block(user_id)
        admin = tg.user(ADMIN_TG, first_name="Boss", language_code="en")
        await admin.send("/announce all Live Q&A tonight")
        reply = await admin.wait_for_message(has("Announcement #1"), timeout=30)
        assert "on its way to 2001 learners" in reply["text"]
        tg.max_per_second = CEILING
        tg.rate_limit_every(300, retry_after=1)
        sender = Sender(app)
        started = time.monotonic()
        while await count_rows(
            app, OutboxMessage, OutboxMessage.status.in_(["pending", "sending"])
        ):
            await sender.run_once()
            assert time.monotonic() - started < 60
        await sender.run_once()
        await sender.run_once()  # the report row
        for user_id in ids:
            got = [
                m
                for m in tg.messages_for(user_id)
                if "Live Q&amp;A" in m["text"] or "Live Q&A" in m["text"]
            ]
            assert len(got) == (0 if user_id in blocked else 1), user_id
        assert tg.peak_rate(1.0) <= CEILING and tg.rate_violations == 0
        assert any(status == 429 for _, status, _ in tg.errors)
        statuses = await rows_by_status(app)
        assert statuses == {"sent": 2001 - len(blocked) + 1, "unreachable": len(blocked)}
        async with app.uow() as uow:
            flagged = set(
                (
                    await uow.session.execute(
                        select(Identity.user_ref).where(Identity.unreachable_at.is_not(None))
                    )
                ).scalars()
            )
        assert flagged == {str(u) for u in blocked}
        report = tg.messages_for(ADMIN_TG)[-1]["text"]
        assert f"Sent: {2001 - len(blocked)}" in report
        assert f"Unreachable: {len(blocked)}" in report
    finally:
        await channel.stop()
        await app.close()


async def test_errors_retry_with_backoff_then_fail_and_bad_requests_fail_at_once(
    sqlite_url, clock, tg
):
    """5xx: retried with backoff (injected clock), then failed; 400: failed at once."""
    app, channel = await start_telegram_app(sqlite_url, clock, tg, sender_max_attempts=3)
    try:
        tg.user(7001)
        tg.user(7002, started=False)  # sends get 400 chat not found
        fake = FakeTime()
        await enqueue(app, [7002])
        assert await drain_once(app, monotonic=fake.monotonic, sleep=fake.sleep) == 0
        assert (await rows_by_status(app)) == {"failed": 1}
        await enqueue(app, [7001])
        tg.fail_next("sendMessage", 500, "Internal Server Error", times=3)
        assert await drain_once(app, monotonic=fake.monotonic, sleep=fake.sleep) == 0
        assert (await rows_by_status(app)) == {"pending": 1, "failed": 1}
        async with app.uow() as uow:
            rows = (await uow.session.execute(select(OutboxMessage))).scalars().all()
        by_ref = {row.user_ref: row for row in rows}
        assert "chat not found" in by_ref["7002"].last_error
        assert (
            by_ref["7001"].attempts == 1 and "Internal Server Error" in by_ref["7001"].last_error
        )
        assert await drain_once(app, monotonic=fake.monotonic, sleep=fake.sleep) == 0  # not due
        clock.advance(seconds=2)
        assert await drain_once(app, monotonic=fake.monotonic, sleep=fake.sleep) == 0
        clock.advance(seconds=4)
        assert await drain_once(app, monotonic=fake.monotonic, sleep=fake.sleep) == 0
        assert (await rows_by_status(app)) == {"failed": 2}
        await enqueue(app, [7001], text="again")
        assert await drain_once(app, monotonic=fake.monotonic, sleep=fake.sleep) == 1
    finally:
        await channel.stop()
        await app.close()


async def test_one_message_per_chat_per_second(sqlite_url, clock, tg):
    """Three rows for one chat go out in three rounds, one fake second apart."""
    app, channel = await start_telegram_app(sqlite_url, clock, tg)
    try:
        tg.user(7001)
        await enqueue(app, [7001, 7001, 7001])
        fake = FakeTime()
        sent_at = []
        for _ in range(3):
            assert await drain_once(app, monotonic=fake.monotonic, sleep=fake.sleep) == 1
            sent_at.append(fake.t)
        assert sent_at[1] - sent_at[0] >= 1.0 and sent_at[2] - sent_at[1] >= 1.0
        assert [m["text"] for m in tg.messages_for(7001)] == ["hi 7001"] * 3
    finally:
        await channel.stop()
        await app.close()


@pytest.fixture
async def pg_url():
    """A fresh PostgreSQL database (skipped only when no server is configured)."""
    if not PG_URL:
        if REQUIRE_PG:
            pytest.fail("COURSEBOT_REQUIRE_PG=1 but COURSEBOT_TEST_PG_URL is not set")
        pytest.skip("no PostgreSQL server (set COURSEBOT_TEST_PG_URL)")
    return await reset_postgres(PG_URL)


async def test_two_senders_on_postgres_never_send_a_row_twice(pg_url, clock, tg):
    """Two sender processes' worth of apps drain one PostgreSQL outbox: each row once."""
    from bot.bootstrap import build_app
    from bot.channels.telegram_aiogram import AiogramChannel

    overrides = dict(
        telegram_bot_token=tg.token,
        telegram_api_url=tg.base_url,
        send_rate_per_second=500,
        sender_batch_size=20,
    )
    apps = [await build_app(make_settings(pg_url, **overrides), clock=clock) for _ in range(2)]
    channels = []
    try:
        for app in apps:
            channels.append(AiogramChannel(app))
            app.channels.add(channels[-1])
        ids = list(range(200_000, 200_600))
        for user_id in ids:
            tg.user(user_id)
        await enqueue(apps[0], ids)

        async def run(app) -> int:
            total = 0
            while True:
                sent = await drain_once(app, limit=20)
                if sent == 0 and not await count_rows(
                    app, OutboxMessage, OutboxMessage.status == "pending"
                ):
                    return total
                total += sent

        counts = await asyncio.gather(run(apps[0]), run(apps[1]))
        assert sum(counts) == len(ids) and min(counts) > 0, counts
        assert all(tg.send_counts[user_id] == 1 for user_id in ids)
        assert (await rows_by_status(apps[0])) == {"sent": len(ids)}
    finally:
        for channel in channels:
            await channel.bot.session.close()
        for app in apps:
            await app.close()
