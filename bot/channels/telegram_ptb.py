"""Telegram through python-telegram-bot 22: the second Telegram runtime (`TELEGRAM_RUNTIME=ptb`).

Behaviour is the aiogram adapter's (`telegram_aiogram.py`): the same conversion to `Incoming`
(`telegram_common`), the same core, inline keyboards, Stars invoices and refunds, setMyCommands
in zh and en, the same error mapping for the sender. What differs is how updates come in:

* **Confirmed only after commit.** PTB's own `Updater` confirms an update (advances the
  getUpdates offset) as soon as it is queued, so a crash loses it. We do not use the Updater:
  `_poll` calls `bot.get_updates(offset=…)` itself and the offset only ever moves past updates
  whose `Application.process_update` returned — i.e. whose unit of work committed and whose
  replies were sent. An update in flight when the process dies is fetched again by the next
  process; for one that had committed, the dispatch (durable, as on aiogram) returns the
  stored replies not yet sent, so a crash between commit and send loses no reply. In webhook
  mode `/telegram` on our one web server answers 200 only after processing (500 if processing
  failed: Telegram retries); 403 without the secret, 400 for a body that is not JSON.
* **Robust intake, as on aiogram** (`telegram_common`): strings are cleaned of lone
  surrogates before PTB parses an update; an update that cannot be parsed is logged once,
  skipped (its offset confirmed) and counted in `skipped_updates`.
* **Pre-checkout never waits.** A `pre_checkout_query` is dispatched at once in its own task;
  other updates run in chat lanes (`telegram_common.ChatLanes`: a few chats at a time, each
  chat's updates in order; SQLite writers take turns for its one write lock). While updates are in
  flight the poller keeps polling every `BUSY_TICK` to see new ones; Telegram keeps returning the
  unconfirmed ones, which are skipped unparsed. (getUpdates returns at most 100 updates from the
  offset, so a pre-checkout is seen once fewer than 100 unfinished updates are ahead of it.)
* **Nothing of PTB's that must survive a restart:** no JobQueue, no persistence, no
  AIORateLimiter. Rate limits, retries and proactive sends stay in our outbox and sender.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import warnings
from datetime import timedelta

from aiohttp import web
from telegram import (
    BotCommand,
    BotCommandScopeDefault,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputFile,
    LabeledPrice,
    Update,
)
from telegram.constants import ParseMode
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    ContextTypes,
    Defaults,
    MessageHandler,
    PreCheckoutQueryHandler,
    filters,
)
from telegram.warnings import PTBUserWarning

from bot.channels.base import Channel
from bot.channels.ptb_request import AiohttpRequest
from bot.channels.telegram_common import (
    ALLOWED_UPDATES,
    LANES,
    NAME,
    PROVIDER,
    WEBHOOK_PATH,
    ChatLanes,
    answer_pre_checkout,
    callback_to_incoming,
    check_update_shape,
    clean_text,
    command_descriptions,
    deliver,
    keyboard_rows,
    lane_of,
    message_params,
    message_to_incoming,
    parse_update,
    picture_to_fetch,
    pre_checkout_to_incoming,
    read_webhook,
    reply_parts,
    send_part,
    update_id_of,
    webhook_secret,
)
from bot.core import (
    ChannelError,
    RateLimited,
    RejectedMessage,
    Reply,
    Unreachable,
)
from bot.i18n import LOCALES, STARS

log = logging.getLogger(__name__)

#: Long-poll timeout (s) while nothing is in flight.
POLL_TIMEOUT = 25
#: Seconds a getUpdates answer may take beyond its long-poll timeout.
READ_TIMEOUT = 10.0
#: Seconds between polls while updates are in flight (Telegram keeps returning those).
BUSY_TICK = 0.1
#: Attempts at an update whose processing raised (the inbox makes a retry safe).
ATTEMPTS = 3
RETRY_DELAY = 0.5
#: Seconds `stop` waits for updates in flight before abandoning them (they come again).
STOP_GRACE = 10.0


def keyboard(reply: Reply) -> InlineKeyboardMarkup | None:
    """Button rows as an inline keyboard."""
    rows = keyboard_rows(reply)
    if not rows:
        return None
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(**button) for button in row] for row in rows]
    )


def bot_commands(locale: str, commands) -> list[BotCommand]:
    """The learner commands with their descriptions in one locale."""
    return [
        BotCommand(name, description)
        for name, description in command_descriptions(locale, commands)
    ]


def retry_seconds(error: RetryAfter) -> float:
    """`retry_after` in seconds (PTB 22 moves it from int to timedelta)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = error.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class UpdateTracker:
    """Which fetched updates are done, and the getUpdates offset that is safe to send.

    The offset is the lowest update id not yet done: every update below it has been processed
    (committed); everything from it on is fetched again after a crash.
    """

    def __init__(self) -> None:
        self.confirmed_below: int | None = None
        self._open: dict[int, bool] = {}

    def offset(self) -> int | None:
        """What to send as getUpdates `offset` now."""
        offset = self.confirmed_below
        for update_id in sorted(self._open):
            if not self._open[update_id]:
                return update_id
            offset = update_id + 1
        return offset

    def confirmed(self, offset: int | None) -> None:
        """Telegram accepted `offset`: forget the updates below it."""
        if offset is None:
            return
        self.confirmed_below = offset
        for update_id in [u for u in self._open if u < offset]:
            del self._open[update_id]

    def is_new(self, update_id: int) -> bool:
        """Not seen yet (neither in flight nor confirmed)."""
        below = self.confirmed_below
        return update_id not in self._open and (below is None or update_id >= below)

    def started(self, update_id: int) -> None:
        """An update was taken for processing."""
        self._open[update_id] = False

    def done(self, update_id: int) -> None:
        """An update's processing returned (committed, replies sent)."""
        if update_id in self._open:
            self._open[update_id] = True

    @property
    def in_flight(self) -> int:
        """Updates taken and not done."""
        return sum(1 for done in self._open.values() if not done)


