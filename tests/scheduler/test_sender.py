"""The outbox sender: rate ceilings, 429/403 handling, retries, claims by two senders."""

from __future__ import annotations

import asyncio
import time

from sqlalchemy import select

from bot.core import Reply
from scheduler.sender import (
    CATCH_UP_SECONDS,
    RateLimiter,
    Round,
    Sender,
    drain_once,
    drain_round,
)
from services import outbox
from services.outbox import Outgoing
from storage.models import Identity, OutboxMessage
from tests.conftest import ADMIN_TG
from tests.scheduler.support import (
    FakeTime,
    add_learners,
    count_rows,
    drain_all,
    has,
    sender_apps,
    start_telegram_app,
)

CEILING = 300


async def enqueue(app, user_refs, text="hi", channel="telegram") -> None:
    """Outbox rows, one per user, due now."""
    now = app.clock.now()
    async with app.uow() as uow:
        await outbox.enqueue(
            uow,
            [
                Outgoing(
                    channel,
                    str(ref),
                    Reply(f"{text} {ref}"),
                    "test",
                    dedupe_key=f"test:{text}:{ref}:{n}",
                )
                for n, ref in enumerate(user_refs)
            ],
            now,
        )
        await uow.commit()


async def rows_by_status(app) -> dict[str, int]:
    """Outbox rows by status."""
    async with app.uow() as uow:
        return await uow.claims.status_counts()


async def sends(limiter: RateLimiter, fake: FakeTime, n: int) -> list[float]:
    """Fake-time starts of `n` sends through a limiter, each answered at once."""
    starts = []
    for _ in range(n):
        async with limiter.slot():
            starts.append(fake.t)
    return starts


async def test_rate_limiter_never_exceeds_its_rate_in_any_second():
    """Fake time: 200 sends at 25/s, never more than 25 within one second, at the full rate."""
    fake = FakeTime()
    limiter = RateLimiter(25, fake.monotonic, fake.sleep)
    starts = await sends(limiter, fake, 200)
    worst = max(sum(1 for s in starts if t <= s < t + 1.0) for t in starts)
    assert worst <= 25
    assert 199 / (starts[-1] - starts[0]) > 0.99 * 25
    limiter.pause(5)
    before = fake.t
    async with limiter.slot():
        assert fake.t - before >= 5


async def test_rate_window_counts_from_the_answer_and_waits_for_answers():
    """Slow answers keep their slots: the next send starts a second after the first answer."""
    fake = FakeTime()
    limiter = RateLimiter(3, fake.monotonic, fake.sleep)
    release = asyncio.Event()
    started: list[float] = []

    async def send(slow: bool) -> None:
        async with limiter.slot():
            started.append(fake.t)
            if slow:
                await release.wait()

    slow = [asyncio.create_task(send(True)) for _ in range(3)]
    fourth = asyncio.create_task(send(False))
    for _ in range(20):
        await asyncio.sleep(0)
    assert len(started) == 3 and not fourth.done()  # three sends unanswered: no slot
    fake.t += 2.0  # the answers come two seconds after the starts
    release.set()
    await asyncio.gather(*slow, fourth)
    assert started[3] >= started[0] + 2.0 + 1.0


async def test_catch_up_after_idle_is_short_and_a_pause_gives_none():
    """After an idle spell only a short burst goes out, then even pacing; after a pause, none."""
    fake = FakeTime()
    limiter = RateLimiter(20, fake.monotonic, fake.sleep)
    times = await sends(limiter, fake, 30)
    burst = sum(1 for t in times if t == times[0])
    assert 1 < burst <= 1 + CATCH_UP_SECONDS * 20
    paced = times[burst - 1 : 20]
    assert all(b - a >= 0.05 - 1e-9 for a, b in zip(paced, paced[1:], strict=False))
    limiter.pause(1.0)
    until = fake.t + 1.0
    times = await sends(limiter, fake, 3)
    assert times[0] >= until and times[1] - times[0] >= 0.05 - 1e-9


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


async def test_rows_of_a_blocked_chat_cost_one_call_and_the_rest_settle_at_the_claim(live_app, tg):
    """403 on a chat's first row flags it; its other rows become 'unreachable' unsent."""
    tg.user(7101)
    tg.user(7102)
    tg.block(7101)
    await add_learners(live_app, [7101, 7102])
    await enqueue(live_app, [7101, 7102, 7101, 7101])
    fake = FakeTime()
    first = await drain_round(live_app, monotonic=fake.monotonic, sleep=fake.sleep)
    assert (first.claimed, first.sent) == (4, 1)
    second = await drain_round(live_app, monotonic=fake.monotonic, sleep=fake.sleep)
    assert (second.claimed, second.sent) == (2, 0)
    assert await drain_round(live_app) == Round(0, 0)
    assert len([c for c in tg.calls("sendMessage") if str(c["chat_id"]) == "7101"]) == 1
    assert (await rows_by_status(live_app)) == {"sent": 1, "unreachable": 3}
    async with live_app.uow() as uow:
        rows = (await uow.session.execute(select(OutboxMessage))).scalars().all()
    assert (
        sorted(r.last_error or "" for r in rows if r.user_ref == "7101")[1:]
        == ["unreachable before sending"] * 2
    )


async def test_two_senders_on_postgres_never_send_a_row_twice(pg_url, clock, tg):
    """Two sender processes' worth of apps drain one PostgreSQL outbox: each row once."""
    async with sender_apps(
        pg_url, clock, tg, send_rate_per_second=500, sender_batch_size=20
    ) as apps:
        ids = list(range(200_000, 200_600))
        for user_id in ids:
            tg.user(user_id)
        await enqueue(apps[0], ids)
        counts = await asyncio.gather(drain_all(apps[0]), drain_all(apps[1]))
        assert sum(counts) == len(ids) and min(counts) > 0, counts
        assert all(tg.send_counts[user_id] == 1 for user_id in ids)
        assert (await rows_by_status(apps[0])) == {"sent": len(ids)}
