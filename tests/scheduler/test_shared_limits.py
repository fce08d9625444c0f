"""Two senders on one PostgreSQL share the ceiling per channel and the 1 msg/s per chat."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from bot.bootstrap import build_app
from bot.core import Reply
from scheduler.sender import drain_once, sender_state
from services import outbox
from services.outbox import Outgoing
from storage.models import OutboxMessage
from tests.conftest import PG_URL, REQUIRE_PG, make_settings, reset_postgres
from tests.scheduler.support import count_rows
from tests.scheduler.test_sender import enqueue

CEILING = 8
CHATS = 12
PER_CHAT = 3


@pytest.fixture
async def pg_url() -> str:
    """A fresh real PostgreSQL database (skipped without one)."""
    if not PG_URL:
        if REQUIRE_PG:
            pytest.fail("COURSEBOT_REQUIRE_PG=1 but COURSEBOT_TEST_PG_URL is not set")
        pytest.skip("no PostgreSQL server (set COURSEBOT_TEST_PG_URL)")
    return await reset_postgres(PG_URL)


async def drain_all(app) -> int:
    """Drain until no row is pending; the number this app sent."""
    total = 0
    while True:
        sent = await drain_once(app, limit=20)
        total += sent
        if sent == 0 and not await count_rows(
            app, OutboxMessage, OutboxMessage.status == "pending"
        ):
            return total


async def test_two_senders_never_exceed_the_ceiling_nor_one_message_per_chat_per_second(
    pg_url, clock, tg
):
    """Each sender alone may send CEILING per second; together they still send at most that
    many in any second, and never two messages to one chat within a second."""
    from bot.channels.telegram_aiogram import AiogramChannel

    tg.max_per_second = CEILING
    tg.max_per_chat_per_second = 1
    overrides = dict(
        telegram_bot_token=tg.token,
        telegram_api_url=tg.base_url,
        send_rate_per_second=CEILING,
        sender_batch_size=20,
    )
    apps = [await build_app(make_settings(pg_url, **overrides), clock=clock) for _ in range(2)]
    channels = []
    try:
        for app in apps:
            channels.append(AiogramChannel(app))
            app.channels.add(channels[-1])
            assert sender_state(app).shared is not None, "PostgreSQL senders share limits"
        ids = list(range(410_000, 410_000 + CHATS))
        for user_id in ids:
            tg.user(user_id)
        await enqueue(apps[0], [u for _ in range(PER_CHAT) for u in ids])
        counts = await asyncio.gather(drain_all(apps[0]), drain_all(apps[1]))
        assert sum(counts) == CHATS * PER_CHAT and min(counts) > 0, counts
        assert tg.rate_violations == 0 and tg.peak_rate() <= CEILING, tg.peak_rate()
        assert not tg.chat_rate_violations
        assert all(tg.peak_rate(chat_id=u) == 1 for u in ids)
        assert all(tg.send_counts[u] == PER_CHAT for u in ids)
    finally:
        for channel in channels:
            await channel.bot.session.close()
        for app in apps:
            await app.close()


async def test_sqlite_keeps_the_in_process_limiter(sqlite_url, clock):
    """One process per SQLite file: nothing is shared through the database."""
    app = await build_app(make_settings(sqlite_url), clock=clock)
    try:
        assert sender_state(app).shared is None
    finally:
        await app.close()


HELD_SLOTS = "SELECT count(*) FROM send_slots WHERE free_at > extract(epoch FROM now()) + 5"


async def enqueue_paid(app, user_refs) -> None:
    """Announcement rows (a paid broadcast when turned on), one per chat, due now."""
    now = app.clock.now()
    async with app.uow() as uow:
        b = await uow.broadcasts.add(text="paid", status="sending")
        rows = [
            Outgoing("telegram", str(ref), Reply(f"paid {ref}"), "announcement", broadcast_id=b.id)
            for ref in user_refs
        ]
        await outbox.enqueue(uow, rows, now)
        await uow.commit()


async def test_two_paid_broadcast_senders_share_the_paid_ceiling(pg_url, clock, tg):
    """Paid broadcasts take shared slots in blocks and chat turns per round: two senders
    together still send at most TELEGRAM_PAID_BROADCAST_RATE in any second, each chat once."""
    from bot.channels.telegram_aiogram import AiogramChannel

    chats = 40
    tg.max_per_second = CEILING
    tg.max_per_chat_per_second = 1
    overrides = dict(
        telegram_bot_token=tg.token,
        telegram_api_url=tg.base_url,
        telegram_paid_broadcast=True,
        telegram_paid_broadcast_rate=CEILING,
        sender_batch_size=20,
    )
    apps = [await build_app(make_settings(pg_url, **overrides), clock=clock) for _ in range(2)]
    channels = []
    try:
        for app in apps:
            channels.append(AiogramChannel(app))
            app.channels.add(channels[-1])
        ids = list(range(420_000, 420_000 + chats))
        for user_id in ids:
            tg.user(user_id)
        await enqueue_paid(apps[0], ids)
        counts = await asyncio.gather(drain_all(apps[0]), drain_all(apps[1]))
        assert sum(counts) == chats and min(counts) > 0, counts
        assert tg.rate_violations == 0 and tg.peak_rate() <= CEILING, tg.peak_rate()
        assert all(tg.send_counts[u] == 1 for u in ids)
        assert all(p.get("allow_paid_broadcast") for p in tg.calls("sendMessage"))
        async with apps[0].uow() as uow:
            held = await uow.session.scalar(text(HELD_SLOTS))
        assert held == 0, "every slot taken in a block came back"
    finally:
        for channel in channels:
            await channel.bot.session.close()
        for app in apps:
            await app.close()
