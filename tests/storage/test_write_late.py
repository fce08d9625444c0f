"""SQLite write-late transactions: an update reads first and takes the write lock only for its
writes; one that read a snapshot another writer has since committed over is handled again,
and admin work (which may call a platform before writing) takes the lock before it runs."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from bot.bootstrap import build_app
from bot.core import Dispatcher, Incoming, Reply, Router
from storage.models import InboxEntry, KeyValue
from storage.repos import LearnerRepo
from tests.conftest import make_settings


def command(user_ref: str, key: str, word: str) -> Incoming:
    return Incoming("console", user_ref, key, "command", command=word)


class Paused:
    """Holds the first read of one user (learner lookup) until released, once."""

    def __init__(self, monkeypatch, user_ref: str) -> None:
        self.user_ref, self.reached, self.release = user_ref, asyncio.Event(), asyncio.Event()
        self.lookups = 0
        real = LearnerRepo.resolve_keyed
        paused = self

        async def resolve_keyed(repo, channel, user_ref, *args, **kwargs):
            found = await real(repo, channel, user_ref, *args, **kwargs)
            if user_ref == paused.user_ref:
                paused.lookups += 1
                if paused.lookups == 1:
                    paused.reached.set()
                    await paused.release.wait()
            return found

        monkeypatch.setattr(LearnerRepo, "resolve_keyed", resolve_keyed)


async def dispatcher_with(app, router: Router, *users: str) -> Dispatcher:
    """A dispatcher of `router`, its users known already (a first contact writes at once)."""
    async with app.uow() as uow:
        for user_ref in users:
            await uow.learners.resolve("console", user_ref, "", "zh", app.settings)
        await uow.commit()
    return Dispatcher(router, app.uow, app.dispatcher.deps)


async def overtaken(app, dispatcher: Dispatcher, paused: Paused, slow: Incoming) -> list:
    """Dispatch `slow`; while it reads, another user's update commits a write."""
    first = asyncio.create_task(dispatcher.dispatch(slow))
    await paused.reached.wait()
    assert await dispatcher.dispatch(command("other", "u-other", "note")) != []
    paused.release.set()
    return await first


async def test_an_update_overtaken_by_a_commit_is_handled_again_and_answered_once(
    sqlite_url, clock, monkeypatch
):
    app = await build_app(make_settings(sqlite_url), clock=clock)
    runs = []
    router = Router()

    @router.command("note")
    async def note(msg: Incoming, uow) -> Reply:
        runs.append(msg.user_ref)
        await uow.kv.put(f"note:{msg.user_ref}", {"runs": runs.count(msg.user_ref)})
        return Reply(f"noted {msg.user_ref}")

    try:
        dispatcher = await dispatcher_with(app, router, "slow", "other")
        paused = Paused(monkeypatch, "slow")
        outputs = await overtaken(app, dispatcher, paused, command("slow", "u-slow", "note"))
        assert [o.text for o in outputs] == ["noted slow"]
        assert paused.lookups == 2, "the overtaken update was not handled again"
        assert runs.count("slow") == 2  # its first run wrote nothing: the second one counts
        async with app.uow() as uow:
            assert await uow.kv.get("note:slow") == {"runs": 2}
            keys = await uow.session.scalars(select(InboxEntry.update_key))
            assert sorted(keys) == ["u-other", "u-slow"]
        assert await dispatcher.dispatch(command("slow", "u-slow", "note")) == []
    finally:
        await app.close()


async def test_admin_work_takes_the_write_lock_before_it_runs(sqlite_url, clock, monkeypatch):
    app = await build_app(make_settings(sqlite_url, admins="console:boss"), clock=clock)
    platform_calls = []
    router = Router()

    @router.command("note")
    async def note(msg: Incoming, uow) -> Reply:
        await uow.kv.put(f"note:{msg.user_ref}", {"by": msg.user_ref})
        return Reply("noted")

    @router.command("payback", admin=True)
    async def payback(msg: Incoming, uow) -> Reply:
        platform_calls.append(msg.update_key)  # a refund API call, before any write
        await uow.kv.put("paid-back", {"by": msg.user_ref})
        return Reply("paid back")

    try:
        dispatcher = await dispatcher_with(app, router, "boss", "other")
        paused = Paused(monkeypatch, "boss")
        outputs = await overtaken(app, dispatcher, paused, command("boss", "u-boss", "payback"))
        assert [o.text for o in outputs] == ["paid back"]
        assert paused.lookups == 2, "the admin update was not overtaken (the test proves nothing)"
        assert platform_calls == ["u-boss"], "the platform was called twice"
        async with app.uow() as uow:
            assert await uow.kv.get("paid-back") == {"by": "boss"}
            count = select(func.count()).select_from(KeyValue).where(KeyValue.key == "paid-back")
            assert await uow.session.scalar(count) == 1
    finally:
        await app.close()
