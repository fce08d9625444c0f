"""Group commit: learner updates dispatched at the same time share one SQLite transaction; a
group that fails runs again one by one, each update answered once."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import event

from bot.bootstrap import build_app
from bot.core import Incoming, Reply, Router, settle_reply
from bot.group_commit import GroupCommit
from tests.conftest import ADMIN_TG, demo_app, make_settings


async def test_items_submitted_together_run_as_one_group_in_order():
    seen: list[list[int]] = []

    async def run_group(items):
        seen.append(list(items))
        await asyncio.sleep(0)
        return [item * 10 for item in items]

    async def run_one(item):
        raise AssertionError("a group that succeeds is not run again")

    group = GroupCommit(run_group, run_one)
    results = await asyncio.gather(*(group.submit(i) for i in range(5)))
    assert results == [0, 10, 20, 30, 40]
    assert seen == [[0, 1, 2, 3, 4]]
    assert (group.groups, group.grouped) == (1, 5)


async def test_a_failed_group_runs_again_one_by_one_and_only_the_culprit_fails():
    alone: list[int] = []

    async def run_group(items):
        raise RuntimeError("one of them failed")

    async def run_one(item):
        alone.append(item)
        if item == 2:
            raise ValueError("item 2")
        return item

    group = GroupCommit(run_group, run_one)
    results = await asyncio.gather(*(group.submit(i) for i in range(4)), return_exceptions=True)
    assert results[:2] == [0, 1] and results[3] == 3
    assert isinstance(results[2], ValueError)
    assert alone == [0, 1, 2, 3]  # in submission order
    assert group.groups == 0


async def test_what_arrives_while_a_group_runs_forms_the_next_group():
    release = asyncio.Event()
    seen: list[list[int]] = []

    async def run_group(items):
        seen.append(list(items))
        await release.wait()
        return list(items)

    group = GroupCommit(run_group, lambda item: run_group([item]))
    first = [asyncio.create_task(group.submit(i)) for i in (1, 2)]
    await asyncio.sleep(0.01)
    later = [asyncio.create_task(group.submit(i)) for i in (3, 4, 5)]
    await asyncio.sleep(0.01)
    release.set()
    assert await asyncio.gather(*first, *later) == [1, 2, 3, 4, 5]
    assert seen == [[1, 2], [3, 4, 5]]


async def test_a_group_whose_submitters_all_gave_up_is_cancelled_and_the_next_one_runs():
    """A channel that aborts (as in a crash) cancels its waiting dispatches: the group they
    were in is cancelled too, so its transaction rolls back instead of committing unseen."""
    stalled, cancelled = asyncio.Event(), asyncio.Event()

    async def run_group(items):
        if items[0] == "stall":
            stalled.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise
        return list(items)

    async def run_one(item):
        return (await run_group([item]))[0]

    group = GroupCommit(run_group, run_one)
    waiting = [asyncio.create_task(group.submit(i)) for i in ("stall", "other")]
    await asyncio.wait_for(stalled.wait(), 1)
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
    await asyncio.wait_for(cancelled.wait(), 1)
    assert await asyncio.wait_for(group.submit("next"), 1) == "next"


def _count_begins(app) -> list[str]:
    begins: list[str] = []

    def on_execute(conn, cursor, statement, *args):
        if statement.startswith("BEGIN"):
            begins.append(statement)

    event.listen(app.engine.sync_engine, "before_cursor_execute", on_execute)
    return begins


def _catalog(i: int, user: int) -> Incoming:
    return Incoming("telegram", str(user), f"tg:{i}", "command", command="catalog", locale="zh")


@pytest.fixture
async def sqlite_app(sqlite_url, clock):
    app = await demo_app(sqlite_url, clock)
    yield app
    await app.close()


async def test_concurrent_learner_updates_share_one_transaction_and_each_is_answered(sqlite_app):
    begins = _count_begins(sqlite_app)
    msgs = [_catalog(i, 500 + i) for i in range(8)]
    results = await asyncio.gather(
        *(sqlite_app.dispatcher.dispatch(m, durable=True) for m in msgs)
    )
    assert all(len(r) == 1 and "课程分类" in r[0].text for r in results)
    assert [r[0].outbox_key for r in results] == [f"tg:{i}#0" for i in range(8)]
    assert begins.count("BEGIN IMMEDIATE") == 1
    async with sqlite_app.uow() as uow:  # every update recorded, every reply kept until sent
        for i in range(8):
            assert not await uow.inbox.record(f"tg:{i}")
            assert len(await uow.inbox.unsent_replies(f"tg:{i}")) == 1

    begins.clear()
    await asyncio.gather(*(settle_reply(sqlite_app, r[0], "sent") for r in results))
    assert begins.count("BEGIN IMMEDIATE") == 1  # the settles share one transaction too
    async with sqlite_app.uow() as uow:
        assert all([await uow.inbox.unsent_replies(f"tg:{i}") == [] for i in range(8)])

    # redelivered together: nothing is handled twice, nothing is sent again
    again = await asyncio.gather(*(sqlite_app.dispatcher.dispatch(m, durable=True) for m in msgs))
    assert again == [[]] * 8


async def test_settles_and_updates_in_flight_together_share_one_transaction(sqlite_app):
    dispatcher = sqlite_app.dispatcher
    first = await asyncio.gather(
        *(dispatcher.dispatch(_catalog(i, 700 + i), durable=True) for i in range(4))
    )
    begins = _count_begins(sqlite_app)
    settles = [settle_reply(sqlite_app, r[0], "sent") for r in first]
    updates = [dispatcher.dispatch(_catalog(10 + i, 700 + i), durable=True) for i in range(4)]
    second = await asyncio.gather(*settles, *updates)
    assert begins.count("BEGIN IMMEDIATE") == 1
    assert all(len(r) == 1 and "课程分类" in r[0].text for r in second[4:])
    async with sqlite_app.uow() as uow:
        for i in range(4):
            assert await uow.inbox.unsent_replies(f"tg:{i}") == []  # settled
            assert len(await uow.inbox.unsent_replies(f"tg:{10 + i}")) == 1  # kept


async def test_a_failing_handler_in_a_group_costs_only_its_own_update(sqlite_app, caplog):
    router = Router()

    @router.command("boom")
    async def boom() -> Reply:
        raise RuntimeError("handler bug")

    dispatcher = sqlite_app.dispatcher
    dispatcher.router.commands.update(router.commands)
    msgs = [_catalog(i, 600 + i) for i in range(3)]
    msgs.insert(1, Incoming("telegram", "699", "tg:boom", "command", command="boom"))
    results = await asyncio.gather(*(dispatcher.dispatch(m, durable=True) for m in msgs))

    assert [len(r) for r in results] == [1, 1, 1, 1]
    assert "课程分类" in results[0][0].text and "课程分类" in results[2][0].text
    assert "课程分类" not in results[1][0].text  # the apology
    assert (
        sum("handler bug" in r.getMessage() or r.exc_info is not None for r in caplog.records) == 1
    )
    assert dispatcher.writes.groups == 0  # the group was rolled back and ran one by one
    async with sqlite_app.uow() as uow:
        for m in msgs:
            assert not await uow.inbox.record(m.update_key)  # each recorded exactly once
            assert len(await uow.inbox.unsent_replies(m.update_key)) == 1


async def test_payments_and_admin_updates_are_never_grouped(sqlite_app):
    dispatcher = sqlite_app.dispatcher
    admin = Incoming("telegram", str(ADMIN_TG), "tg:a", "command", command="catalog")
    assert not dispatcher._groupable(admin)
    payment = Incoming("telegram", "5", "tg:p", "payment")
    assert not dispatcher._groupable(payment)
    assert dispatcher._groupable(_catalog(1, 5))


async def test_postgres_runs_updates_alone(db_url, clock):
    app = await build_app(make_settings(db_url), clock=clock)
    try:
        assert (app.dispatcher.writes is None) == db_url.startswith("postgresql")
    finally:
        await app.close()
