"""What both Telegram runtimes (aiogram and python-telegram-bot) share.

Bot API objects are read by their Bot API field names (`update_id`, `from_user`, `text`,
`successful_payment.telegram_payment_charge_id`, …), which aiogram's and PTB's types both use,
so one conversion serves both runtimes and their behaviour cannot drift apart.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import html
import json
import logging
import re
from collections.abc import Callable, Iterable
from typing import Any, Literal, TypeVar

from bot.core import (
    ChannelError,
    Incoming,
    PaymentInfo,
    PreCheckoutAnswer,
    RateLimited,
    Recipient,
    RejectedMessage,
    Reply,
    Unreachable,
    settle_reply,
)
from bot.i18n import Translator, has_message

log = logging.getLogger(__name__)
T = TypeVar("T")
NAME = "telegram"
PROVIDER = "telegram_stars"
MAX_TEXT = 4096
MAX_CAPTION = 1024
MAX_BUTTON_LABEL = 64
#: Larger pictures are not fetched (a course cover is at most 2 MB; bots may fetch 20 MB).
MAX_PICTURE_BYTES = 2_500_000
ALLOWED_UPDATES = ["message", "callback_query", "pre_checkout_query"]
WEBHOOK_PATH = "/telegram"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


#: Chats handled at the same time (updates of one chat always one after another). SQLite writers
#: take turns (`storage.db.WriteTurns`), so lanes overlap one update's sends and reads with
#: another's transaction rather than fight over the write lock. Sixteen rather than four: the
#: updates waiting for one turn share its group commit (bench/inbound: about ten per commit,
#: against two or three with four lanes).
LANES = 16


def lane_of(update: Any) -> str:
    """The ordering key of an update: its chat (a button: its message's chat, else the user)."""
    query = update.callback_query
    message = update.message or (query.message if query is not None else None)
    chat = getattr(message, "chat", None)
    if chat is not None:
        return f"c{chat.id}"
    user = query.from_user if query is not None else None
    return f"c{user.id}" if user is not None else f"x{update.update_id}"


class ChatLanes:
    """Runs updates of different chats concurrently, at most `width` at a time, and the updates
    of one chat one after another, in the order they were given."""

    def __init__(self, width: int = LANES) -> None:
        self._slots = asyncio.Semaphore(width)
        self._tails: dict[str, asyncio.Task] = {}
        #: Every task given and not finished.
        self.tasks: set[asyncio.Task] = set()
        self._finished = asyncio.Event()  # set when a task finishes

    def run(self, lane: str, work: Callable[[], Any]) -> asyncio.Task:
        """Start `work()` (a coroutine function) after the lane's previous work."""
        task = asyncio.create_task(self._in_lane(lane, self._tails.get(lane), work))
        self._tails[lane] = task
        self.tasks.add(task)
        task.add_done_callback(self._done)
        return task

    async def run_in_chat(self, update: Any, work: Callable[[], Any]) -> Any:
        """`work()` for one update in its chat's lane, or at once for a pre-checkout query (it
        never waits in a lane); its result."""
        if update.pre_checkout_query is not None:
            return await work()
        return await self.run(lane_of(update), work)

    def _done(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        self._finished.set()

    async def _in_lane(self, lane: str, after: asyncio.Task | None, work) -> Any:
        try:
            if after is not None:
                await asyncio.gather(after, return_exceptions=True)
            async with self._slots:
                return await work()
        finally:
            if self._tails.get(lane) is asyncio.current_task():
                del self._tails[lane]

    async def wait_for_room(self, limit: int) -> None:
        """Return once fewer than `limit` tasks are unfinished."""
        # an event rather than asyncio.wait: that hooks into every task in flight, once per
        # update taken when the lanes are full (a backlog)
        while len(self.tasks) >= limit:
            self._finished.clear()
            await self._finished.wait()

    async def drain(self) -> None:
        """Wait until every task given has finished."""
        while self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)


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


def picture_to_fetch(message: Any) -> str | None:
    """The file_id of the largest size of a picture that fits `MAX_PICTURE_BYTES` (a cover
    captioned `/cover 3`, or sent after `/cover 3`), or None."""
    fitting = [p for p in message.photo or () if (p.file_size or 0) <= MAX_PICTURE_BYTES]
    if not fitting:
        return None
    return max(fitting, key=lambda p: p.width * p.height).file_id


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


#: The file name a reply's image is uploaded under.
PHOTO_NAME = "chart.png"


@dataclasses.dataclass(frozen=True)
class Part:
    """One Bot API send a reply becomes: a message, a photo or a document (HTML made safe)."""

    kind: Literal["message", "photo", "document"]
    text: str | None
    filename: str = ""
    data: bytes = b""
    keyboard: bool = False  # the reply's inline keyboard goes on this part
    paid: bool = False  # sent with allow_paid_broadcast (`Reply.paid_broadcast`)


def reply_parts(reply: Reply) -> list[Part]:
    """The sends of a reply (its invoice aside), the keyboard on the last one.

    An image is a photo captioned with the text; a document follows it uncaptioned, or is
    captioned with the text itself when it has no image and the text fits a caption (a longer
    text goes first as messages). Text alone is split into messages.
    """
    parts: list[Part] = []
    text = reply.text or ""
    if reply.image is not None:
        parts.append(Part("photo", _caption(text), PHOTO_NAME, reply.image))
        text = ""
    if reply.document is not None and len(text) <= MAX_CAPTION:
        caption, text = _caption(text), ""
    else:
        caption = None
    if text:
        parts += [Part("message", safe_html(piece)) for piece in split_text(text)]
    if reply.document is not None:
        name = reply.document.filename or "document"
        parts.append(Part("document", caption, name, reply.document.data))
    if parts:
        parts[-1] = dataclasses.replace(parts[-1], keyboard=True)
    if reply.paid_broadcast:
        parts = [dataclasses.replace(part, paid=True) for part in parts]
    return parts


def keyboard_rows(reply: Reply) -> list[list[dict]]:
    """Button rows as the Bot API's inline keyboard rows (empty without buttons)."""
    return [
        [
            {"text": clean_text(b.label)[:MAX_BUTTON_LABEL] or "·", "callback_data": b.payload}
            for b in row
        ]
        for row in reply.buttons
    ]


def message_params(chat_id: int, part: Part, rows: list[list[dict]]) -> dict:
    """sendMessage's parameters for one text part (HTML, the keyboard on the part that has
    it)."""
    params: dict = {"chat_id": chat_id, "text": part.text, "parse_mode": "HTML"}
    if rows and part.keyboard:
        params["reply_markup"] = {"inline_keyboard": rows}
    if part.paid:
        params["allow_paid_broadcast"] = True
    return params


async def send_part(bot: Any, chat_id: int, part: Part, markup: Any, upload: Any) -> None:
    """Send one part through a runtime's bot (aiogram and PTB share the method names and
    arguments); `upload(data, filename=…)` is the runtime's file class."""
    paid = True if part.paid else None
    if part.kind == "message":
        await bot.send_message(chat_id, part.text, reply_markup=markup, allow_paid_broadcast=paid)
        return
    send = bot.send_photo if part.kind == "photo" else bot.send_document
    await send(
        chat_id,
        upload(part.data, filename=part.filename),
        caption=part.text,
        reply_markup=markup,
        allow_paid_broadcast=paid,
    )


def _caption(text: str) -> str | None:
    return safe_html(text[:MAX_CAPTION]) if text else None


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


#: A direct reply that meets 429 waits `retry_after` up to this long, then goes to the outbox.
DIRECT_RETRY_MAX_SECONDS = 10.0
DIRECT_RETRIES = 3


def clean_text(value: str) -> str:
    """Text with lone surrogates (and other unencodable code points) replaced by U+FFFD;
    a surrogate pair left split by a JSON decoder is joined back; NUL characters (which
    PostgreSQL text refuses) are dropped."""
    value = value.replace("\x00", "")
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def clean_update(raw: Any) -> Any:
    """A raw update (decoded JSON) with every string cleaned by `clean_text`."""
    if isinstance(raw, str):
        return clean_text(raw)
    if isinstance(raw, dict):
        return {clean_update(k): clean_update(v) for k, v in raw.items()}
    if isinstance(raw, list):
        return [clean_update(v) for v in raw]
    return raw


def update_id_of(raw: Any) -> int | None:
    """The `update_id` of a raw update, or None when it has none (or not an integer)."""
    number = raw.get("update_id") if isinstance(raw, dict) else None
    return number if isinstance(number, int) and not isinstance(number, bool) else None


#: The Bot API's required fields (and their JSON types) of the updates we take. PTB's de_json
#: accepts an update without them and fails later, inside a handler; aiogram's models refuse it.
_REQUIRED: dict[str, dict[str, type | tuple[type, ...]]] = {
    "message": {"message_id": int, "date": int, "chat": dict},
    "callback_query": {"id": str, "from": dict, "chat_instance": str},
    "pre_checkout_query": {
        "id": str,
        "from": dict,
        "currency": str,
        "total_amount": int,
        "invoice_payload": str,
    },
}


def check_update_shape(raw: Any) -> None:
    """ValueError naming the first required field of a raw update that is missing or of the
    wrong type (a JSON object, an integer update_id, and for a message, a button press or a
    pre-checkout query the fields the Bot API always sends)."""
    if not isinstance(raw, dict) or update_id_of(raw) is None:
        raise ValueError("not an update object with an integer update_id")
    for kind, fields in _REQUIRED.items():
        body = raw.get(kind)
        if body is None:
            continue
        if not isinstance(body, dict):
            raise ValueError(f"{kind} is not an object")
        for name, types in fields.items():
            value = body.get(name)
            if not isinstance(value, types) or isinstance(value, bool):
                raise ValueError(f"{kind}.{name} is missing or not a {types.__name__}")
        for name in ("chat", "from"):
            inner = body.get(name)
            if inner is not None and not isinstance((inner or {}).get("id"), int):
                raise ValueError(f"{kind}.{name}.id is missing or not an integer")


class PlainObject:
    """A Bot API object of a plain update (`plain_update`) read by attribute, as the runtimes'
    models are read: `from` is `from_user`, a field it lacks is None, inner objects are
    PlainObjects too."""

    __slots__ = ("_data",)

    def __init__(self, data: dict) -> None:
        self._data = data

    def __getattr__(self, name: str) -> Any:
        value = self._data.get("from" if name == "from_user" else name)
        return PlainObject(value) if isinstance(value, dict) else value


#: The fields of a plain update (a text message or a button press) and their JSON types:
#: those the handlers read, type-checked, and the others that may come with them.
_PLAIN_FIELDS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "message": {
        "message_id": int,
        "date": int,
        "chat": dict,
        "from": dict,
        "text": str,
        "entities": list,
        "link_preview_options": dict,
    },
    "callback_query": {
        "id": str,
        "from": dict,
        "chat_instance": str,
        "data": str,
        "message": dict,
    },
}
_PLAIN_PARTIES: dict[str, type | tuple[type, ...]] = {
    "id": int,
    "type": str,
    "first_name": str,
    "last_name": str,
    "language_code": str,
}


