"""Telegram through aiogram: long polling or webhook, inline keyboards, Stars payments."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
from collections.abc import Iterable

from aiogram import Bot
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    AiogramError,
    TelegramAPIError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramRetryAfter,
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
from aiohttp import ClientError, ClientTimeout, web

from bot.channels.base import Channel
from bot.channels.lazy_aiogram import keep_response_types
from bot.channels.telegram_common import (  # noqa: F401 - re-exported for existing callers
    ALLOWED_UPDATES,
    LANES,
    MAX_TEXT,
    NAME,
    SECRET_HEADER,
    WEBHOOK_PATH,
    ChatLanes,
    Part,
    PlainObject,
    answer_pre_checkout,
    callback_to_incoming,
    clean_text,
    clean_update,
    command_descriptions,
    deliver,
    keyboard_rows,
    lane_of,
    message_params,
    message_to_incoming,
    parse_update,
    picture_to_fetch,
    plain_update,
    pre_checkout_to_incoming,
    read_webhook,
    reply_parts,
    safe_html,
    send_part,
    split_text,
)
from bot.core import (
    ChannelError,
    Incoming,
    RateLimited,
    RejectedMessage,
    Reply,
    Unauthorized,
    Unreachable,
)
from bot.i18n import LOCALES, STARS

log = logging.getLogger(__name__)

keep_response_types()

#: Long-polling timeout of getUpdates (seconds).
POLL_TIMEOUT = 10
MAX_POLL_BACKOFF = 30.0
#: Key prefix of fetched updates waiting to be handled (key-value table).
QUEUE_PREFIX = "tgq:"
#: Fetching pauses while more updates than this wait to be handled.
MAX_QUEUED = 5000
#: A getUpdates batch this full means more wait behind it: switch to the durable queue.
BACKLOG_BATCH = 100
#: Queued updates taken for handling at once (across all lanes).
MAX_IN_FLIGHT = 4 * LANES


def keyboard(reply: Reply) -> InlineKeyboardMarkup | None:
    """Button rows as an inline keyboard."""
    rows = keyboard_rows(reply)
    if not rows:
        return None
    buttons = [[InlineKeyboardButton(**button) for button in row] for row in rows]
    return InlineKeyboardMarkup(inline_keyboard=buttons)


def api_result(method: str, status: int, body: bytes):
    """The `result` of a raw Bot API answer, or the core's ChannelError kind it means."""
    try:
        data = json.loads(body)
    except ValueError as error:
        raise ChannelError(f"{method}: HTTP {status}, not JSON") from error
    if isinstance(data, dict) and data.get("ok"):
        return data.get("result")
    data = data if isinstance(data, dict) else {}
    description = f"{method}: {data.get('description', '')}"
    retry = (data.get("parameters") or {}).get("retry_after")
    if isinstance(retry, int | float):
        raise RateLimited(float(retry), description)
    errors = {401: Unauthorized, 403: Unreachable, 400: RejectedMessage}
    raise errors.get(data.get("error_code", status), ChannelError)(f"HTTP {status} {description}")


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
        self._polling: asyncio.Task | None = None
        self._batch: asyncio.Task | None = None
        self._stopping = asyncio.Event()
        self._queue: asyncio.Queue = asyncio.Queue()
        self._worker: asyncio.Task | None = None
        self._side_tasks: set[asyncio.Task] = set()
        self._lanes = ChatLanes(LANES)
        self._unfinished = 0  # queued updates not yet handled
        self._handled: list[int] = []  # queued updates handled, not yet forgotten
        #: Updates skipped because they could not be parsed, and updates whose handling raised.
        self.skipped_updates = 0
        self.failed_updates = 0

    async def _on_message(self, message: Message | PlainObject, event_update) -> None:
        if message.from_user is None or message.chat.type != "private":
            return
        msg = message_to_incoming(event_update, message)
        if file_id := picture_to_fetch(message):
            msg = dataclasses.replace(msg, image=await self._download(file_id))
        await self._deliver(msg, await self.app.dispatcher.dispatch(msg, durable=True))

    async def _download(self, file_id: str) -> bytes | None:
        """The bytes of a file the user sent (None when Telegram would not give it)."""
        try:
            return (await self.bot.download(file_id)).getvalue()
        except (TelegramAPIError, AiogramError, OSError, TimeoutError) as error:
            log.warning("could not download a picture: %s", error)
            return None

    async def _on_callback(self, query: CallbackQuery | PlainObject, event_update) -> None:
        # Answer first so the button stops spinning even if handling takes a while.
        await self._safely(self.bot.answer_callback_query(query.id))
        msg = callback_to_incoming(event_update, query)
        await self._deliver(msg, await self.app.dispatcher.dispatch(msg, durable=True))

    async def _on_pre_checkout(self, query: PreCheckoutQuery, event_update: Update) -> None:
        answer = await answer_pre_checkout(self.app, pre_checkout_to_incoming(event_update, query))
        await self._safely(
            self.bot.answer_pre_checkout_query(
                query.id, ok=answer.ok, error_message=None if answer.ok else answer.error
            )
        )

    async def _deliver(self, msg: Incoming, outputs) -> None:
        await deliver(self.app, self, msg, outputs)

    async def _safely(self, call) -> None:
        try:
            await call
        except (AiogramError, OSError, TimeoutError) as error:
            log.info("ignored Telegram error: %s", error)

    async def send(self, user_ref: str, reply: Reply) -> None:
        """Send one reply; every Telegram error becomes one of the core's ChannelError kinds
        (a non-JSON answer and a 401 included)."""
        try:
            chat_id = int(user_ref)
        except ValueError as error:
            raise RejectedMessage(f"not a Telegram chat id: {user_ref[:32]!r}") from error
        try:
            await self._send(chat_id, reply)
        except TelegramRetryAfter as error:
            raise RateLimited(error.retry_after, str(error)) from error
        except TelegramForbiddenError as error:
            raise Unreachable(str(error)) from error
        except TelegramBadRequest as error:
            raise RejectedMessage(str(error)) from error
        except TelegramUnauthorizedError as error:
            raise Unauthorized(str(error)) from error
        except (TelegramAPIError, AiogramError, OSError, TimeoutError) as error:
            raise ChannelError(f"{type(error).__name__}: {error}") from error

    async def _send(self, chat_id: int, reply: Reply) -> None:
        rows = keyboard_rows(reply)
        for part in reply_parts(reply):
            if part.kind == "message":
                await self._call("sendMessage", message_params(chat_id, part, rows))
                continue
            markup = keyboard(reply) if part.keyboard else None
            await send_part(self.bot, chat_id, part, markup, BufferedInputFile)
        if reply.invoice is not None:
            invoice = reply.invoice
            await self.bot.send_invoice(
                chat_id,
                title=clean_text(invoice.title)[:32],
                description=clean_text(invoice.description)[:255],
                payload=invoice.payload,
                currency=invoice.currency,
                prices=[LabeledPrice(label=invoice.label, amount=invoice.amount)],
            )

    async def refund(self, user_ref: str, charge_id: str) -> None:
        """Refund a Stars payment."""
        try:
            await self.bot.refund_star_payment(int(user_ref), charge_id)
        except (TelegramAPIError, AiogramError, OSError, TimeoutError) as error:
            raise ChannelError(f"{type(error).__name__}: {error}") from error

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
        if not self._webhook_secret():  # Settings refuse this too; never serve an open door
            raise RuntimeError("webhook mode needs TELEGRAM_WEBHOOK_SECRET")
        web_app.router.add_post(WEBHOOK_PATH, self._webhook)

    async def _webhook(self, request: web.Request) -> web.Response:
        """One update per POST: 403 without the right secret, 400 for a body that is not a JSON
        object; 200 only after the update committed (Telegram re-sends on anything else)."""
        raw = await read_webhook(request, self._webhook_secret())
        if isinstance(raw, int):
            return web.Response(status=raw)
        update = self.parse_update(raw)
        if update is not None:  # in its chat's lane: in order, and as many at once as polling
            await self._lanes.run_in_chat(update, functools.partial(self._feed, update))
        return web.json_response({})

    def parse_update(self, raw: object, cleaned: bool = False) -> Update | PlainObject | None:
        """A raw update (strings cleaned unless `cleaned`) as a PlainObject when it is plain,
        else as aiogram's Update, or None when it cannot be parsed: logged once, counted in
        `skipped_updates`."""
        context = {"bot": self.bot}

        def parse(data):
            return plain_update(data) or Update.model_validate(data, context=context)

        update = parse_update(raw, parse, cleaned)
        if update is None:
            self.skipped_updates += 1
        return update

    async def _feed(self, update: Update | PlainObject) -> None:
        """Handle one update; a failure is logged and counted (the dispatcher already sent the
        learner its apology when a handler failed)."""
        try:
            if update.message is not None:
                await self._on_message(update.message, update)
            elif update.callback_query is not None:
                await self._on_callback(update.callback_query, update)
            elif update.pre_checkout_query is not None:
                await self._on_pre_checkout(update.pre_checkout_query, update)
        except Exception:
            self.failed_updates += 1
            log.exception("update %s failed", update.update_id)

    async def handle_batch(self, raw_updates: list) -> int | None:
        """Handle one getUpdates batch: pre-checkout queries at once (their 10 s deadline), the
        others in chat lanes (chats concurrently, each chat in order); returns once all of it
        committed, with the next offset (None for an empty batch). Unparsable updates are
        skipped."""
        ids = [
            u["update_id"]
            for u in raw_updates
            if isinstance(u, dict) and isinstance(u.get("update_id"), int)
        ]
        parsed = [u for u in (self.parse_update(raw) for raw in raw_updates) if u is not None]
        work = [asyncio.ensure_future(self._feed(u)) for u in parsed if u.pre_checkout_query] + [
            self._lanes.run(lane_of(u), functools.partial(self._feed, u))
            for u in parsed
            if u.pre_checkout_query is None
        ]
        await asyncio.gather(*work)
        return max(ids) + 1 if ids else None

    async def _call(self, method: str, params: dict, timeout: float | None = None):
        """One Bot API call with a JSON body through the bot's HTTP session, without aiogram's
        method and result models: for getUpdates (whose items are parsed one by one, so one
        bad update cannot fail the batch) and text messages, the hot path, where building and
        validating those models cost about as much as the rest of an update's handling."""
        http = await self.bot.session.create_session()
        url = self.bot.session.api.api_url(self.bot.token, method)
        total = ClientTimeout(total=timeout or self.bot.session.timeout)
        try:
            async with http.post(url, json=params, timeout=total) as resp:
                body = await resp.read()
                status = resp.status
        except ClientError as error:
            raise ChannelError(f"{method}: {type(error).__name__}: {error}") from error
        return api_result(method, status, body)

    async def _get_updates(self, offset: int | None) -> list:
        """One raw getUpdates call."""
        params: dict = {"timeout": POLL_TIMEOUT, "allowed_updates": ALLOWED_UPDATES}
        if offset is not None:
            params["offset"] = offset
        result = await self._call("getUpdates", params, POLL_TIMEOUT + 15)
        return result if isinstance(result, list) else []

    async def _poll(self) -> None:
        """Long polling. Normal traffic: a batch is handled (pre-checkouts first), then confirmed
        by the next getUpdates, so a crash re-fetches it. A backlog (a full batch, or updates
        still queued): the batch is written to the database before the next getUpdates
        confirms it, handled in order by `_work`, and polling looks further ahead, so a
        pre-checkout query (read-only, 10 s deadline) behind hundreds of texts is answered at
        once. A crash loses nothing either way: queued updates are handled after the restart.
        A failed fetch is retried with backoff; an unparsable update is skipped and counted."""
        offset: int | None = None
        backoff = 1.0
        async with self.app.uow() as uow:
            left = await uow.inbox.queued_updates(QUEUE_PREFIX)
        for number, raw in left:
            self._unfinished += 1
            self._queue.put_nowait((number, raw))
        self._worker = asyncio.create_task(self._work(), name="telegram-updates")
        while not self._stopping.is_set():
            try:
                batch = await self._get_updates(offset)
            except asyncio.CancelledError:
                raise
            except RateLimited as error:
                await self._pause(float(error.retry_after))
                continue
            except Exception as error:
                log.warning("getUpdates failed (%s); retrying in %s s", error, backoff)
                await self._pause(backoff)
                backoff = min(backoff * 2, MAX_POLL_BACKOFF)
                continue
            backoff = 1.0
            try:
                if len(batch) < BACKLOG_BATCH and self._unfinished == 0:
                    # Normal traffic: handle, then confirm with the next getUpdates. Shielded:
                    # a stop lets the batch finish, so no reply is sent and left unsettled.
                    self._batch = asyncio.create_task(self.handle_batch(batch))
                    next_offset = await asyncio.shield(self._batch)
                else:  # a backlog: keep it in the database, confirm it, look further ahead
                    next_offset = await self._enqueue(batch)
            except Exception:  # the database refused: fetch the same batch again
                log.exception("could not queue %s updates; retrying", len(batch))
                await self._pause(backoff)
                continue
            if next_offset is not None:
                offset = next_offset
            while self._queue.qsize() > MAX_QUEUED and not self._stopping.is_set():
                await self._pause(0.05)

    async def _enqueue(self, batch: list) -> int | None:
        ids = [
            u["update_id"]
            for u in batch
            if isinstance(u, dict) and isinstance(u.get("update_id"), int)
        ]
        keep: list[tuple[int, dict]] = []
        for raw in batch:
            number = raw.get("update_id") if isinstance(raw, dict) else None
            if not isinstance(number, int):
                self.parse_update(raw)  # logs and counts it
                continue
            if "pre_checkout_query" in raw:
                update = self.parse_update(raw)
                if update is not None:
                    task = asyncio.create_task(self._feed(update))
                    self._side_tasks.add(task)
                    task.add_done_callback(self._side_tasks.discard)
                continue
            keep.append((number, clean_update(raw)))
        if keep:
            async with self.app.uow() as uow:
                await uow.inbox.queue_updates(QUEUE_PREFIX, keep)
                await uow.commit()
            for item in keep:
                self._unfinished += 1
                self._queue.put_nowait(item)
        return max(ids) + 1 if ids else None

    async def _work(self) -> None:
        """Handle queued updates in chat lanes (chats concurrently, each chat in order, at most
        `MAX_IN_FLIGHT` taken at once); forget the handled ones in small groups."""
        while True:
            if self._queue.empty() or len(self._handled) >= 50:
                await self._forget()
            if self._queue.empty() and self._stopping.is_set():
                await self._lanes.drain()
                await self._forget()
                return
            await self._lanes.wait_for_room(MAX_IN_FLIGHT)
            try:  # no timer when an update is waiting (a backlog takes thousands in a row)
                number, raw = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                try:
                    number, raw = await asyncio.wait_for(self._queue.get(), 0.2)
                except TimeoutError:
                    continue
            update = self.parse_update(raw, cleaned=True)  # by `_enqueue`
            if update is None:
                self._queued_done(number)
                continue
            self._lanes.run(lane_of(update), functools.partial(self._feed_queued, number, update))

    async def _feed_queued(self, number: int, update: Update | PlainObject) -> None:
        try:
            await self._feed(update)
        finally:
            self._queued_done(number)

    def _queued_done(self, number: int) -> None:
        self._unfinished -= 1
        self._handled.append(number)

    async def _forget(self) -> None:
        numbers, self._handled = self._handled, []
        if not numbers:
            return
        try:
            async with self.app.uow() as uow:
                await uow.inbox.unqueue_updates(QUEUE_PREFIX, numbers)
                await uow.commit()
        except Exception:  # they are handled again after a restart; the inbox drops them
            log.exception("could not forget %s handled updates", len(numbers))

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def start(self) -> None:
        """Publish commands, then poll, or register the webhook when TELEGRAM_WEBHOOK_URL is set
        (its route is on the web server: `add_routes`)."""
        await self.set_commands()
        settings = self.app.settings
        if settings.telegram_webhook_url:
            secret = self._webhook_secret()
            if not secret:
                raise RuntimeError("webhook mode needs TELEGRAM_WEBHOOK_SECRET")
            await self.bot.set_webhook(
                settings.telegram_webhook_url,
                secret_token=secret,
                allowed_updates=ALLOWED_UPDATES,
            )
        else:
            await self.bot.delete_webhook(drop_pending_updates=False)
            self._stopping.clear()
            self._polling = asyncio.create_task(self._poll(), name="telegram-polling")

    async def abort(self) -> None:
        """Stop at once, as a crash would: nothing in flight finishes, nothing more is confirmed
        (the next process fetches those updates again, or finds them in the durable queue)."""
        tasks = [
            t
            for t in (self._polling, self._batch, self._worker, *self._lanes.tasks)
            if t is not None
        ]
        tasks += list(self._side_tasks)
        self._polling = self._worker = None
        self._stopping.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.bot.session.close()

    async def stop(self) -> None:
        """Stop polling (after the batch at hand) and close the HTTP session."""
        polling, self._polling = self._polling, None
        self._stopping.set()
        if polling is not None:  # safe at any point: nothing fetched is confirmed yet
            batch = self._batch
            if batch is not None and not batch.done():
                await asyncio.wait({batch}, timeout=5.0)
            polling.cancel()
            await asyncio.gather(polling, return_exceptions=True)
            if batch is not None and not batch.done():
                batch.cancel()
                await asyncio.gather(batch, return_exceptions=True)
        worker, self._worker = self._worker, None
        if worker is not None:  # the updates still queued are handled after the restart
            while not self._queue.empty():
                self._queue.get_nowait()
            try:
                await asyncio.wait_for(asyncio.shield(worker), 5.0)
            except TimeoutError:
                worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
        if self._side_tasks:
            await asyncio.gather(*self._side_tasks, return_exceptions=True)
        await self.bot.session.close()
