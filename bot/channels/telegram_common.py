"""What both Telegram runtimes (aiogram and python-telegram-bot) share.

Bot API objects are read by their Bot API field names (`update_id`, `from_user`, `text`,
`successful_payment.telegram_payment_charge_id`, …), which aiogram's and PTB's types both use,
so one conversion serves both runtimes and their behaviour cannot drift apart.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from bot.core import ChannelError, Incoming, PaymentInfo, Reply
from bot.i18n import Translator, has_message

log = logging.getLogger(__name__)
NAME = "telegram"
PROVIDER = "telegram_stars"
MAX_TEXT = 4096
MAX_CAPTION = 1024
MAX_BUTTON_LABEL = 64
ALLOWED_UPDATES = ["message", "callback_query", "pre_checkout_query"]
WEBHOOK_PATH = "/telegram"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


def _display_name(user: Any) -> str:
    if user is None:
        return ""
    return " ".join(filter(None, [user.first_name, user.last_name]))[:128]


def _base(update: Any, user: Any) -> dict:
    return dict(
        channel=NAME,
        user_ref=str(user.id) if user else "",
        update_key=f"tg:{update.update_id}",
        locale=user.language_code if user else None,
        display_name=_display_name(user),
    )


def message_to_incoming(update: Any, message: Any) -> Incoming:
    """A Telegram message as an Incoming: a command, a payment, or plain text.

    A reply to an earlier message carries that message's id and text (or caption).
    """
    base = _base(update, message.from_user)
    quoted = message.reply_to_message
    if quoted is not None:
        base.update(
            reply_to=str(quoted.message_id), reply_to_text=quoted.text or quoted.caption or ""
        )
    if message.successful_payment is not None:
        paid = message.successful_payment
        info = PaymentInfo(
            currency=paid.currency,
            amount=paid.total_amount,
            invoice_payload=paid.invoice_payload,
            charge_id=paid.telegram_payment_charge_id,
            provider=PROVIDER,
        )
        return Incoming(kind="payment", payment=info, **base)
    text = message.text or message.caption or ""
    if text.startswith("/"):
        head, _, args = text[1:].partition(" ")
        command = head.split("@", 1)[0].lower()
        return Incoming(
            kind="command",
            command=command,
            args=args.strip(),
            text=text,
            **base,
        )
    return Incoming(kind="text", text=text, **base)


def callback_to_incoming(update: Any, query: Any) -> Incoming:
    """A button press as an Incoming."""
    return Incoming(kind="button", payload=query.data or "", **_base(update, query.from_user))


def pre_checkout_to_incoming(update: Any, query: Any) -> Incoming:
    """A pre-checkout query as an Incoming."""
    info = PaymentInfo(
        currency=query.currency,
        amount=query.total_amount,
        invoice_payload=query.invoice_payload,
        query_id=query.id,
        provider=PROVIDER,
    )
    return Incoming(kind="pre_checkout", payment=info, **_base(update, query.from_user))


def split_text(text: str, limit: int = MAX_TEXT) -> list[str]:
    """Split a long text at line breaks into pieces Telegram accepts."""
    if len(text) <= limit:
        return [text]
    pieces, current = [], ""
    for line in text.split("\n"):
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) > limit and current:
            pieces.append(current)
            candidate = line
        current = candidate[:limit]
    return pieces + [current]


def command_descriptions(
    locale: str, commands: Iterable[tuple[str, bool]]
) -> list[tuple[str, str]]:
    """(command, description) of the learner commands in one locale, for setMyCommands."""
    t = Translator(locale, None)
    return [
        (name, t(f"cmd.{name}")[:256])
        for name, admin in commands
        if not admin and has_message(f"cmd.{name}")
    ]


async def deliver(app, channel, msg: Incoming, outputs) -> None:
    """Send the replies of one update: to the sender through `channel`, or to `Reply.to`."""
    for output in outputs:
        if not isinstance(output, Reply):
            continue
        target = app.channels.get(output.to.channel) if output.to else channel
        user_ref = output.to.user_ref if output.to else msg.user_ref
        try:
            await target.send(user_ref, output)
        except ChannelError as error:
            log.warning("reply to %s not delivered: %s", msg.user_ref, error)
