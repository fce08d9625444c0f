"""The driver contract of the conversation suite: one small driver per channel.

A script talks to *people* (`Person`) and looks at what they see (`Said`) and at the database;
it never sees channel formatting. A driver starts the app with its real channel adapter and
turns a person's actions into that channel's native input:

=========  ===========================================================================
say        a typed line (`/catalog`, `/search python`, `摄影`)
press      a button by its payload (`buy:1`): an inline button, a numbered option, a menu
pay        pay the invoice of a `Said` (Stars, simulated console payment, WeChat Pay …);
           returns the provider's charge id
pay_again  the provider reports the same charge once more (redelivery, a second notify)
inbox      messages that arrived since the last look (proactive ones: outbox, sender)
=========  ===========================================================================

Every action returns the `Said` messages the person received *because of it*, in order, and
returns only when the channel has finished with it (committed and replied).

To add a channel (WeChat): subclass `Driver` and `Person` in `drivers/<channel>.py` and list the
class in `drivers.DRIVERS`; every script then runs against it. `Driver.channel` is the channel
name stored with identities and payments, `Driver.currency` what its invoices charge in.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from bot.core import Reply
from scheduler.sender import drain_round
from tests.conftest import FixedClock


@dataclass(frozen=True)
class InvoiceSeen:
    """An invoice as the person sees it: what it is for and what it costs."""

    payload: str
    currency: str
    amount: int


@dataclass
class Said:
    """One message the bot sent to a person, in channel-neutral form."""

    text: str = ""
    buttons: list[str] = field(default_factory=list)  # payloads, in order
    invoice: InvoiceSeen | None = None
    image: bool = False
    raw: object = None  # the channel's own message, for a driver's use

    @classmethod
    def of_reply(cls, reply: Reply, text: str) -> Said:
        """A core Reply as seen through a text channel (`text` already rendered)."""
        invoice = reply.invoice
        return cls(
            text=text,
            buttons=[b.payload for row in reply.buttons for b in row],
            invoice=InvoiceSeen(invoice.payload, invoice.currency, invoice.amount)
            if invoice
            else None,
            image=reply.image is not None,
            raw=reply,
        )


class Person(ABC):
    """Someone chatting with the bot on one channel."""

    #: The user reference the channel uses for this person (stored with the identity).
    user_ref: str

    @abstractmethod
    async def say(self, text: str) -> list[Said]:
        """Type a line; returns the replies."""

    @abstractmethod
    async def press(self, payload: str) -> list[Said]:
        """Press the offered button with this payload (LookupError when none is offered)."""

    @abstractmethod
    async def pay(self, invoice: Said) -> tuple[str, list[Said]]:
        """Pay an invoice message; returns the charge id and the replies."""

    @abstractmethod
    async def pay_again(self, charge_id: str) -> list[Said]:
        """The provider delivers the same successful charge once more."""

    @abstractmethod
    def inbox(self) -> list[Said]:
        """Messages received since the last action or look."""


class Driver(ABC):
    """One channel under test: starts the app with the real adapter, makes people."""

    name: str
    channel: str
    currency: str = "XTR"
    #: The channel tells the bot a new user's name and language (Telegram's first_name and
    #: language_code, the console's settings); WeChat tells neither.
    tells_profile: bool = True
    #: `pay_again` is a new update the person hears about (a second Telegram successful
    #: payment, a console redelivery); on WeChat Pay it is the same notification: silent.
    repeat_charge_heard: bool = True

    def __init__(self) -> None:
        self.app = None
        self.clock: FixedClock | None = None

    @abstractmethod
    async def start(self, db_url: str, clock: FixedClock) -> None:
        """Build the app on `db_url` with the demo catalog and start the channel."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop the channel and close the app."""

    @abstractmethod
    def learner(self, n: int, locale: str = "en", name: str = "Learner") -> Person:
        """The n-th learner (a new user of the channel)."""

    @abstractmethod
    def admin(self, locale: str = "en") -> Person:
        """The admin of the settings' ADMINS list on this channel."""

    @property
    @abstractmethod
    def refunds(self) -> list[str]:
        """Charge ids refunded through the channel so far."""

    async def deliver_outbox(self) -> int:
        """Send what is due in the outbox through the channels, as the sender does."""
        total = 0
        for _ in range(50):
            done = await drain_round(
                self.app, monotonic=_FakeTime.monotonic, sleep=_FakeTime.sleep
            )
            total += done.sent
            if not done.claimed:
                break
        return total


class _FakeTime:
    """Sender limiter time that never waits (sleeping moves it forward)."""

    t = 1000.0

    @classmethod
    def monotonic(cls) -> float:
        return cls.t

    @classmethod
    async def sleep(cls, seconds: float) -> None:
        cls.t += max(0.0, seconds)
