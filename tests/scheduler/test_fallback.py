"""A linked learner blocked on one channel gets the message on the other; the one used last
is tried first."""

from __future__ import annotations

from datetime import timedelta

from bot.core import Reply, Unreachable
from scheduler.sender import drain_once
from services.outbox import Outgoing, enqueue
from storage.models import Identity, utcnow
from tests.fakes.collecting import CollectingChannel


class BlockedChannel(CollectingChannel):
    """A channel whose every user has blocked the bot."""

    async def send(self, user_ref: str, reply: Reply) -> None:
        raise Unreachable("Forbidden: bot was blocked by the user")


async def linked_learner(app, seen_telegram_later: bool) -> int:
    """One learner with a telegram and a wechat identity."""
    async with app.uow() as uow:
        learner = await uow.learners.resolve("telegram", "42", "Li", "zh", app.settings)
        now = utcnow()
        uow.session.add(
            Identity(learner_id=learner.id, channel="wechat", user_ref="oLi", last_seen_at=now)
        )
        identity = await uow.learners.identity("telegram", "42")
        shift = timedelta(minutes=5) if seen_telegram_later else -timedelta(minutes=5)
        identity.last_seen_at = now + shift
        await uow.commit()
        return learner.id


async def test_a_blocked_channel_falls_back_to_the_linked_one(app):
    telegram, wechat = BlockedChannel("telegram"), CollectingChannel("wechat", "CNY")
    app.channels.add(telegram)
    app.channels.add(wechat)
    learner_id = await linked_learner(app, seen_telegram_later=True)
    async with app.uow() as uow:
        picked = (await uow.audience.of_learners([learner_id]))[learner_id]
        assert picked.channel == "telegram", "the channel used last comes first"
        notice = Outgoing(
            "telegram", "42", Reply("session starts"), "live-start", learner_id=learner_id
        )
        await enqueue(uow, notice, app.clock.now())
        await uow.commit()
    await drain_once(app)
    await drain_once(app)
    assert [r.text for r in wechat.pop_all("oLi")] == ["session starts"]
    await drain_once(app)
    assert wechat.pop_all("oLi") == [], "sent once"


async def test_the_channel_used_last_is_picked(app):
    learner_id = await linked_learner(app, seen_telegram_later=False)
    async with app.uow() as uow:
        picked = (await uow.audience.of_learners([learner_id]))[learner_id]
    assert (picked.channel, picked.user_ref) == ("wechat", "oLi")
