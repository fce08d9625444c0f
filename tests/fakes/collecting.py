"""A channel for tests that keeps what it was sent: handler tests need no fake server."""

from __future__ import annotations

import itertools
from collections import defaultdict

from bot.channels.base import TextChannel
from bot.core import Incoming, Output, Reply

_keys = itertools.count(1)


class CollectingChannel(TextChannel):
    """Collects replies per user (`push` on send, `pop` in the test); refunds are recorded."""

    payment_provider = "collecting-test"

    def __init__(self, name: str = "console", currency: str = "XTR") -> None:
        super().__init__()
        self.name = name
        self.currency = currency
        self.inbox: dict[str, list[Reply]] = defaultdict(list)
        self.refunds: list[tuple[str, str]] = []

    def push(self, user_ref: str, reply: Reply) -> None:
        """Keep one reply for `user_ref`."""
        self.inbox[user_ref].append(reply)

    def pop(self, user_ref: str) -> Reply:
        """The oldest reply to `user_ref` not yet taken; AssertionError when there is none."""
        assert self.inbox[user_ref], f"nothing was sent to {user_ref}"
        return self.inbox[user_ref].pop(0)

    def pop_all(self, user_ref: str) -> list[Reply]:
        """Every reply to `user_ref` not yet taken."""
        replies, self.inbox[user_ref] = self.inbox[user_ref], []
        return replies

    async def send(self, user_ref: str, reply: Reply) -> None:
        """What the sender and direct replies call: the reply is kept."""
        self.push(user_ref, reply)

    async def refund(self, user_ref: str, charge_id: str) -> None:
        """Record the refund."""
        self.refunds.append((user_ref, charge_id))

    async def receive(self, app, user_ref: str, **fields) -> list[Output]:
        """Dispatch one update from `user_ref` and keep its replies; returns every output."""
        msg = Incoming(channel=self.name, user_ref=user_ref, update_key=self.key(), **fields)
        outputs = await app.dispatcher.dispatch(msg)
        for output in outputs:
            if isinstance(output, Reply):
                target = output.to.user_ref if output.to else user_ref
                self.push(target, output)
        return outputs

    def key(self) -> str:
        """A fresh update key."""
        return f"{self.name}:collect:{next(_keys)}"