def _typed(body: dict, fields: dict[str, type | tuple[type, ...]], exhaustive: bool) -> bool:
    for name, value in body.items():
        types = fields.get(name)
        if types is None:
            if exhaustive:
                return False
        elif not isinstance(value, types) or isinstance(value, bool):
            return False
    return True


def plain_update(raw: Any) -> PlainObject | None:
    """A text message or a button press in a private chat, read as it is (a PlainObject):
    building the runtime's models of those costs more than the rest of their handling but
    for the database. None for any other update, which the runtime's models read (replies,
    pictures, payments, pre-checkout queries, groups, fields we do not know)."""
    if not isinstance(raw, dict) or update_id_of(raw) is None or len(raw) != 2:
        return None
    kind = "message" if "message" in raw else "callback_query"
    body = raw.get(kind)
    if not isinstance(body, dict) or not _typed(body, _PLAIN_FIELDS[kind], exhaustive=True):
        return None
    for name in ("from", "chat"):
        party = body.get(name)
        if party is not None and not _typed(party, _PLAIN_PARTIES, exhaustive=False):
            return None
    try:
        check_update_shape(raw)
    except ValueError:
        return None  # the runtime's parser says what is wrong
    if kind == "message" and (body.get("chat") or {}).get("type") != "private":
        return None
    return PlainObject(raw)