class PtbChannel(Channel):
    """The Telegram channel on python-telegram-bot; sends replies and refunds Stars payments."""

    name = NAME
    currency = STARS
    payment_provider = PROVIDER

    def __init__(
        self,
        app,
        *,
        poll_timeout: float = POLL_TIMEOUT,
        lanes: int | None = None,
        busy_tick: float = BUSY_TICK,
    ) -> None:
        self.app = app
        settings = app.settings
        api = settings.telegram_api_url.rstrip("/")
        self.application: Application = (
            ApplicationBuilder()
            .token(settings.telegram_bot_token.get_secret_value())
            .base_url(f"{api}/bot")
            .base_file_url(f"{api}/file/bot")
            .defaults(Defaults(parse_mode=ParseMode.HTML))
            .request(AiohttpRequest())
            .get_updates_request(AiohttpRequest(connection_pool_size=1))
            .updater(None)  # we poll ourselves: the offset moves only after commit
            .job_queue(None)  # reminders live in our database, not in PTB's memory
            .build()
        )
        self.bot = self.application.bot
        self.application.add_handler(
            MessageHandler(filters.UpdateType.MESSAGE & filters.ChatType.PRIVATE, self._on_message)
        )
        self.application.add_handler(CallbackQueryHandler(self._on_callback))
        self.application.add_handler(PreCheckoutQueryHandler(self._on_pre_checkout))
        self.application.add_error_handler(self._on_error)
        self.poll_timeout = poll_timeout
        self.busy_tick = busy_tick
        self.tracker = UpdateTracker()
        self._lanes = ChatLanes(lanes or LANES)
        self._checkouts: set[asyncio.Task] = set()
        self._progress = asyncio.Event()
        self._failed: set[int] = set()
        self._polling: asyncio.Task | None = None
        self._stopping = False
        self._initialized = False
        #: Updates skipped because they could not be parsed, and updates whose handling raised
        #: on every attempt (as on aiogram).
        self.skipped_updates = 0
        self.failed_updates = 0

    # ------------------------------------------------------------------ PTB callbacks

    async def _on_message(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.message
        if message is None or message.from_user is None:
            return
        msg = message_to_incoming(update, message)
        if file_id := picture_to_fetch(message):
            msg = dataclasses.replace(msg, image=await self._download(file_id))
        await deliver(self.app, self, msg, await self.app.dispatcher.dispatch(msg, durable=True))

    async def _download(self, file_id: str) -> bytes | None:
        """The bytes of a file the user sent (None when Telegram would not give it)."""
        try:
            return bytes(await (await self.bot.get_file(file_id)).download_as_bytearray())
        except TelegramError as error:
            log.warning("could not download a picture: %s", error)
            return None

    async def _on_callback(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        # Answer first so the button stops spinning even if handling takes a while.
        with contextlib.suppress(BadRequest, NetworkError):
            await query.answer()
        msg = callback_to_incoming(update, query)
        await deliver(self.app, self, msg, await self.app.dispatcher.dispatch(msg, durable=True))

    async def _on_pre_checkout(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.pre_checkout_query
        answer = await answer_pre_checkout(self.app, pre_checkout_to_incoming(update, query))
        try:
            await self.bot.answer_pre_checkout_query(
                query.id, ok=answer.ok, error_message=None if answer.ok else answer.error
            )
        except TelegramError as error:  # too late or already answered: nothing to retry
            log.warning("pre-checkout answer not accepted: %s", error)

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        log.error("processing Telegram update failed", exc_info=context.error)
        if isinstance(update, Update):
            self._failed.add(update.update_id)

    async def process(self, update: Update) -> bool:
        """Run one update through the core; False when processing raised (not committed)."""
        self._failed.discard(update.update_id)
        await self.application.process_update(update)
        if update.update_id in self._failed:
            self._failed.discard(update.update_id)
            return False
        return True

    # ------------------------------------------------------------------ sending

    async def send(self, user_ref: str, reply: Reply) -> None:
        """Send one reply; Telegram errors become the core's ChannelError kinds."""
        try:
            chat_id = int(user_ref)
        except ValueError as error:
            raise RejectedMessage(f"not a Telegram chat id: {user_ref[:32]!r}") from error
        try:
            await self._send(chat_id, reply)
        except RetryAfter as error:
            raise RateLimited(retry_seconds(error), str(error)) from error
        except Forbidden as error:
            raise Unreachable(str(error)) from error
        except BadRequest as error:
            raise RejectedMessage(str(error)) from error
        except TelegramError as error:  # network, timeouts, server errors, conflicts
            raise ChannelError(str(error)) from error

    async def _send(self, chat_id: int, reply: Reply) -> None:
        rows = keyboard_rows(reply)
        for part in reply_parts(reply):
            if part.kind == "message":
                await self._raw("sendMessage", message_params(chat_id, part, rows))
                continue
            markup = keyboard(reply) if part.keyboard else None
            await send_part(self.bot, chat_id, part, markup, InputFile)
        if reply.invoice is not None:
            invoice = reply.invoice
            await self.bot.send_invoice(
                chat_id,
                title=clean_text(invoice.title)[:32],
                description=clean_text(invoice.description)[:255],
                payload=invoice.payload,
                currency=invoice.currency,
                prices=[LabeledPrice(invoice.label, invoice.amount)],
            )

    async def refund(self, user_ref: str, charge_id: str) -> None:
        """Refund a Stars payment."""
        try:
            await self.bot.refund_star_payment(int(user_ref), charge_id)
        except TelegramError as error:
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

    # ------------------------------------------------------------------ webhook

    def _webhook_secret(self) -> str | None:
        return webhook_secret(self.app.settings)

    def add_routes(self, web_app: web.Application) -> None:
        """In webhook mode, serve `/telegram` on the one web application."""
        if not self.app.settings.telegram_webhook_url:
            return
        if not self._webhook_secret():  # Settings refuse this too; never serve an open door
            raise RuntimeError("webhook mode needs TELEGRAM_WEBHOOK_SECRET")
        web_app.router.add_post(WEBHOOK_PATH, self._on_webhook)

    async def _on_webhook(self, request: web.Request) -> web.Response:
        """One update per POST: 403 without the right secret, 400 for a body that is not a JSON
        object, 200 for an update we cannot parse (skipped, counted), and otherwise 200 only
        after the update committed (500 makes Telegram send it again)."""
        raw = await read_webhook(request, self._webhook_secret())
        if isinstance(raw, int):
            return web.Response(status=raw)
        update = self.parse(raw)
        if update is None:
            return web.json_response({})
        # in its chat's lane, as when polling
        done = await self._lanes.run_in_chat(update, functools.partial(self.process, update))
        return web.Response(status=200 if done else 500)

    def _de_json(self, data: dict) -> Update:
        check_update_shape(data)  # PTB's de_json lets a message without chat or date through
        return Update.de_json(data, self.bot)

    def parse(self, raw: object) -> Update | None:
        """A raw update as PTB's Update (strings cleaned: no lone surrogates reach a handler or
        a send), or None when it cannot be parsed: logged once, counted in `skipped_updates`."""
        update = parse_update(raw, self._de_json)
        if update is None:
            self.skipped_updates += 1
        return update

    # ------------------------------------------------------------------ polling

    async def start(self) -> None:
        """Publish commands, then poll, or register the webhook when TELEGRAM_WEBHOOK_URL is set
        (its route is on the web server: `add_routes`)."""
        await self.application.initialize()
        self._initialized = True
        await self.set_commands()
        settings = self.app.settings
        if settings.telegram_webhook_url:
            secret = self._webhook_secret()
            if not secret:
                raise RuntimeError("webhook mode needs TELEGRAM_WEBHOOK_SECRET")
            await self.bot.set_webhook(
                settings.telegram_webhook_url, secret_token=secret, allowed_updates=ALLOWED_UPDATES
            )
            return
        await self.bot.delete_webhook(drop_pending_updates=False)
        self._polling = asyncio.create_task(self._poll(), name="ptb-polling")

    async def _poll(self) -> None:
        delay = 0.0
        while not self._stopping:
            offset = self.tracker.offset()
            busy = self.tracker.in_flight > 0
            try:
                raw = await self._get_updates(offset, 0 if busy else self.poll_timeout)
            except RetryAfter as error:
                await asyncio.sleep(retry_seconds(error))
                continue
            except TelegramError as error:  # network trouble, 409 conflict, 5xx
                delay = min(30.0, max(0.5, delay * 2))
                log.warning("getUpdates failed (%s); again in %.1f s", error, delay)
                await asyncio.sleep(delay)
                continue
            delay = 0.0
            self.tracker.confirmed(offset)
            # Payments first: a pre-checkout answer has a 10 s deadline.
            fresh = self._fresh(raw)
            fresh.sort(key=lambda u: u.pre_checkout_query is None)
            for update in fresh:
                self._schedule(update)
            if self.tracker.in_flight:
                # Updates are in flight: look again after a tick for new ones (a pre-checkout
                # must not wait for a slow handler), or as soon as all are done.
                # (asyncio.timeout, not wait_for: on 3.11 wait_for can turn a cancel that
                # meets its timeout into TimeoutError, and the loop would never stop.)
                self._progress.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.busy_tick):
                        await self._progress.wait()

    def _fresh(self, raw: list) -> list[Update]:
        """The new updates of a getUpdates answer, parsed one by one (the ones in flight come
        back on every poll and are not parsed again). An unparsable update is skipped and
        counted, and marked done so the offset moves past it: one bad update never stalls
        polling."""
        fresh = []
        for item in raw if isinstance(raw, list) else []:
            number = update_id_of(item)
            if number is None or not self.tracker.is_new(number):
                if number is None:
                    self.parse(item)  # logs and counts it; nothing to confirm
                continue
            update = self.parse(item)
            if update is None:
                self.tracker.started(number)
                self.tracker.done(number)
                continue
            fresh.append(update)
        return fresh

    async def _get_updates(self, offset: int | None, timeout: float) -> list[dict]:
        """getUpdates as raw JSON, on PTB's own getUpdates connection pool."""
        kwargs = {"timeout": timeout, "allowed_updates": ALLOWED_UPDATES}
        if offset is not None:
            kwargs["offset"] = offset
        return await self._raw("getUpdates", kwargs, read_timeout=READ_TIMEOUT + timeout)

    async def _raw(self, method: str, params: dict, **timeouts):
        """A Bot API call whose answer stays JSON: getUpdates (parsed one by one, so one bad
        update cannot fail the batch) and text messages, where building PTB's Message of the
        answer cost a fifth of an update's CPU. Errors are PTB's, as from its own methods."""
        with warnings.catch_warnings():  # "use Bot.send_message": we want the JSON unparsed
            warnings.simplefilter("ignore", PTBUserWarning)
            return await self.bot.do_api_request(method, api_kwargs=params, **timeouts)

    def _schedule(self, update: Update) -> None:
        self.tracker.started(update.update_id)
        if update.pre_checkout_query is None:
            self._lanes.run(lane_of(update), functools.partial(self._run, update))
            return
        task = asyncio.create_task(self._run(update), name=f"ptb-update-{update.update_id}")
        self._checkouts.add(task)
        task.add_done_callback(self._checkouts.discard)

    @property
    def _tasks(self) -> set[asyncio.Task]:
        return self._lanes.tasks | self._checkouts

    async def _run(self, update: Update) -> None:
        await self._attempts(update)
        self.tracker.done(update.update_id)
        if not self.tracker.in_flight:
            self._progress.set()

    async def _attempts(self, update: Update) -> None:
        for attempt in range(1, ATTEMPTS + 1):
            if await self.process(update):
                return
            if attempt < ATTEMPTS:
                await asyncio.sleep(RETRY_DELAY * attempt)
        self.failed_updates += 1
        log.error("giving up on update %s after %s attempts", update.update_id, ATTEMPTS)

    async def abort(self) -> None:
        """Stop at once, as a crash would: updates in flight neither commit nor get confirmed."""
        tasks = [t for t in (self._polling, *self._tasks) if t is not None]
        self._polling, self._stopping = None, True
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._shutdown()

    async def stop(self) -> None:
        """Stop polling, let updates in flight finish, confirm them, close the HTTP pools."""
        polling, self._polling = self._polling, None
        self._stopping = True
        if polling is not None:
            polling.cancel()
            await asyncio.gather(polling, return_exceptions=True)
            if self._tasks:
                _, late = await asyncio.wait(set(self._tasks), timeout=STOP_GRACE)
                for task in late:  # abandoned: fetched again by the next process
                    task.cancel()
                await asyncio.gather(*late, return_exceptions=True)
            offset = self.tracker.offset()
            if offset is not None and offset != self.tracker.confirmed_below:
                with contextlib.suppress(TelegramError):
                    await self.bot.get_updates(offset=offset, timeout=0, limit=1)
        await self._shutdown()

    async def _shutdown(self) -> None:
        if self._initialized:
            self._initialized = False
            await self.application.shutdown()
