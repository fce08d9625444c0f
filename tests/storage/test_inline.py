"""The statements every update runs go straight to SQLite's connection (`storage.inline`):
they write and read what the ORM path writes and reads, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import event, select

from bot.core import Incoming
from storage.inline import connection_of
from storage.models import Identity, InboxEntry, KeyValue, Learner


def _statements(app) -> list[str]:
    seen: list[str] = []
    event.listen(
        app.engine.sync_engine, "before_cursor_execute", lambda c, cur, s, *a: seen.append(s)
    )
    return seen


async def test_inbox_rows_and_kept_replies_read_back_as_the_orm_wrote_them(app, clock):
    async with app.uow() as uow:
        assert await uow.inbox.record("tg:1")
        assert not await uow.inbox.record("tg:1")  # a redelivery, in the same transaction
        await uow.inbox.keep_replies("tg:1", [{"channel": "telegram", "body": {"text": "你好"}}])
        await uow.commit()
    async with app.uow() as uow:
        entry = await uow.session.get(InboxEntry, "tg:1")
        assert entry.received_at.utcoffset() == timedelta(0)
        assert await uow.inbox.unsent_replies("tg:1") == [
            (0, {"channel": "telegram", "body": {"text": "你好"}})
        ]
        kept = await uow.session.scalar(select(KeyValue).where(KeyValue.key.startswith("replies")))
        assert kept.updated_at.utcoffset() == timedelta(0)
        await uow.inbox.reply_done("tg:1", 0)
        await uow.commit()
    async with app.uow() as uow:
        assert await uow.inbox.unsent_replies("tg:1") == []
        assert not await uow.inbox.record("tg:1")


async def test_a_known_learner_is_read_in_one_statement_and_its_changes_are_flushed(
    app, db_url, clock
):
    settings = app.settings
    async with app.uow() as uow:
        first, _ = await uow.learners.resolve_keyed("telegram", "42", "Ann", "en", settings, "s:")
        await uow.commit()
    seen = _statements(app)
    async with app.uow() as uow:
        learner, pending = await uow.learners.resolve_keyed(
            "telegram", "42", "Ann B", "en", settings, "s:"
        )
        assert (learner.id, learner.locale, pending) == (first.id, "en", False)
        assert learner.created_at.utcoffset() == timedelta(0)
        assert learner in uow.session  # attached: what a handler changes is written
        learner.locale = "zh"
        await uow.commit()
    if db_url.startswith("sqlite"):
        reads = [s for s in seen if s.lstrip().upper().startswith("SELECT")]
        assert reads == []  # the read went straight to SQLite
    async with app.uow() as uow:
        stored = await uow.session.get(Learner, first.id)
        assert (stored.display_name, stored.locale) == ("Ann B", "zh")


async def test_a_first_contact_stores_learner_and_identity_with_one_orm_insert(app, db_url):
    settings = app.settings
    seen = _statements(app)
    async with app.uow() as uow:
        learner, pending = await uow.learners.resolve_keyed(
            "telegram", "45", "Di", "zh-hans", settings, "s:"
        )
        assert pending  # a first contact may have a step to resume
        await uow.commit()
    if db_url.startswith("sqlite"):
        assert [s.split()[0] for s in seen] == ["BEGIN", "INSERT"]  # the learner; the rest inline
    async with app.uow() as uow:
        identity = await uow.learners.identity("telegram", "45")
        assert (identity.learner_id, identity.learner.locale) == (learner.id, "zh")
        assert identity.last_seen_at.utcoffset() == timedelta(0)
        assert await uow.learners.count() == 1


async def test_a_first_contact_that_lost_the_race_leaves_no_learner_behind(app, db_url):
    if not db_url.startswith("sqlite"):
        return
    settings = app.settings
    async with app.uow() as uow:
        winner, _ = await uow.learners.resolve_keyed("telegram", "46", "Ed", "en", settings, "s:")
        await uow.commit()
    async with app.uow() as uow:
        connection = await connection_of(uow.session)
        lost = await uow.learners._first_contact_inline(
            connection, "telegram", "46", "Ed", "en", settings
        )
        assert lost is None
        await uow.commit()
    async with app.uow() as uow:
        assert await uow.learners.count() == 1
        assert (await uow.learners.identity("telegram", "46")).learner_id == winner.id


async def test_the_last_sighting_is_moved_on_after_a_minute(app, clock):
    settings = app.settings
    async with app.uow() as uow:
        await uow.learners.resolve_keyed("telegram", "43", "Bo", "en", settings, "s:")
        await uow.session.execute(
            Identity.__table__.update().values(last_seen_at=clock.now() - timedelta(days=1))
        )
        await uow.commit()
    async with app.uow() as uow:
        await uow.learners.resolve_keyed("telegram", "43", "Bo", "en", settings, "s:")
        await uow.commit()
    async with app.uow() as uow:
        seen = await uow.session.scalar(select(Identity.last_seen_at))
    assert seen > clock.now() - timedelta(hours=1)


async def test_a_pending_delete_is_seen_by_the_next_read_in_the_same_transaction(app):
    """What the ORM holds unflushed is flushed first, as its autoflush would."""
    settings = app.settings
    async with app.uow() as uow:
        learner, _ = await uow.learners.resolve_keyed("telegram", "44", "Cy", "en", settings, "s:")
        await uow.commit()
    async with app.uow() as uow:
        identity = await uow.session.scalar(select(Identity).where(Identity.user_ref == "44"))
        await uow.session.delete(identity)  # as unlinking an account does
        again, _ = await uow.learners.resolve_keyed("telegram", "44", "Cy", "en", settings, "s:")
        assert again.id != learner.id  # a first contact again, not the unlinked learner
        await uow.commit()


async def test_a_catalogue_change_changes_the_fingerprint(app):
    async with app.uow() as uow:
        before = await uow.courses.catalog_version()
        course = (await uow.courses.active())[0]
        course.updated_at = before[0] + timedelta(minutes=5)
        await uow.commit()
    async with app.uow() as uow:
        after = await uow.courses.catalog_version()
    assert after[0] == before[0] + timedelta(minutes=5)
    assert after[1:] == before[1:]


async def test_a_handler_changing_the_learner_in_a_group_is_seen_by_the_next_update(app):
    """Two updates of one learner in one transaction: the second sees the first's change."""
    dispatcher = app.dispatcher
    start = Incoming("telegram", "45", "tg:45a", "command", command="start", locale="en")
    lang = Incoming("telegram", "45", "tg:45b", "command", command="lang", args="zh")
    again = Incoming("telegram", "45", "tg:45c", "command", command="catalog")
    await dispatcher.dispatch(start, durable=True)
    async with app.uow() as uow:
        for msg in (lang, again):
            outputs = await dispatcher._run_in(uow, msg, True, alone=False)
        await uow.commit()
    assert "课程分类" in outputs[0].text  # /catalog answered in the language just chosen


