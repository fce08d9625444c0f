"""Two senders on one PostgreSQL share the ceiling per channel and the 1 msg/s per chat."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from bot.bootstrap import build_app
from bot.core import Reply
from scheduler.sender import sender_state
from services import outbox
from services.outbox import Outgoing
from tests.conftest import make_settings
from tests.scheduler.support import drain_all, sender_apps
from tests.scheduler.test_sender import enqueue

CEILING = 8
CHATS = 12
PER_CHAT = 3


async def test_two_senders_never_exceed_the_ceiling_nor_one_message_per_chat_per_second(
    pg_url, clock, tg
):
    """Each sender alone may send CEILING per second; together they still send at most that
    many in any second, and never two messages to one chat within a second."""
    tg.max_per_second = CEILING
    tg.max_per_chat_per_second = 1
    async with sender_apps(
        pg_url, clock, tg, send_rate_per_second=CEILING, sender_batch_size=20
    ) as apps:
        for app in apps:
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
    chats = 40
    tg.max_per_second = CEILING
    tg.max_per_chat_per_second = 1
    paid = dict(telegram_paid_broadcast=True, telegram_paid_broadcast_rate=CEILING)
    async with sender_apps(pg_url, clock, tg, sender_batch_size=20, **paid) as apps:
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
