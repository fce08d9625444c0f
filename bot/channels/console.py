"""The terminal channel: numbered options for buttons, simulated (test-mode) payments."""

from __future__ import annotations

import asyncio
import itertools
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from bot.channels.base import TextChannel
from bot.channels.text import plain
from bot.core import (
    Button,
    Incoming,
    PaymentInfo,
    PreCheckoutAnswer,
    Reply,
)
from bot.parsing import is_number, parse_int

CONSOLE_USER = "me"
PAY_PREFIX = "console-pay"
TEST_MODE = "【测试模式 TEST MODE】模拟支付，不会扣任何钱 / simulated payment, no money moves."
PAY_LABEL = "模拟支付 / Simulate paying {amount} ⭐"


@dataclass(frozen=True)
class ConsoleIncoming(Incoming):
    """A console update that carries a picture (`/cover 3 ./cover.png`): `image` is its bytes,
    as a channel that receives photos gives them to `/cover`."""

    image: bytes | None = None


#: The largest picture file the console reads for `/cover`.
MAX_IMAGE_FILE = 5_000_000


def _picture(args: str) -> tuple[str, bytes] | None:
    """`<course_id> <path to a picture>` → (course_id, the file's bytes), else None."""
    head, _, rest = args.partition(" ")
    path = Path(rest.strip()).expanduser()
    if not rest.strip() or not path.is_file() or path.stat().st_size > MAX_IMAGE_FILE:
        return None
    return head, path.read_bytes()


class ConsoleChannel(TextChannel):
    """Chat with the storefront in a terminal; the console user is an admin.

    Option numbers are unique on the screen: the first message with options after a typed line
    starts again at 1 (it takes over: older numbers no longer apply), and every further message
    — the rest of that answer, a reminder arriving later — continues the numbering.
    """

    name = "console"
    payment_provider = "console-test"

    def __init__(self, dispatch: Callable, out: TextIO = sys.stdout, locale: str = "zh"):
        super().__init__()
        self.dispatch = dispatch
        self.out = out
        self.locale = locale
        self.options: list[Button] = []
        self._takes_over = True  # the next message with options starts again at 1
        self._ids = itertools.count(1)
        self._session = uuid.uuid4().hex[:8]

    async def send(self, user_ref: str, reply: Reply) -> None:
        """Print a reply; buttons become options numbered after those already on screen."""
        text, _ = self.render(Reply(reply.text, image=reply.image, document=reply.document))
        options = [button for row in reply.buttons for button in row]
        first = 1 if self._takes_over else len(self.options) + 1
        lines = [f"{n}. {plain(b.label)}" for n, b in enumerate(options, start=first)]
        text = "\n".join(filter(None, [text, *lines]))
        if reply.invoice is not None:
            invoice = reply.invoice
            pay = Button(
                PAY_LABEL.format(amount=invoice.amount),
                f"{PAY_PREFIX}:{invoice.payload}:{invoice.currency}:{invoice.amount}",
            )
            options.append(pay)
            text = "\n".join(
                filter(
                    None,
                    [
                        text,
                        f"🧾 {invoice.title} — {invoice.amount} ⭐",
                        TEST_MODE,
                        f"{first + len(options) - 1}. {pay.label}",
                    ],
                )
            )
        if options:
            self.options = options if self._takes_over else self.options + options
            self._takes_over = False
        self.out.write(text + "\n\n")
        self.out.flush()

    async def refund(self, user_ref: str, charge_id: str) -> None:
        """Console payments are simulated, so is their refund."""
        self.out.write(f"[TEST MODE] refunded {charge_id}\n")

    def _key(self) -> str:
        return f"console:{self._session}:{next(self._ids)}"

    def to_incoming(self, line: str) -> Incoming | None:
        """Turn a typed line into an update: `/cmd args`, an option number, or words."""
        line = line.strip()
        if not line:
            return None
        base = dict(
            channel=self.name, user_ref=CONSOLE_USER, locale=self.locale, display_name="Console"
        )
        option = parse_int(line, 1, len(self.options)) if self.options else None
        if option is not None:
            payload = self.options[option - 1].payload
            return Incoming(update_key=self._key(), kind="button", payload=payload, **base)
        if line.startswith("/"):
            command, _, args = line[1:].partition(" ")
            picture = _picture(args.strip()) if command.lower() == "cover" else None
            if picture is not None:  # the console's way of sending a photo with a caption
                return ConsoleIncoming(
                    update_key=self._key(),
                    kind="command",
                    command="cover",
                    args=picture[0],
                    image=picture[1],
                    **base,
                )
            return Incoming(
                update_key=self._key(),
                kind="command",
                command=command.lower(),
                args=args.strip(),
                **base,
            )
        return Incoming(update_key=self._key(), kind="text", text=line, **base)

    async def handle_line(self, line: str) -> None:
        """Dispatch one typed line and print the replies."""
        msg = self.to_incoming(line)
        if msg is None:
            return
        self._takes_over = True
        if msg.kind == "button" and msg.payload.startswith(PAY_PREFIX + ":"):
            await self._simulate_payment(msg)
            return
        await self._deliver(await self.dispatch(msg))

    async def _deliver(self, outputs) -> None:
        for output in outputs:
            if isinstance(output, Reply):
                await self.send(CONSOLE_USER, output)

    async def _simulate_payment(self, msg: Incoming) -> None:
        _, kind, number, currency, amount = msg.payload.split(":")
        order_payload = f"{kind}:{number}"
        info = PaymentInfo(
            currency=currency,
            amount=int(amount),
            invoice_payload=order_payload,
            provider="console-test",
        )
        check = Incoming(
            **{**msg.__dict__, "kind": "pre_checkout", "payment": info, "update_key": self._key()}
        )
        answers = await self.dispatch(check)
        answer = next((a for a in answers if isinstance(a, PreCheckoutAnswer)), None)
        if answer is None or not answer.ok:
            self.out.write(f"✖ {answer.error if answer else '?'}\n\n")
            return
        charge = f"console-test-{uuid.uuid4().hex}"
        paid = PaymentInfo(
            currency=currency,
            amount=int(amount),
            invoice_payload=order_payload,
            charge_id=charge,
            provider="console-test",
        )
        done = Incoming(
            **{**msg.__dict__, "kind": "payment", "payment": paid, "update_key": self._key()}
        )
        await self._deliver(await self.dispatch(done))


async def run_console(channel: ConsoleChannel, lines: TextIO = sys.stdin) -> None:
    """Read lines until EOF (or `/quit`) and answer each."""
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, lines.readline)
        if not line or line.strip() in ("/quit", "/exit"):
            return
        word, _, seconds = line.strip().partition(" ")
        if word == "/wait":  # console only: let time pass (reminders, announcements)
            await asyncio.sleep(float(seconds) if _is_seconds(seconds) else 1.0)
            continue
        await channel.handle_line(line)


def _is_seconds(text: str) -> bool:
    return is_number(text.replace(".", "", 1))
