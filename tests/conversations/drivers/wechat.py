"""The WeChat driver: followers of the fake WeChat push signed XML to the real `/wechat` route.

- `say` is a typed text message; the action returns once the passive reply came back and every
  customer-service message the channel spawned for it (invoices, slow replies) was sent.
- `press` types the number of the option with that payload among the numbered options the
  channel last showed the person (the ones it stored to read the next typed number with).
- `pay` scans the invoice's Native QR code (`weixin://…`) and lets the fake send WeChat Pay's
  signed, AES-GCM encrypted notification to `/wechat/pay/notify`; `pay_again` sends the same
  notification once more (WeChat Pay's redelivery).

A person sees plain text: a `Said`'s buttons are the payloads of the numbered options in it (as
the channel rendered and stored them), its invoice the Native order its `weixin://` link pays.

WeChat tells the bot neither a name nor a language: a new follower gets the default locale, so
a learner made with another locale first picks it with `/language` (as a WeChat user would).
"""

from __future__ import annotations

import asyncio
import re
import tempfile
from pathlib import Path

from bot.bootstrap import build_app
from bot.channels.text import plain
from bot.channels.wechat import WeChatChannel, options_key
from bot.demo import seed_demo
from bot.runner import start_channels
from tests.conftest import ADMIN_TG, make_settings
from tests.conversations.drivers.base import Driver, InvoiceSeen, Person, Said
from tests.fakes.wechat_api import FakeWeChat, free_port

ADMIN_WX = "oAdminWeChat0001"
CODE_URL = re.compile(r"weixin://\S+")
OUT_TRADE_NO = re.compile(r"^CB(\d+)X")


class _Channel(WeChatChannel):
    """The real channel; it also notes every list of numbered options it shows a user."""

    def __init__(self, app, **kwargs) -> None:
        super().__init__(app, **kwargs)
        self.shown: dict[str, list[list]] = {}

    async def _remember(self, user_ref, options) -> None:
        self.shown.setdefault(user_ref, []).append(list(options))
        await super()._remember(user_ref, options)

    async def settled(self) -> None:
        """Wait until no update is in flight and every spawned delivery has finished."""
        for _ in range(100):
            pending = set(self._background) | set(self._inflight.values())
            if not pending:
                await self.writes.flush()  # options shown are written behind the replies
                return
            await asyncio.wait(pending, timeout=15)
        raise AssertionError("WeChat deliveries never settled")


def options_in(text: str, shown: list[list]) -> list[str]:
    """The payloads of the numbered options rendered in `text` (the latest list that fits)."""
    lines = set(text.split("\n"))
    for options in reversed(shown):
        if options and all(f"{n}. {plain(b.label)}" in lines for n, b in enumerate(options, 1)):
            return [b.payload for b in options]
    return []


class WeChatPerson(Person):
    """A follower of the Official Account."""

    def __init__(self, driver: WeChatDriver, openid: str, locale: str | None) -> None:
        self.driver, self.user_ref = driver, openid
        self.user = driver.wx.user(openid)
        self._seen = 0
        self._locale = locale  # still to pick with /language before the first action

    def _said(self, message: dict) -> Said:
        if message["type"] == "image":
            return Said(image=True, raw=message)
        if message["type"] not in ("text", "msgmenu"):  # a msgmenu reads as its numbered text
            return Said(raw=message)
        text = message["text"]
        invoice = None
        code = CODE_URL.search(text)
        if code:
            order = self.driver.wx.order_by_code(code.group(0))
            number = OUT_TRADE_NO.match(order["out_trade_no"])
            invoice = InvoiceSeen(f"order:{number.group(1)}", "CNY", order["total"])
        shown = self.driver.wechat.shown.get(self.user_ref, [])
        return Said(text=text, buttons=options_in(text, shown), invoice=invoice, raw=message)

    def inbox(self) -> list[Said]:
        messages = self.user.messages
        new, self._seen = messages[self._seen :], len(messages)
        return [self._said(m) for m in new]

    async def _act(self, action) -> list[Said]:
        if self._locale is not None:
            locale, self._locale = self._locale, None
            await self.say("/language")
            await self.press(f"lang:{locale}")
        self.inbox()
        await action()
        await self.driver.wechat.settled()
        return self.inbox()

    async def _push(self, text: str) -> None:
        delivery = await self.user.send_text(text)
        assert not delivery.failed, f"WeChat gave up on {text!r}: {delivery.tries}"

    async def say(self, text: str) -> list[Said]:
        return await self._act(lambda: self._push(text))

    async def _offered(self) -> list[str]:
        """Payloads of the numbered options the channel will read the next number against."""
        async with self.driver.app.uow() as uow:
            shown = await uow.kv.get(options_key(self.user_ref))
        return [payload for _label, payload in (shown or {}).get("options", [])]

    async def press(self, payload: str) -> list[Said]:
        async def choose() -> None:
            offered = await self._offered()
            if payload not in offered:
                raise LookupError(f"no option {payload!r} on WeChat; offered: {offered}")
            await self._push(str(offered.index(payload) + 1))

        return await self._act(choose)

    async def pay(self, invoice: Said) -> tuple[str, list[Said]]:
        assert invoice.invoice is not None, invoice
        code_url = CODE_URL.search(invoice.text).group(0)
        paid: dict = {}

        async def scan_and_pay() -> None:
            order, statuses = await self.driver.wx.pay(code_url, self.user_ref)
            assert statuses == [200], statuses
            paid.update(order)

        said = await self._act(scan_and_pay)
        return paid["transaction_id"], said

    async def pay_again(self, charge_id: str) -> list[Said]:
        wx = self.driver.wx
        order = next(o for o in wx.orders.values() if o["transaction_id"] == charge_id)

        async def notify_again() -> None:
            assert await wx.notify(order) == 200

        return await self._act(notify_again)


class WeChatDriver(Driver):
    """Followers of the fake WeChat; the real WeChat channel and WeChat Pay Native."""

    name = "wechat"
    channel = "wechat"
    currency = "CNY"
    tells_profile = False
    repeat_charge_heard = False

    async def start(self, db_url, clock) -> None:
        self.clock = clock
        self._keys = tempfile.TemporaryDirectory(prefix="coursebot-wx-")
        self.wx = await FakeWeChat(Path(self._keys.name)).__aenter__()
        port = free_port()
        settings = make_settings(
            db_url,
            web_port=port,
            wechatpay_notify_url=f"http://127.0.0.1:{port}/wechat/pay/notify",
            admins=frozenset({f"telegram:{ADMIN_TG}", f"wechat:{ADMIN_WX}", "console:me"}),
            **self.wx.settings(),
        )
        self.app = await build_app(settings, clock=clock)
        async with self.app.uow() as uow:
            await seed_demo(uow)
            await uow.commit()
        self.wechat = _Channel(self.app, refresher=True)
        await start_channels(self.app, [self.wechat])
        self.wx.bot_url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        await self.wechat.stop()
        await self.app.close()
        await self.wx.__aexit__(None, None, None)
        self._keys.cleanup()

    def _person(self, openid: str, locale: str) -> WeChatPerson:
        default = self.app.settings.default_locale
        return WeChatPerson(self, openid, None if locale == default else locale)

    def learner(self, n: int, locale: str = "en", name: str = "Learner") -> Person:
        return self._person(f"oLearner{n:010d}", locale)

    def admin(self, locale: str = "en") -> Person:
        return self._person(ADMIN_WX, locale)

    @property
    def refunds(self) -> list[str]:
        return [r["transaction_id"] for r in self.wx.refunds]
