"""Telegram through aiogram: long polling or webhook, inline keyboards, Stars payments."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

from aiogram import Bot, Dispatcher, Router
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.types import (
    BotCommand,
    BotCommandScopeDefault,
    BufferedInputFile,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LabeledPrice,
    Message,
    PreCheckoutQuery,
    Update,
)
from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web

from bot.channels.base import Channel
from bot.channels.telegram_common import (  # noqa: F401 - re-exported for existing callers
    ALLOWED_UPDATES,
    MAX_TEXT,
    NAME,
    callback_to_incoming,
    command_descriptions,
    deliver,
    message_to_incoming,
    pre_checkout_to_incoming,
    split_text,
)
from bot.core import (
    ChannelError,
    Incoming,
    PreCheckoutAnswer,
    RateLimited,
    RejectedMessage,
    Reply,
    Unreachable,
)
from bot.i18n import LOCALES, STARS

log = logging.getLogger(__name__)


def keyboard(reply: Reply) -> InlineKeyboardMarkup | None:
    """Button rows as an inline keyboard."""
    if not reply.buttons:
        return None
    rows = [
        [InlineKeyboardButton(text=b.label[:64], callback_data=b.payload) for b in row]
        for row in reply.buttons
    ]
    return InlineKeyboardMarkup(inline_keyboard=rows)


def bot_commands(locale: str, commands: Iterable[tuple[str, bool]]) -> list[BotCommand]:
    """The learner commands with their descriptions in one locale."""
    return [
        BotCommand(command=name, description=description)
        for name, description in command_descriptions(locale, commands)
    ]


class AiogramChannel(Channel):
    """The Telegram channel on aiogram; sends replies and refunds Stars payments."""

    name = NAME
    currency = STARS
    payment_provider = "telegram_stars"

    def __init__(self, app) -> None:
        self.app = app
        settings = app.settings
        session = AiohttpSession(api=TelegramAPIServer.from_base(settings.telegram_api_url))
        self.bot = Bot(
            settings.telegram_bot_token.get_secret_value(),
            session=session,
            default=DefaultBotProperties(parse_mode="HTML"),
        )
        self.dp = Dispatcher()
        self.dp.include_router(self._router())
        self._polling: asyncio.Task | None = None

    def _router(self) -> Router:
        router = Router(name="coursebot")
        router.message.register(self._on_message)
        router.callback_query.register(self._on_callback)
        router.pre_checkout_query.register(self._on_pre_checkout)
        return router

    async def _on_message(self, message: Message, event_update: Update) -> None:
        if message.from_user is None or message.chat.type != "private":
            return
        msg = message_to_incoming(event_update, message)
        await self._deliver(msg, await self.app.dispatcher.dispatch(msg))

    async def _on_callback(self, query: CallbackQuery, event_update: Update) -> None:
        # Answer first so the button stops spinning even if handling takes a while.
        await self._safely(query.answer())
        msg = callback_to_incoming(event_update, query)
        await self._deliver(msg, await self.app.dispatcher.dispatch(msg))

    async def _on_pre_checkout(self, query: PreCheckoutQuery, event_update: Update) -> None:
        msg = pre_checkout_to_incoming(event_update, query)
        outputs = await self.app.dispatcher.dispatch(msg)
        answer = next((o for o in outputs if isinstance(o, PreCheckoutAnswer)), None)
        if answer is None:  # a redelivered query: it was answered the first time
            return
        await self.bot.answer_pre_checkout_query(
            query.id, ok=answer.ok, error_message=None if answer.ok else answer.error
        )

    async def _deliver(self, msg: Incoming, outputs) -> None:
        await deliver(self.app, self, msg, outputs)

    async def _safely(self, call) -> None:
        try:
            await call
        except (TelegramBadRequest, TelegramNetworkError) as error:
            log.info("ignored Telegram error: %s", error)

    async def send(self, user_ref: str, reply: Reply) -> None:
        """Send one reply; Telegram errors become the core's ChannelError kinds."""
        try:
            await self._send(int(user_ref), reply)
        except TelegramRetryAfter as error:
            raise RateLimited(error.retry_after, str(error)) from error
        except TelegramForbiddenError as error:
            raise Unreachable(str(error)) from error
        except TelegramBadRequest as error:
            raise RejectedMessage(str(error)) from error
        except (TelegramNetworkError, TelegramServerError) as error:
            raise ChannelError(str(error)) from error

    async def _send(self, chat_id: int, reply: Reply) -> None:
        markup = keyboard(reply)
        if reply.image is not None:
            photo = BufferedInputFile(reply.image, filename="chart.png")
            await self.bot.send_photo(
                chat_id, photo, caption=reply.text[:1024] or None, reply_markup=markup
            )
        elif reply.text:
            pieces = split_text(reply.text)
            for n, piece in enumerate(pieces):
                last = n == len(pieces) - 1
                await self.bot.send_message(chat_id, piece, reply_markup=markup if last else None)
        if reply.invoice is not None:
            invoice = reply.invoice
            await self.bot.send_invoice(
                chat_id,
                title=invoice.title,
                description=invoice.description,
                payload=invoice.payload,
                currency=invoice.currency,
                prices=[LabeledPrice(label=invoice.label, amount=invoice.amount)],
            )

    async def refund(self, user_ref: str, charge_id: str) -> None:
        """Refund a Stars payment."""
        try:
            await self.bot.refund_star_payment(int(user_ref), charge_id)
        except (TelegramBadRequest, TelegramNetworkError, TelegramServerError) as error:
            raise ChannelError(str(error)) from error

    async def set_commands(self) -> None:
        """Publish the learner commands in zh and en."""
        commands = self.app.dispatcher.router.help
        for locale in LOCALES:
            await self.bot.set_my_commands(
                bot_commands(locale, commands),
                scope=BotCommandScopeDefault(),
                language_code=locale,
            )
        default = self.app.settings.default_locale
        await self.bot.set_my_commands(bot_commands(default, commands))

    def config_problem(self, error: Exception) -> str | None:
        """A refused token is a setting to fix, not a blip to retry."""
        if isinstance(error, TelegramUnauthorizedError):
            return "TELEGRAM_BOT_TOKEN was refused by Telegram (401): copy it from @BotFather"
        return None

    def _webhook_secret(self) -> str | None:
        secret = self.app.settings.telegram_webhook_secret
        return secret.get_secret_value() if secret else None

    def add_routes(self, web_app: web.Application) -> None:
        """In webhook mode, serve `/telegram` on the one web application."""
        if not self.app.settings.telegram_webhook_url:
            return
        # handle_in_background=False: Telegram gets its 200 only after the update committed.
        SimpleRequestHandler(
            self.dp, self.bot, secret_token=self._webhook_secret(), handle_in_background=False
        ).register(web_app, path="/telegram")

    async def start(self) -> None:
        """Publish commands, then poll, or register the webhook when TELEGRAM_WEBHOOK_URL is set
        (its route is on the web server: `add_routes`)."""
        await self.set_commands()
        settings = self.app.settings
        if settings.telegram_webhook_url:
            await self.bot.set_webhook(
                settings.telegram_webhook_url,
                secret_token=self._webhook_secret(),
                allowed_updates=ALLOWED_UPDATES,
            )
        else:
            await self.bot.delete_webhook(drop_pending_updates=False)
            # handle_as_tasks=False: an update is confirmed to Telegram only after its
            # transaction committed, so a crash re-fetches it instead of losing it.
            self._polling = asyncio.create_task(
                self.dp.start_polling(
                    self.bot,
                    handle_signals=False,
                    handle_as_tasks=False,
                    allowed_updates=ALLOWED_UPDATES,
                    close_bot_session=False,
                )
            )

    async def stop(self) -> None:
        """Stop polling and close the HTTP session (the web server stops on its own)."""
        polling, self._polling = self._polling, None
        if polling is not None:
            with contextlib.suppress(RuntimeError):  # polling had already ended
                await self.dp.stop_polling()
            await asyncio.gather(polling, return_exceptions=True)
        await self.bot.session.close()