async def test_the_connection_is_asked_once_per_transaction_and_anew_after_a_commit(app, db_url):
    """One session, two transactions: the second does not reuse the first's connection."""
    async with app.uow() as uow:
        first = await connection_of(uow.session)
        assert await connection_of(uow.session) is first
        assert await uow.inbox.record("tg:c1")
        await uow.commit()
        assert await uow.inbox.record("tg:c2")  # a new transaction, begun on demand
        await uow.commit()
    if db_url.startswith("sqlite"):
        assert first is not None
    else:
        assert first is None  # PostgreSQL takes the ORM path
    async with app.uow() as uow:
        kept = await uow.session.scalars(
            select(InboxEntry.update_key).where(InboxEntry.update_key.startswith("tg:c"))
        )
        assert sorted(kept) == ["tg:c1", "tg:c2"]


async def test_queued_updates_are_kept_once_in_order_and_forgotten(app):
    """The durable queue of fetched updates: a batch fetched twice is kept once."""
    batch = [(7, {"update_id": 7, "text": "b"}), (3, {"update_id": 3, "text": "a"})]
    for _ in range(2):
        async with app.uow() as uow:
            await uow.inbox.queue_updates("tq:", batch)
            await uow.commit()
    async with app.uow() as uow:
        assert await uow.inbox.queued_updates("tq:") == sorted(batch)
        await uow.inbox.unqueue_updates("tq:", [3, 99])
        await uow.commit()
    async with app.uow() as uow:
        assert await uow.inbox.queued_updates("tq:") == [batch[0]]
