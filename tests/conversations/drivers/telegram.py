"""Telegram drivers: scripted users of the fake Bot API, the real aiogram or PTB adapter polling.

An action returns once the fake has seen its updates confirmed, which both adapters do only
after the update committed and its replies were sent, so no test waits on wall-clock time.
"""

from __future__ import annotations

from bot.bootstrap import build_app
from bot.demo import seed_demo
from bot.runner import start_channels
from tests.conftest import ADMIN_TG, make_settings
from tests.conversations.drivers.base import Driver, InvoiceSeen, Person, Said
from tests.fakes.telegram_api import FakeTelegram, FakeUser

FIRST_LEARNER = 70_000


def said_of(tg: FakeTelegram, chat_id: int, message: dict) -> Said:
    """A Bot API message as the person sees it."""
    markup = (message.get("reply_markup") or {}).get("inline_keyboard") or []
    invoice = None
    if "invoice" in message:
        sent = next(i for i in tg.invoices_for(chat_id) if i.message_id == message["message_id"])
        invoice = InvoiceSeen(sent.payload, sent.currency, sent.total_amount)
    return Said(
        text=message.get("text") or message.get("caption") or "",
        buttons=[b["callback_data"] for row in markup for b in row if "callback_data" in b],
        invoice=invoice,
        image="photo" in message,
        raw=message,
    )


class TelegramPerson(Person):
    """A scripted Telegram user."""

    def __init__(self, driver: TelegramDriver, user: FakeUser) -> None:
        self.driver, self.user, self.tg = driver, user, driver.tg
        self.user_ref = str(user.id)
        self._seen = 0

    def inbox(self) -> list[Said]:
        messages = self.tg.messages_for(self.user.id, include_deleted=True)
        new, self._seen = messages[self._seen :], len(messages)
        return [said_of(self.tg, self.user.id, m) for m in new]

    async def _settle(self, since: int) -> None:
        """Wait until the updates delivered since index `since` are all confirmed."""
        ids = {u["update_id"] for u in self.tg.updates[since:]}
        await self.tg.wait_until(
            lambda: not ids & {u["update_id"] for u in self.tg.pending_updates},
            timeout=15,
            what=f"updates {sorted(ids)} to be confirmed",
        )

    async def _act(self, action) -> list[Said]:
        self.inbox()
        since = len(self.tg.updates)
        result = await action
        await self._settle(since)
        self.last_result = result
        return self.inbox()

    async def say(self, text: str) -> list[Said]:
        return await self._act(self.user.send(text))

    async def press(self, payload: str) -> list[Said]:
        return await self._act(self.user.press(payload))

    async def pay(self, invoice: Said) -> tuple[str, list[Said]]:
        said = await self._act(self.user.pay(invoice.raw))
        assert self.last_result, f"payment declined: {self.user.last_payment_error}"
        self.invoice = invoice.raw
        return self.last_result, said

    async def pay_again(self, charge_id: str) -> list[Said]:
        return await self._act(self.user.deliver_payment(self.invoice, charge_id))


class TelegramDriver(Driver):
    """Users of the fake Bot API; subclasses pick the runtime."""

    channel = "telegram"

    def channel_class(self):
        raise NotImplementedError

    async def start(self, db_url, clock) -> None:
        self.clock = clock
        self.tg = await FakeTelegram().start()
        settings = make_settings(
            db_url, telegram_bot_token=self.tg.token, telegram_api_url=self.tg.base_url
        )
        self.app = await build_app(settings, clock=clock)
        async with self.app.uow() as uow:
            await seed_demo(uow)
        self.adapter = self.channel_class()(self.app)
        await start_channels(self.app, [self.adapter])

    async def stop(self) -> None:
        await self.adapter.stop()
        await self.app.close()
        await self.tg.stop()

    def learner(self, n: int, locale: str = "en", name: str = "Learner") -> Person:
        return TelegramPerson(self, self.tg.user(FIRST_LEARNER + n, name, language_code=locale))

    def admin(self, locale: str = "en") -> Person:
        return TelegramPerson(self, self.tg.user(ADMIN_TG, "Admin", language_code=locale))

    @property
    def refunds(self) -> list[str]:
        return [r["telegram_payment_charge_id"] for r in self.tg.refunds]


class AiogramDriver(TelegramDriver):
    """Telegram on aiogram."""

    name = "aiogram"

    def channel_class(self):
        from bot.channels.telegram_aiogram import AiogramChannel

        return AiogramChannel


class PtbDriver(TelegramDriver):
    """Telegram on python-telegram-bot."""

    name = "ptb"

    def channel_class(self):
        from bot.channels.telegram_ptb import PtbChannel

        return PtbChannel