def parse_update(raw: Any, parse: Callable[[Any], T], cleaned: bool = False) -> T | None:
    """A raw update, its strings cleaned (`clean_update`, unless `cleaned` says they were), as
    the runtime's Update (`parse`), or None when the runtime cannot parse it (no chat, no
    date, a string date, …): logged once here; the caller counts it, confirms its offset and
    goes on."""
    try:
        return parse(raw if cleaned else clean_update(raw))
    except Exception as error:  # pydantic's ValidationError, PTB's KeyError/TypeError, …
        first = (str(error).splitlines() or [type(error).__name__])[0][:200]
        log.warning("skipped unparsable update %s: %s", update_id_of(raw), first)
        return None


def webhook_secret(settings) -> str | None:
    """TELEGRAM_WEBHOOK_SECRET, or None."""
    secret = settings.telegram_webhook_secret
    return secret.get_secret_value() if secret else None


async def read_webhook(request, secret: str | None) -> dict | int:
    """The JSON object a webhook POST carries, or the HTTP status to answer instead: 403
    without the right secret (always, when none is configured), 400 for a body that is not
    a JSON object. One log line each."""
    given = request.headers.get(SECRET_HEADER, "")
    if not secret or not hmac.compare_digest(given.encode(), secret.encode()):
        log.warning("webhook: refused a request without the right secret")
        return 403
    try:
        raw = json.loads(await request.read())
    except ValueError:  # includes UnicodeDecodeError
        log.warning("webhook: body is not JSON; answered 400")
        return 400
    if not isinstance(raw, dict):
        log.warning("webhook: body is not a JSON object; answered 400")
        return 400
    return raw


