"""Helpers for the feedback and questions tests: a chat through the dispatcher, the outbox."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from bot.core import Reply
from scheduler.sender import drain_once
from storage.models import OutboxMessage
from tests.fakes.collecting import CollectingChannel
from tests.fakes.telegram_api import has


def collecting_channel(app, name: str) -> CollectingChannel:
    """The app's collecting channel called `name` (registered on first use)."""
    if name not in app.channels:
        app.channels.add(CollectingChannel(name))
    return app.channels.get(name)


@dataclass
class Chat:
    """One user talking to the app's dispatcher (no chat framework involved)."""

    app: object
    user_ref: str
    name: str = "Learner"
    locale: str = "en"
    channel: str = "console"

    async def _dispatch(self, **fields) -> Reply:
        channel = collecting_channel(self.app, self.channel)
        outputs = await channel.receive(
            self.app, self.user_ref, locale=self.locale, display_name=self.name, **fields
        )
        replies = [r for r in outputs if isinstance(r, Reply)]
        assert len(replies) == 1, replies
        channel.pop_all(self.user_ref)
        return replies[0]

    async def send(self, text: str) -> Reply:
        """A command (`/rate 1`) or plain text."""
        if text.startswith("/"):
            command, _, args = text[1:].partition(" ")
            return await self._dispatch(kind="command", command=command, args=args, text=text)
        return await self._dispatch(kind="text", text=text)

    async def reply(self, text: str, quoted: str, quoted_id: str = "1") -> Reply:
        """Plain text sent as a reply to an earlier message whose text was `quoted`."""
        return await self._dispatch(
            kind="text", text=text, reply_to=quoted_id, reply_to_text=quoted
        )

    async def press(self, payload: str) -> Reply:
        """A button press by payload."""
        return await self._dispatch(kind="button", payload=payload)

    async def learner_id(self) -> int:
        """This user's learner id."""
        async with self.app.uow() as uow:
            identity = await uow.learners.identity(self.channel, self.user_ref)
            return identity.learner_id


async def rate_with_buttons(user, stars: tuple[int, int, int], outcome: str) -> dict:
    """A fake Telegram user presses the three rating steps; returns the message with `outcome`."""
    for step, value in enumerate(stars, start=1):
        await user.wait_for_message(has(f"{step}/3"))
        await user.press(f"{value} ⭐")
    return await user.wait_for_message(has(outcome))


def payloads(reply: Reply) -> list[str]:
    """Every button payload of a reply."""
    return [b.payload for row in reply.buttons for b in row]


async def learner_for(app, channel: str, user_ref: str, name: str = "", locale="en") -> int:
    """Create (or find) the learner behind `channel:user_ref`."""
    async with app.uow() as uow:
        learner = await uow.learners.resolve(channel, user_ref, name, locale, app.settings)
        await uow.commit()
        return learner.id


async def enrol(app, channel: str, user_ref: str, *course_ids: int, name: str = "") -> int:
    """Make a learner own some courses; returns the learner id."""
    learner_id = await learner_for(app, channel, user_ref, name)
    async with app.uow() as uow:
        for course_id in course_ids:
            await uow.enrolments.add(learner_id, course_id, None)
        await uow.commit()
    return learner_id


async def set_instructor(app, course_id: int, learner_id: int) -> None:
    """Make a learner the instructor of a course."""
    async with app.uow() as uow:
        course = await uow.courses.get(course_id)
        course.instructor_learner_id = learner_id
        await uow.commit()


async def pending(app) -> list[OutboxMessage]:
    """Outbox rows not yet sent, oldest first."""
    async with app.uow() as uow:
        stmt = (
            select(OutboxMessage)
            .where(OutboxMessage.status == "pending")
            .order_by(OutboxMessage.id)
        )
        return list((await uow.session.execute(stmt)).scalars())


async def deliver_outbox(app) -> int:
    """Send the pending outbox rows through app.channels, as the sender does."""
    return await drain_once(app)


def shown(reply: Reply) -> str:
    """Everything a person sees of a reply: its text and its button labels (lists such as
    search results are their buttons)."""
    return "\n".join([reply.text, *(b.label for row in reply.buttons for b in row)])
