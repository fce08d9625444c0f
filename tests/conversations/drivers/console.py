"""The console driver: each person types into a real `ConsoleChannel` (numbered options)."""

from __future__ import annotations

import io
import itertools
from dataclasses import replace

from bot.bootstrap import build_app
from bot.channels.base import TextChannel
from bot.channels.console import PAY_PREFIX, ConsoleChannel
from bot.channels.text import plain
from bot.core import Incoming, Reply
from bot.demo import seed_demo
from tests.conftest import make_settings
from tests.conversations.drivers.base import Driver, Person, Said

ADMIN_REF = "me"  # `console:me` is on the test settings' ADMINS


class _Console(ConsoleChannel):
    """The terminal of one person: the console adapter, typed into as `user_ref`."""

    def __init__(self, person: ConsolePerson, dispatch, locale: str) -> None:
        super().__init__(dispatch, out=io.StringIO(), locale=locale)
        self.person = person

    def to_incoming(self, line: str) -> Incoming | None:
        msg = super().to_incoming(line)
        return None if msg is None else replace(msg, user_ref=self.person.user_ref)

    async def send(self, user_ref: str, reply: Reply) -> None:
        await super().send(user_ref, reply)
        self.person.received.append(Said.of_reply(reply, plain(reply.text)))


class ConsolePerson(Person):
    """Someone at a terminal."""

    def __init__(self, driver: ConsoleDriver, user_ref: str, locale: str, name: str) -> None:
        self.driver, self.user_ref, self.name = driver, user_ref, name
        self.received: list[Said] = []
        self._seen = 0
        self.payments: dict[str, Incoming] = {}
        self.console = _Console(self, self._dispatch, locale)
        self._keys = itertools.count(1)

    async def _dispatch(self, msg: Incoming):
        msg = replace(msg, display_name=self.name)
        if msg.kind == "payment":
            self.payments[msg.payment.charge_id] = msg
        return await self.driver.app.dispatcher.dispatch(msg)

    def inbox(self) -> list[Said]:
        new, self._seen = self.received[self._seen :], len(self.received)
        return new

    async def say(self, text: str) -> list[Said]:
        self.inbox()
        await self.console.handle_line(text)
        return self.inbox()

    async def press(self, payload: str) -> list[Said]:
        options = [b.payload for b in self.console.options]
        if payload not in options:
            raise LookupError(f"no option {payload!r} on the console; offered: {options}")
        return await self.say(str(options.index(payload) + 1))

    async def pay(self, invoice: Said) -> tuple[str, list[Said]]:
        assert invoice.invoice is not None, invoice
        pay = f"{PAY_PREFIX}:{invoice.invoice.payload}:"
        options = [b.payload for b in self.console.options]
        number = next(n for n, p in enumerate(options, start=1) if p.startswith(pay))
        before = set(self.payments)
        said = await self.say(str(number))
        charges = set(self.payments) - before
        return (charges.pop() if charges else ""), said

    async def pay_again(self, charge_id: str) -> list[Said]:
        msg = replace(self.payments[charge_id], update_key=f"{self.console._key()}:again")
        self.inbox()
        await self.console._deliver(await self._dispatch(msg))
        return self.inbox()


class ConsoleHub(TextChannel):
    """The `console` channel the sender sends through: to the terminal of each person."""

    name = "console"
    payment_provider = "console-test"

    def __init__(self) -> None:
        super().__init__()
        self.people: dict[str, ConsolePerson] = {}
        self.refunded: list[str] = []

    async def send(self, user_ref: str, reply: Reply) -> None:
        await self.people[user_ref].console.send(user_ref, reply)

    async def refund(self, user_ref: str, charge_id: str) -> None:
        self.refunded.append(charge_id)


class ConsoleDriver(Driver):
    """People at terminals of the console channel (simulated payments)."""

    name = "console"
    channel = "console"

    async def start(self, db_url, clock) -> None:
        self.clock = clock
        self.app = await build_app(make_settings(db_url), clock=clock)
        async with self.app.uow() as uow:
            await seed_demo(uow)
        self.hub = ConsoleHub()
        self.app.channels.add(self.hub)

    async def stop(self) -> None:
        await self.app.close()

    def _person(self, user_ref: str, locale: str, name: str) -> ConsolePerson:
        if user_ref not in self.hub.people:
            self.hub.people[user_ref] = ConsolePerson(self, user_ref, locale, name)
        return self.hub.people[user_ref]

    def learner(self, n: int, locale: str = "en", name: str = "Learner") -> Person:
        return self._person(f"learner-{n}", locale, name)

    def admin(self, locale: str = "en") -> Person:
        return self._person(ADMIN_REF, locale, "Admin")

    @property
    def refunds(self) -> list[str]:
        return list(self.hub.refunded)