async def answer_pre_checkout(app, msg: Incoming) -> PreCheckoutAnswer:
    """The answer to a pre-checkout query: the handler's, or a decline with a reason when the
    dispatch failed (the database is down, say): better now than after Telegram's deadline."""
    try:
        outputs = await app.dispatcher.dispatch(msg)
    except Exception:
        log.exception("pre-checkout %s failed", msg.update_key)
        outputs = []
    answer = next((o for o in outputs if isinstance(o, PreCheckoutAnswer)), None)
    if answer is None:
        return PreCheckoutAnswer(False, "Please try again in a moment.")
    return PreCheckoutAnswer(answer.ok, clean_text(answer.error or "")[:255])


_TAGS = "b|strong|i|em|u|ins|s|strike|del|code|pre|a|tg-spoiler|span|blockquote|tg-emoji"
_TAG = re.compile(rf"<(/?)({_TAGS})(\s[^<>]*)?>", re.IGNORECASE)
_ENTITY = re.compile(r"&(#\d{1,7}|#x[0-9a-fA-F]{1,6}|lt|gt|amp|quot);")


def safe_html(text: str) -> str:
    """Text valid for Telegram's HTML parse mode, whatever the template or data put in it.

    Tags Telegram supports are kept (when they nest properly); every other `<`, `>` and `&`
    is escaped, so a usage line such as `/faq <question_id>` shows literally instead of being
    refused by Telegram. Text whose supported tags do not nest is sent with all tags escaped.
    """
    text = clean_text(text)
    out: list[str] = []
    stack: list[str] = []
    balanced = True
    pos = 0
    for match in _TAG.finditer(text):
        out.append(_escape_plain(text[pos : match.start()]))
        closing, name = match.group(1), match.group(2).lower()
        if closing:
            if not stack or stack[-1] != name:
                balanced = False
            else:
                stack.pop()
        else:
            stack.append(name)
        out.append(match.group(0))
        pos = match.end()
    out.append(_escape_plain(text[pos:]))
    if balanced and not stack:
        return "".join(out)
    return html.escape(html.unescape(_TAG.sub("", text)), quote=False)


