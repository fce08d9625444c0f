"""Storage on a real SQLite file and a real PostgreSQL server: schema, dedupe, UTC, races."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime

import pytest
from sqlalchemy import func, select, text

from bot.core import Incoming, PaymentInfo, Reply
from storage.models import Enrolment, Learner, Payment


def payment_msg(user_ref: str, key: str, order_id: int, charge: str, amount: int) -> Incoming:
    """A successful payment update as the adapters produce it."""
    info = PaymentInfo("XTR", amount, f"order:{order_id}", charge_id=charge, provider="test")
    return Incoming("telegram", user_ref, key, "payment", payment=info, locale="en")


async def open_order(app, user_ref: str, course_id: int) -> int:
    """Press buy for a course; returns the order id from the invoice payload."""
    msg = Incoming(
        "telegram",
        user_ref,
        f"buy-{user_ref}-{course_id}",
        "button",
        payload=f"buy:{course_id}",
        locale="en",
    )
    [reply] = await app.dispatcher.dispatch(msg)
    return int(reply.invoice.payload.split(":")[1])


async def test_schema_is_at_head(app):
    """Migrations ran: the Alembic version table names the newest revision."""
    from alembic.script import ScriptDirectory

    from storage.migrate import alembic_config

    head = ScriptDirectory.from_config(alembic_config(str(app.engine.url))).get_current_head()
    async with app.uow() as uow:
        assert await uow.session.scalar(text("SELECT version_num FROM alembic_version")) == head


async def test_times_come_back_utc_aware(app, clock):
    """A stored datetime is timezone-aware UTC on both databases."""
    async with app.uow() as uow:
        learner = Learner(display_name="x", created_at=clock.now())
        uow.session.add(learner)
        await uow.commit()
        learner_id = learner.id
    async with app.uow() as uow:
        stored = await uow.session.scalar(
            select(Learner.created_at).where(Learner.id == learner_id)
        )
    assert stored.utcoffset().total_seconds() == 0 and stored == clock.now()


async def test_naive_datetimes_are_refused(app):
    """Writing a naive datetime is a bug, caught before it reaches the database."""
    async with app.uow() as uow:
        uow.session.add(Learner(display_name="x", created_at=datetime(2026, 1, 1)))
        with pytest.raises(Exception, match="naive"):
            await uow.session.flush()


async def test_inbox_drops_redelivered_keys(app):
    """The same update key is recorded once."""
    async with app.uow() as uow:
        assert await uow.inbox.record("tg:1") is True
        assert await uow.inbox.record("tg:1") is False
        await uow.commit()
    async with app.uow() as uow:
        assert await uow.inbox.record("tg:1") is False


async def test_same_payment_dispatched_concurrently_enrols_once(app):
    """Five concurrent deliveries of one charge id: one payment row, one enrolment."""
    order_id = await open_order(app, "501", 1)
    msgs = [payment_msg("501", f"tg:pay-{n}", order_id, "charge-1", 150) for n in range(5)]
    results = await asyncio.gather(*(app.dispatcher.dispatch(m) for m in msgs))
    texts = [r.text for replies in results for r in replies if isinstance(r, Reply)]
    assert sum("Payment received" in t for t in texts) == 1
    assert sum("already recorded" in t for t in texts) == 4
    async with app.uow() as uow:
        assert await uow.session.scalar(select(func.count()).select_from(Payment)) == 1
        assert await uow.session.scalar(select(func.count()).select_from(Enrolment)) == 1


async def test_many_concurrent_writers_never_see_locked(app):
    """Forty learners writing at once all succeed (no 'database is locked' on SQLite)."""
    msgs = [
        Incoming("telegram", str(600 + n), f"tg:w{n}", "command", command="start", locale="zh")
        for n in range(40)
    ]
    results = await asyncio.gather(*(app.dispatcher.dispatch(m) for m in msgs))
    assert all(r and "👋" in r[0].text for r in results)
    async with app.uow() as uow:
        assert await uow.session.scalar(select(func.count()).select_from(Learner)) == 40


async def test_sqlite_runs_in_wal_mode(sqlite_url, clock):
    """The embedded database uses WAL, and one call waits at most a short slice for a lock."""
    from bot.bootstrap import build_app
    from storage.db import SQLITE_BUSY_SLICE_MS
    from tests.conftest import make_settings

    app = await build_app(make_settings(sqlite_url), clock=clock)
    async with app.engine.connect() as conn:
        assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
        busy = (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar()
        assert busy == SQLITE_BUSY_SLICE_MS
    await app.close()


async def test_a_writer_waits_for_another_process_lock_with_the_loop_running(sqlite_url, clock):
    """Write transactions run on the loop's thread (`storage.db.InlineConnection`); while
    another process holds SQLite's write lock, BEGIN IMMEDIATE is retried in short slices, so
    the event loop keeps serving (here: a ticker) and the write goes through once it is free."""
    import sqlite3
    import time

    from sqlalchemy import make_url

    from bot.bootstrap import build_app
    from tests.conftest import make_settings

    app = await build_app(make_settings(sqlite_url), clock=clock)
    other = sqlite3.connect(make_url(sqlite_url).database, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    ticks: list[float] = []

    async def ticker():
        while True:
            ticks.append(time.perf_counter())
            await asyncio.sleep(0.01)

    async def release_later():
        await asyncio.sleep(0.5)
        other.execute("COMMIT")

    ticking = asyncio.create_task(ticker())
    releasing = asyncio.create_task(release_later())
    started = time.perf_counter()
    async with app.uow() as uow:
        await uow.kv.put("waited", {"ok": True})
        await uow.commit()
    waited = time.perf_counter() - started
    ticking.cancel()
    await releasing
    other.close()
    async with app.uow() as uow:
        assert await uow.kv.get("waited") == {"ok": True}
    await app.close()
    assert waited >= 0.45  # it did wait for the other lock
    assert max(b - a for a, b in zip(ticks, ticks[1:], strict=False)) < 0.15


async def test_key_value_put_overwrites_and_a_row_read_before_is_read_again(app):
    """`kv.put` is one upsert: a new key is inserted, a known one overwritten, and a value read
    earlier in the same unit of work is not served stale from the session afterwards."""
    async with app.uow() as uow:
        await uow.kv.put("k", {"n": 1})
        await uow.kv.put("k", {"n": 2})
        await uow.commit()
    async with app.uow() as uow:
        assert await uow.kv.get("k") == {"n": 2}
        await uow.kv.put("k", {"n": 3})
        assert await uow.kv.get("k") == {"n": 3}
        await uow.rollback()
    async with app.uow() as uow:
        assert await uow.kv.get("k") == {"n": 2}
        rows = (await uow.session.execute(text("SELECT count(*) FROM kv WHERE key = 'k'"))).all()
        assert rows == [(1,)]


async def test_kept_replies_are_ticked_off_one_row_each_and_old_rows_still_read(app):
    """Each kept reply is its own row, gone once done; a row in the earlier one-row format
    (left by a crash before an upgrade) is still returned and settled."""
    replies = [{"channel": "telegram", "user_ref": "1", "body": {"text": t}} for t in "abc"]
    async with app.uow() as uow:
        await uow.inbox.keep_replies("tg:1", replies)
        await uow.kv.put("replies:tg:2", {"replies": replies[:2], "done": [0]})
        await uow.commit()
    async with app.uow() as uow:
        await uow.inbox.reply_done("tg:1", 1)
        await uow.inbox.reply_done("tg:2", 1)
        await uow.commit()
    async with app.uow() as uow:
        assert [n for n, _ in await uow.inbox.unsent_replies("tg:1")] == [0, 2]
        assert await uow.inbox.unsent_replies("tg:2") == []
        await uow.inbox.reply_done("tg:1", 0)
        await uow.inbox.reply_done("tg:1", 2)
        await uow.commit()
    async with app.uow() as uow:
        assert await uow.inbox.unsent_replies("tg:1") == []
        keys = (await uow.session.execute(select(text("key")).select_from(text("kv")))).all()
        assert not [k for (k,) in keys if k.startswith("replies:")]


async def test_pre_checkout_is_answered_while_a_writer_holds_the_database(app):
    """A pre-checkout query only reads: it is answered while another unit of work holds the
    write lock (SQLite's single writer), not after it (Telegram's deadline is 10 s)."""
    order_id = await open_order(app, "881", 1)
    async with app.uow() as uow:
        order = await uow.orders.get(order_id)
    info = PaymentInfo(order.currency, order.amount, f"order:{order_id}", provider="test")
    query = Incoming("telegram", "881", "pcq-881", "pre_checkout", payment=info, locale="en")
    async with app.uow() as writer:
        await writer.kv.put("busy", {"writer": "holds the lock"})
        await writer.session.flush()
        [answer] = await asyncio.wait_for(app.dispatcher.dispatch(query), 5)
        assert answer.ok, answer
        await writer.commit()
    stranger = replace(query, user_ref="999", update_key="pcq-999")
    [refused] = await app.dispatcher.dispatch(stranger)
    assert not refused.ok
    async with app.uow() as uow:
        assert await uow.learners.identity("telegram", "999") is None
