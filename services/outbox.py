"""The one door to the outbox: every proactive message is stored here, in the caller's
transaction, before anything is sent. The sender in `scheduler/` claims and settles the rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from bot.core import Reply, reply_to_body

MAX_KIND = 24


@dataclass(frozen=True)
class Outgoing:
    """One proactive message for one recipient (text, buttons, image and/or invoice)."""

    channel: str
    user_ref: str
    reply: Reply
    kind: str
    learner_id: int | None = None
    dedupe_key: str | None = None
    not_before: datetime | None = None
    broadcast_id: int | None = None
    #: Set when the recipient is known to be unreachable: stored settled, never sent.
    undeliverable: str | None = None


def _row(message: Outgoing, body: dict, now: datetime) -> dict:
    return dict(
        channel=message.channel,
        user_ref=message.user_ref,
        learner_id=message.learner_id,
        kind=message.kind[:MAX_KIND],
        body=body,
        dedupe_key=message.dedupe_key,
        broadcast_id=message.broadcast_id,
        status="unreachable" if message.undeliverable else "pending",
        last_error=message.undeliverable,
        attempts=0,
        not_before=message.not_before or now,
        created_at=now,
    )


async def enqueue(uow, messages: Outgoing | Iterable[Outgoing], now: datetime) -> int:
    """Store proactive messages for the sender; a repeated dedupe key is skipped.

    Returns how many rows were new. Replies shared by many recipients are serialised once.
    """
    batch = [messages] if isinstance(messages, Outgoing) else list(messages)
    bodies: dict[int, dict] = {}
    rows = []
    for message in batch:
        body = bodies.get(id(message.reply))
        if body is None:
            body = bodies[id(message.reply)] = reply_to_body(message.reply)
        rows.append(_row(message, body, now))
    return await uow.outbox.add_many(rows)