def _escape_plain(piece: str) -> str:
    """Escape `<`, `>` and stray `&` of a piece between tags (entities are kept)."""
    parts, pos = [], 0
    for match in _ENTITY.finditer(piece):
        parts.append(html.escape(piece[pos : match.start()], quote=False))
        parts.append(match.group(0))
        pos = match.end()
    parts.append(html.escape(piece[pos:], quote=False))
    return "".join(parts)


async def deliver(app, channel, msg: Incoming, outputs, sleep=asyncio.sleep) -> None:
    """Send the replies of one update: to the sender through `channel`, or to `Reply.to`.

    A reply stored by a durable dispatch is settled after its send: sent, failed (rejected),
    unreachable (403), or handed to the outbox sender (a long 429, a network or server error),
    so it is never lost and never sent twice. A 429 of up to `DIRECT_RETRY_MAX_SECONDS` is
    waited out here.
    """
    for output in outputs:
        if not isinstance(output, Reply):
            continue
        target = app.channels.get(output.to.channel) if output.to else channel
        user_ref = output.to.user_ref if output.to else msg.user_ref
        await _deliver_one(app, target, user_ref, output, sleep)


async def _send_paced(app, target, user_ref: str, reply: Reply) -> None:
    """Send through the channel's rate limiter, the one the outbox sender uses, so direct
    replies and a broadcast together stay under the per-channel ceiling."""
    from scheduler.sender import sender_state

    limiter = sender_state(app).limiter(target.name, app.settings.send_rate_per_second)
    async with limiter.slot():
        await target.send(user_ref, reply)


async def _deliver_one(app, target, user_ref: str, reply: Reply, sleep) -> None:
    for attempt in range(DIRECT_RETRIES + 1):
        try:
            await _send_paced(app, target, user_ref, reply)
        except RateLimited as error:
            wait = float(error.retry_after)
            if wait <= DIRECT_RETRY_MAX_SECONDS and attempt < DIRECT_RETRIES:
                log.info("reply to %s: 429, waiting %s s", user_ref, wait)
                await sleep(wait)
                continue
            await _settle(app, reply, (target.name, user_ref), "pending", str(error), wait)
            return
        except Unreachable as error:
            await _settle(app, reply, (target.name, user_ref), "unreachable", str(error))
            return
        except RejectedMessage as error:
            await _settle(app, reply, (target.name, user_ref), "failed", str(error))
            return
        except ChannelError as error:
            await _settle(app, reply, (target.name, user_ref), "pending", str(error), 2.0)
            return
        await _settle(app, reply, (target.name, user_ref), "sent")
        return


async def _settle(app, reply: Reply, to: tuple, status: str, error=None, after=None) -> None:
    channel, user_ref = to
    if status != "sent":
        log.warning("reply to %s not delivered (%s): %s", user_ref, status, error)
    if reply.outbox_key is None:
        return
    try:
        await settle_reply(app, reply, status, error, after, Recipient(channel, user_ref))
    except Exception:  # the row stays claimed: the sender takes it when the lease runs out
        log.exception("could not settle reply %s", reply.outbox_key)
