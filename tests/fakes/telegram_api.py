"""A fake Telegram Bot API server for tests.

It speaks HTTP like api.telegram.org: real aiogram or PTB clients point their base URL at it.
It answers with Telegram's envelopes and errors (400/403/409/429), keeps what the bot sent, and
scripts users who type, press buttons and pay with Stars.

    async with FakeTelegram() as tg:
        bot = Bot(tg.token, session=AiohttpSession(api=TelegramAPIServer.from_base(tg.base_url)))
        user = tg.user(1001, first_name="Li", language_code="zh")
        await user.send("/start")
        reply = await tg.wait_for_message(user.id)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import secrets
import socket
import struct
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

DEFAULT_TOKEN = "123456:TEST-fake-telegram-token"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
TOKEN_RE = re.compile(r"^\d+:[A-Za-z0-9_-]+$")

MAX_TEXT = 4096
MAX_CAPTION = 1024
MAX_CALLBACK_DATA = 64
#: Bots may upload files of up to 50 MB (sendDocument).
MAX_UPLOAD_BYTES = 50 * 1024 * 1024

#: Update types Telegram leaves out unless they are listed in ``allowed_updates``.
OPT_IN_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})

#: Methods that count as sends for rate limits, ``send_times`` and ``send_counts``.
SEND_METHODS = frozenset({"sendMessage", "sendPhoto", "sendDocument", "sendInvoice"})

METHOD_NAMES = (
    "getMe",
    "logOut",
    "close",
    "getUpdates",
    "setWebhook",
    "deleteWebhook",
    "getWebhookInfo",
    "setMyCommands",
    "getMyCommands",
    "deleteMyCommands",
    "sendMessage",
    "sendPhoto",
    "sendDocument",
    "sendChatAction",
    "editMessageText",
    "editMessageReplyMarkup",
    "deleteMessage",
    "answerCallbackQuery",
    "sendInvoice",
    "answerPreCheckoutQuery",
    "refundStarPayment",
)
_CANONICAL = {name.lower(): name for name in METHOD_NAMES}

# Form fields that are strings even when they look like numbers or JSON.
_STRING_PARAMS = frozenset(
    {
        "text",
        "caption",
        "title",
        "description",
        "payload",
        "url",
        "photo",
        "document",
        "parse_mode",
        "language_code",
        "currency",
        "start_parameter",
        "error_message",
        "secret_token",
        "ip_address",
        "action",
        "inline_message_id",
        "callback_query_id",
        "pre_checkout_query_id",
        "telegram_payment_charge_id",
        "provider_token",
        "provider_data",
        "photo_url",
    }
)
_STRING_SUFFIXES = ("_query_id", "charge_id", "_token", "emoji_id", "connection_id", "_url")
# Fields that are JSON objects/arrays (decoded even when a JSON body carries them as strings).
_JSON_PARAMS = frozenset(
    {
        "reply_markup",
        "entities",
        "caption_entities",
        "prices",
        "commands",
        "scope",
        "allowed_updates",
        "reply_parameters",
        "link_preview_options",
        "suggested_tip_amounts",
    }
)
_NUMBER_RE = re.compile(r"-?\d+(\.\d+)?")


def has(text: str):
    """A predicate matching bot messages whose text contains `text`."""
    return lambda m: text in (m.get("text") or "")


class TelegramError(Exception):
    """An error answer of the Bot API: HTTP status, description and optional parameters."""

    def __init__(
        self, status: int, description: str, parameters: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"{status} {description}")
        self.status = status
        self.description = description
        self.parameters = parameters

    def payload(self) -> dict[str, Any]:
        """Return the JSON body Telegram would send for this error."""
        body: dict[str, Any] = {
            "ok": False,
            "error_code": self.status,
            "description": self.description,
        }
        if self.parameters:
            body["parameters"] = self.parameters
        return body


def bad_request(message: str) -> TelegramError:
    """Build a 400 error with Telegram's "Bad Request: " prefix."""
    return TelegramError(400, f"Bad Request: {message}")


class EntityParseError(ValueError):
    """Raised when formatted text does not parse (Telegram's "can't parse entities")."""


@dataclass
class UploadedFile:
    """A file the bot uploaded through multipart/form-data."""

    filename: str
    content_type: str
    data: bytes


@dataclass
class SentInvoice:
    """An invoice the bot sent, with the hidden payload and prices."""

    chat_id: int
    message: dict[str, Any]
    title: str
    description: str
    payload: str
    currency: str
    prices: list[dict[str, Any]]
    total_amount: int
    params: dict[str, Any]

    @property
    def message_id(self) -> int:
        """Return the id of the invoice message."""
        return self.message["message_id"]


@dataclass
class Charge:
    """A Stars payment the fake delivered, refundable once."""

    charge_id: str
    user_id: int
    total_amount: int
    currency: str
    payload: str
    refunded: bool = False


@dataclass
class _Queued:
    update: dict[str, Any]
    exempt: bool = False  # a replayed update survives one offset confirmation


@dataclass
class _OneShot:
    status: int
    description: str
    parameters: dict[str, Any] | None = None


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode())


def update_type(update: dict[str, Any]) -> str:
    """Return the payload key of an update ("message", "callback_query", ...)."""
    for key in update:
        if key != "update_id":
            return key
    return ""


# --------------------------------------------------------------------------- text formatting

_HTML_ENTITY_RE = re.compile(r"&(#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]*);")
_TAG_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9-]*")
_ATTR_RE = re.compile(
    r"""\s*([A-Za-z_:][-A-Za-z0-9_:.]*)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?"""
)
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_SIMPLE_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "code": "code",
    "pre": "pre",
}
_HTML_TAGS = frozenset(_SIMPLE_TAGS) | {"a", "span", "blockquote", "tg-emoji"}


@dataclass
class _Open:
    tag: str
    start: int
    byte_offset: int
    entity: dict[str, Any] | None
    language: str | None = None


def _decode_entity(match: re.Match[str], text: str, index: int) -> str:
    name = match.group(1)
    if name.startswith("#"):
        code = int(name[2:], 16) if name[1:2] in ("x", "X") else int(name[1:])
        if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
            raise EntityParseError(
                f"Invalid HTML entity code at byte offset {_byte_offset(text, index)}"
            )
        return chr(code)
    if name in _NAMED_ENTITIES:
        return _NAMED_ENTITIES[name]
    raise EntityParseError(
        f'Unsupported HTML entity "&{name};" at byte offset {_byte_offset(text, index)}'
    )


def _unescape_attr(value: str) -> str:
    def repl(m: re.Match[str]) -> str:
        try:
            return _decode_entity(m, value, m.start())
        except EntityParseError:
            return m.group(0)

    return _HTML_ENTITY_RE.sub(repl, value)


def _parse_attrs(body: str, text: str, index: int, tag: str) -> dict[str, str]:
    attrs: dict[str, str] = {}
    pos = 0
    while pos < len(body):
        if body[pos:].strip() in ("", "/"):
            break
        m = _ATTR_RE.match(body, pos)
        if not m or m.end() == pos:
            raise EntityParseError(
                f'Unsupported start tag "{tag}" at byte offset {_byte_offset(text, index)}'
            )
        value = next((g for g in m.groups()[1:] if g is not None), "")
        attrs[m.group(1).lower()] = _unescape_attr(value)
        pos = m.end()
    return attrs


def parse_html(text: str) -> tuple[str, list[dict[str, Any]]]:
    """Parse Telegram's HTML subset; return plain text and MessageEntity dicts."""
    out: list[str] = []
    pos16 = 0
    stack: list[_Open] = []
    entities: list[dict[str, Any]] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char == "<":
            end = text.find(">", i + 1)
            boff = _byte_offset(text, i)
            if end == -1:
                raise EntityParseError(f"Unclosed start tag at byte offset {boff}")
            body = text[i + 1 : end]
            if body.startswith("/"):
                name = body[1:].strip().lower()
                if not stack:
                    raise EntityParseError(f'Unexpected end tag "{name}" at byte offset {boff}')
                top = stack.pop()
                if name != top.tag:
                    raise EntityParseError(
                        f'Unmatched end tag at byte offset {boff}, expected "</{top.tag}>", '
                        f'found "</{name}>"'
                    )
                length = pos16 - top.start
                if top.tag == "code" and stack and stack[-1].tag == "pre" and top.language:
                    stack[-1].language = top.language
                elif top.entity is not None and length > 0:
                    entity = dict(top.entity, offset=top.start, length=length)
                    if top.tag == "pre" and top.language:
                        entity["language"] = top.language
                    entities.append(entity)
            else:
                m = _TAG_NAME_RE.match(body)
                name = m.group(0).lower() if m else body.strip()
                if not m or name not in _HTML_TAGS:
                    raise EntityParseError(f'Unsupported start tag "{name}" at byte offset {boff}')
                attrs = _parse_attrs(body[m.end() :], text, i, name)
                entity: dict[str, Any] | None
                language = None
                if name in _SIMPLE_TAGS:
                    entity = {"type": _SIMPLE_TAGS[name]}
                    cls = attrs.get("class", "")
                    if name == "code" and cls.startswith("language-"):
                        language = cls[len("language-") :]
                elif name == "a":
                    href = attrs.get("href")
                    entity = {"type": "text_link", "url": href} if href else None
                elif name == "span":
                    if attrs.get("class") != "tg-spoiler":
                        raise EntityParseError(
                            f'Unsupported start tag "span" at byte offset {boff}'
                        )
                    entity = {"type": "spoiler"}
                elif name == "blockquote":
                    kind = "expandable_blockquote" if "expandable" in attrs else "blockquote"
                    entity = {"type": kind}
                else:  # tg-emoji
                    emoji_id = attrs.get("emoji-id")
                    if not emoji_id:
                        raise EntityParseError(
                            f"Custom emoji entity must have emoji-id at byte offset {boff}"
                        )
                    entity = {"type": "custom_emoji", "custom_emoji_id": emoji_id}
                stack.append(_Open(name, pos16, boff, entity, language))
            i = end + 1
            continue
        if char == "&":
            m = _HTML_ENTITY_RE.match(text, i)
            if not m:
                raise EntityParseError(
                    f"Character '&' at byte offset {_byte_offset(text, i)} does not begin an "
                    "HTML entity; replace it with &amp;"
                )
            piece = _decode_entity(m, text, i)
            i = m.end()
        else:
            piece = char
            i += 1
        out.append(piece)
        pos16 += _utf16_len(piece)
    if stack:
        raise EntityParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1].tag}"')
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities


_MD2_RESERVED = frozenset("_*[]()~`>#+-=|{}.!")
_MD2_TYPES = {
    "*": "bold",
    "_": "italic",
    "__": "underline",
    "~": "strikethrough",
    "||": "spoiler",
}
_MD2_NAMES = {
    "*": "Bold",
    "_": "Italic",
    "__": "Underline",
    "~": "Strikethrough",
    "||": "Spoiler",
    "[": "TextUrl",
}


def _md2_reserved(char: str) -> EntityParseError:
    return EntityParseError(
        f"Character '{char}' is reserved and must be escaped with the preceding '\\'"
    )


def parse_markdown_v2(text: str) -> tuple[str, list[dict[str, Any]]]:
    """Parse MarkdownV2 well enough to reject unescaped reserved characters and open entities."""
    out: list[str] = []
    pos16 = 0
    stack: list[tuple[str, int, int]] = []  # marker, utf16 start, byte offset
    entities: list[dict[str, Any]] = []
    i, n = 0, len(text)

    def emit(piece: str) -> None:
        nonlocal pos16
        out.append(piece)
        pos16 += _utf16_len(piece)

    while i < n:
        char = text[i]
        if char == "\\":
            if i + 1 < n and 0 < ord(text[i + 1]) < 127:
                emit(text[i + 1])
                i += 2
                continue
            raise _md2_reserved("\\")
        if char == "`":
            delim = "```" if text.startswith("```", i) else "`"
            j = i + len(delim)
            buf: list[str] = []
            while j < n and not text.startswith(delim, j):
                if text[j] == "\\" and j + 1 < n:
                    buf.append(text[j + 1])
                    j += 2
                else:
                    buf.append(text[j])
                    j += 1
            if j >= n:
                name = "Pre" if delim == "```" else "Code"
                raise EntityParseError(
                    f"Can't find end of {name} entity at byte offset {_byte_offset(text, i)}"
                )
            content = "".join(buf)
            entity: dict[str, Any] = {"type": "code"}
            if delim == "```":
                entity = {"type": "pre"}
                first, sep, rest = content.partition("\n")
                if sep and first and " " not in first:
                    entity["language"] = first
                    content = rest
                elif sep and not first:
                    content = rest
            start = pos16
            emit(content)
            if pos16 > start:
                entities.append(dict(entity, offset=start, length=pos16 - start))
            i = j + len(delim)
            continue
        if char in "*_~|":
            if text.startswith("__", i):
                marker = "__"
            elif text.startswith("||", i):
                marker = "||"
            elif char == "|":
                raise _md2_reserved("|")
            else:
                marker = char
            if any(m == marker for m, _, _ in stack):
                while stack:
                    m, start, _ = stack.pop()
                    if m == marker:
                        break
                if pos16 > start:
                    entities.append(
                        {"type": _MD2_TYPES[marker], "offset": start, "length": pos16 - start}
                    )
            else:
                stack.append((marker, pos16, _byte_offset(text, i)))
            i += len(marker)
            continue
        if char == "!" and text.startswith("![", i):
            stack.append(("[", pos16, _byte_offset(text, i)))
            i += 2
            continue
        if char == "[":
            stack.append(("[", pos16, _byte_offset(text, i)))
            i += 1
            continue
        if char == "]" and stack and stack[-1][0] == "[" and text.startswith("(", i + 1):
            j = i + 2
            url: list[str] = []
            while j < n and text[j] != ")":
                if text[j] == "\\" and j + 1 < n:
                    url.append(text[j + 1])
                    j += 2
                else:
                    url.append(text[j])
                    j += 1
            if j >= n:
                raise EntityParseError(
                    f"Can't find end of a URL at byte offset {_byte_offset(text, i)}"
                )
            _, start, _ = stack.pop()
            link = "".join(url)
            if pos16 > start:
                if link.startswith("tg://emoji?id="):
                    ent = {"type": "custom_emoji", "custom_emoji_id": link.split("=", 1)[1]}
                else:
                    ent = {"type": "text_link", "url": link}
                entities.append(dict(ent, offset=start, length=pos16 - start))
            i = j + 1
            continue
        if char == ">" and (i == 0 or text[i - 1] == "\n"):
            i += 1  # blockquote line marker
            continue
        if char in _MD2_RESERVED:
            raise _md2_reserved(char)
        emit(char)
        i += 1
    if stack:
        marker, _, boff = stack[-1]
        raise EntityParseError(
            f"Can't find end of {_MD2_NAMES[marker]} entity at byte offset {boff}"
        )
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities


def format_text(
    text: str, parse_mode: str | None, entities: list[dict[str, Any]] | None = None
) -> tuple[str, list[dict[str, Any]]]:
    """Apply parse_mode like Telegram; raise TelegramError 400 when entities do not parse."""
    mode = (parse_mode or "").lower()
    try:
        if mode == "html":
            return parse_html(text)
        if mode == "markdownv2":
            return parse_markdown_v2(text)
    except EntityParseError as exc:
        raise bad_request(f"can't parse entities: {exc}") from None
    if mode in ("", "markdown"):
        return text, list(entities or [])
    raise bad_request("unsupported parse_mode")


# --------------------------------------------------------------------------- request params


def _coerce(key: str, value: Any) -> Any:
    """Turn a form field (always a string) into the JSON value Telegram would read."""
    if not isinstance(value, str):
        return value
    if key in _JSON_PARAMS:
        try:
            return json.loads(value)
        except ValueError:
            raise bad_request(f"can't parse {key} JSON object") from None
    if key in _STRING_PARAMS or key.endswith(_STRING_SUFFIXES):
        return value
    stripped = value.strip()
    if stripped in ("true", "false", "null") or _NUMBER_RE.fullmatch(stripped):
        return json.loads(stripped)
    return value


async def _read_params(request: web.Request) -> dict[str, Any]:
    params: dict[str, Any] = {k: _coerce(k, v) for k, v in request.query.items()}
    if request.method != "POST" or not request.can_read_body:
        return params
    if request.content_type == "application/json":
        try:
            body = await request.json()
        except ValueError:
            raise bad_request("can't parse JSON body") from None
        if not isinstance(body, dict):
            raise bad_request("JSON body must be an object")
        for key, value in body.items():
            params[key] = _coerce(key, value) if key in _JSON_PARAMS else value
        return params
    form = await request.post()
    for key, value in form.items():
        if isinstance(value, web.FileField):
            params[key] = UploadedFile(value.filename, value.content_type, value.file.read())
        else:
            params[key] = _coerce(key, value)
    return params


def _image_size(data: bytes) -> tuple[int, int]:
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    return 320, 320


def _as_int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise bad_request(f"{name} is invalid")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _NUMBER_RE.fullmatch(value) and "." not in value:
        return int(value)
    raise bad_request(f"{name} is invalid" if value not in (None, "") else f"{name} is empty")


# --------------------------------------------------------------------------- the server


class FakeTelegram:
    """A Telegram Bot API server on 127.0.0.1 that records calls and scripts users."""

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        bot_username: str = "coursebot_test_bot",
        bot_first_name: str = "CourseBot",
    ) -> None:
        if not TOKEN_RE.match(token):
            raise ValueError("token must look like '<digits>:<text>'")
        self.token = token
        self.bot_id = int(token.split(":", 1)[0])
        self.bot_user: dict[str, Any] = {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": bot_first_name,
            "username": bot_username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }
        # Records.
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.errors: list[tuple[str, int, str]] = []
        self.sent: list[dict[str, Any]] = []
        self.deleted: set[tuple[int, int]] = set()
        self.updates: list[dict[str, Any]] = []
        self.invoices: list[SentInvoice] = []
        self.refunds: list[dict[str, Any]] = []
        self.charges: dict[str, Charge] = {}
        self.precheckout_answers: dict[str, dict[str, Any]] = {}
        self.callback_answers: dict[str, dict[str, Any]] = {}
        self.commands: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.files: dict[str, UploadedFile] = {}
        self.send_times: list[float] = []
        self.send_counts: Counter[int] = Counter()
        self.chat_actions: list[tuple[int, str]] = []
        # Webhook and polling state.
        self.webhook_url: str | None = None
        self.webhook_secret: str | None = None
        self.webhook_max_connections: int | None = None
        self.webhook_errors: list[str] = []
        self.last_webhook_error_date: int | None = None
        self.allowed_updates: list[str] | None = None
        self.strict_webhook_url = False
        # Behaviour knobs.
        self.max_per_second: int | None = None
        self.max_per_chat_per_second: int | None = None
        self.rate_violations = 0
        self.chat_rate_violations: Counter[int] = Counter()
        self.precheckout_deadline = 10.0
        #: Seconds every call but getUpdates waits before it is answered: the network round trip
        #: to the real Bot API (benchmarks of concurrent handling).
        self.latency = 0.0
        self.clock: Callable[[], float] = time.monotonic
        self.users: dict[int, FakeUser] = {}
        self.blocked: set[int] = set()
        # Internals.
        self._rate_every = 0
        self._rate_retry_after = 1
        self._send_attempts = 0
        self._fail_next: dict[str, list[_OneShot]] = {}
        self._queue: list[_Queued] = []
        self._next_update_id = 100
        self._ids = itertools.count(1)
        self._chats: dict[int, dict[str, Any]] = {}
        self._chat_log: dict[int, list[dict[str, Any]]] = {}
        self._messages: dict[tuple[int, int], dict[str, Any]] = {}
        self._next_message_id: dict[int, int] = {}
        self._chat_sends: dict[int, list[float]] = {}
        self._marks: dict[int, int] = {}
        self._request_mark = 0
        self._callback_queries: dict[str, dict[str, Any]] = {}
        self._precheckout_queries: dict[str, float] = {}
        self._poll_generation = 0
        self._closing = False
        self._changed = asyncio.Condition()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None
        self._port: int | None = None
        self._handlers: dict[str, Callable[[dict[str, Any]], Any]] = {
            "getMe": self._get_me,
            "logOut": self._no_op,
            "close": self._no_op,
            "getUpdates": self._get_updates,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "sendMessage": self._send_message,
            "sendPhoto": self._send_photo,
            "sendDocument": self._send_document,
            "getFile": self._get_file,
            "sendChatAction": self._send_chat_action,
            "editMessageText": self._edit_message_text,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "deleteMessage": self._delete_message,
            "answerCallbackQuery": self._answer_callback_query,
            "sendInvoice": self._send_invoice,
            "answerPreCheckoutQuery": self._answer_pre_checkout_query,
            "refundStarPayment": self._refund_star_payment,
        }

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> FakeTelegram:
        """Bind 127.0.0.1 on a free port and start serving; return self."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)
        self._runner = web.AppRunner(
            app, access_log=None, shutdown_timeout=1.0, handler_cancellation=True
        )
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        self._http = aiohttp.ClientSession()
        self._closing = False
        return self

    async def stop(self) -> None:
        """Wake long polls, stop background deliveries and shut the server down."""
        self._closing = True
        await self._notify()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeTelegram:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        """Return the bound port (after start())."""
        if self._port is None:
            raise RuntimeError("FakeTelegram is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """Return the server root, e.g. http://127.0.0.1:PORT (aiogram from_base, PTB +'/bot')."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        """Return the prefix of method URLs for this bot token."""
        return f"{self.base_url}/bot{self.token}"

    # ----------------------------------------------------------------- scripting

    def user(
        self,
        user_id: int,
        first_name: str = "Test",
        language_code: str | None = "en",
        username: str | None = None,
        *,
        last_name: str | None = None,
        started: bool = True,
    ) -> FakeUser:
        """Return the scripted user with this id, creating it (started=False: chat not found)."""
        if user_id in self.users:
            return self.users[user_id]
        user = FakeUser(
            self,
            user_id,
            first_name=first_name,
            language_code=language_code,
            username=username,
            last_name=last_name,
        )
        self.users[user_id] = user
        if started:
            self._start_chat(user)
        return user

    def block(self, user_id: int) -> None:
        """Make sends to this user fail with 403 "bot was blocked by the user"."""
        self.blocked.add(user_id)

    def unblock(self, user_id: int) -> None:
        """Undo block()."""
        self.blocked.discard(user_id)

    def rate_limit_every(self, n_sends: int, retry_after: int = 1) -> None:
        """Answer every n-th send-type call with 429 retry_after (0 turns this off)."""
        self._rate_every = max(0, n_sends)
        self._rate_retry_after = retry_after
        self._send_attempts = 0

    def fail_next(
        self,
        method: str,
        status: int = 400,
        description: str = "Bad Request: scripted failure",
        *,
        retry_after: int | None = None,
        parameters: dict[str, Any] | None = None,
        times: int = 1,
    ) -> None:
        """Make the next call(s) of a method ("*" for any) fail once with this error."""
        params = dict(parameters or {})
        if status == 429 and retry_after is None and "retry_after" not in params:
            m = re.search(r"retry after (\d+)", description)
            retry_after = int(m.group(1)) if m else 1
        if retry_after is not None:
            params["retry_after"] = retry_after
        key = "*" if method == "*" else method.lower()
        for _ in range(times):
            self._fail_next.setdefault(key, []).append(
                _OneShot(status, description, params or None)
            )

    async def push_update(self, raw: dict[str, Any]) -> dict[str, Any]:
        """Deliver an arbitrary update; an explicit update_id is kept (replays)."""
        update = dict(raw)
        exempt = "update_id" in update
        if exempt:
            self._next_update_id = max(self._next_update_id, int(update["update_id"]) + 1)
        await self._deliver(update, exempt=exempt)
        return update

    async def flush_webhook(self) -> int:
        """POST queued updates to the webhook; return how many were accepted."""
        delivered = 0
        for entry in list(self._queue):
            if not self.webhook_url:
                break
            if await self._post_webhook(entry.update):
                delivered += 1
                with contextlib.suppress(ValueError):
                    self._queue.remove(entry)
        await self._notify()
        return delivered

    # ----------------------------------------------------------------- inspection

    def messages_for(self, chat_id: int, include_deleted: bool = False) -> list[dict[str, Any]]:
        """Return the Message dicts the bot sent to a chat, oldest first."""
        return [
            m
            for m in self._chat_log.get(chat_id, [])
            if include_deleted or (chat_id, m["message_id"]) not in self.deleted
        ]

    def message(self, chat_id: int, message_id: int) -> dict[str, Any] | None:
        """Return the current state of one bot message (edits applied)."""
        return self._messages.get((chat_id, message_id))

    def replied_message(self, chat_id: int, message: dict[str, Any] | int) -> dict[str, Any]:
        """Return a message of a chat as a reply's `reply_to_message` (LookupError if unknown).

        Like Telegram: the message's current state (edits applied), either side's, and never
        with a `reply_to_message` of its own.
        """
        message_id = message["message_id"] if isinstance(message, dict) else int(message)
        found = self._messages.get((chat_id, message_id))
        if found is None:
            sent_by_user = (
                u["message"]
                for u in self.updates
                if isinstance(u.get("message"), dict)
                and u["message"]["chat"]["id"] == chat_id
                and u["message"]["message_id"] == message_id
            )
            found = next(sent_by_user, None)
        if found is None or (chat_id, message_id) in self.deleted:
            raise LookupError(f"no message {message_id} in chat {chat_id} to reply to")
        return {k: v for k, v in found.items() if k != "reply_to_message"}

    def invoices_for(self, chat_id: int) -> list[SentInvoice]:
        """Return the invoices the bot sent to a chat, oldest first."""
        return [inv for inv in self.invoices if inv.chat_id == chat_id]

    def calls(self, method: str) -> list[dict[str, Any]]:
        """Return the params of every request of a method (any casing)."""
        name = _CANONICAL.get(method.lower(), method)
        return [params for m, params in self.requests if m == name]

    @property
    def pending_updates(self) -> list[dict[str, Any]]:
        """Return updates not yet confirmed by getUpdates offset (or not accepted by webhook)."""
        return [entry.update for entry in self._queue]

    def peak_rate(self, window: float = 1.0, chat_id: int | None = None) -> int:
        """Return the most successful sends seen inside any sliding window of this length."""
        times = self.send_times if chat_id is None else self._chat_sends.get(chat_id, [])
        best, lo = 0, 0
        for hi, t in enumerate(times):
            while t - times[lo] >= window:
                lo += 1
            best = max(best, hi - lo + 1)
        return best

    async def wait_until(
        self, predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition"
    ) -> Any:
        """Wait until predicate() is truthy (re-checked after every call/update); return it."""
        try:
            async with asyncio.timeout(timeout), self._changed:
                while not (result := predicate()):
                    await self._changed.wait()
                return result
        except TimeoutError:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}") from None

    async def wait_for_message(
        self,
        chat_id: int,
        predicate: Callable[[dict[str, Any]], bool] | None = None,
        timeout: float = 15.0,
        since: int | None = None,
    ) -> dict[str, Any]:
        """Wait for a bot message to a chat sent since the user's last action (or index since)."""
        start = self._marks.get(chat_id, 0) if since is None else since

        def find() -> dict[str, Any] | None:
            for msg in self._chat_log.get(chat_id, [])[start:]:
                if predicate is None or predicate(msg):
                    return msg
            return None

        try:
            return await self.wait_until(find, timeout)
        except TimeoutError:
            seen = [
                m.get("text") or m.get("caption") or m.get("invoice", {}).get("title")
                for m in self._chat_log.get(chat_id, [])[start:]
            ]
            raise TimeoutError(
                f"no matching message to chat {chat_id} within {timeout} s; "
                f"messages since the last user action: {seen!r}"
            ) from None

    async def wait_for_request(
        self,
        method: str,
        predicate: Callable[[dict[str, Any]], bool] | None = None,
        timeout: float = 15.0,
        since: int | None = None,
    ) -> dict[str, Any]:
        """Wait for a call of a method made since the last user action (or index since)."""
        name = _CANONICAL.get(method.lower(), method)
        start = self._request_mark if since is None else since

        def find() -> dict[str, Any] | None:
            for m, params in self.requests[start:]:
                if m == name and (predicate is None or predicate(params)):
                    return params
            return None

        return await self.wait_until(find, timeout, what=f"a {name} call")

    # ----------------------------------------------------------------- HTTP

    async def _handle(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401
            )
        raw_method = request.match_info["method"]
        if self.latency and raw_method.lower() != "getupdates":
            await asyncio.sleep(self.latency)
        try:
            params = await _read_params(request)
        except TelegramError as exc:
            self.requests.append((raw_method, {}))
            self.errors.append((raw_method, exc.status, exc.description))
            return web.json_response(exc.payload(), status=exc.status)
        try:
            result = await self.call(raw_method, params)
        except TelegramError as exc:
            return web.json_response(exc.payload(), status=exc.status)
        return web.json_response({"ok": True, "result": result})

    async def call(self, method: str, params: dict[str, Any]) -> Any:
        """Run one API method in-process (as if over HTTP); raise TelegramError on errors."""
        name = _CANONICAL.get(method.lower(), method)
        self.requests.append((name, params))
        await self._notify()
        try:
            if name not in self._handlers:
                raise TelegramError(404, "Not Found: method not found")
            shots = self._fail_next.get(name.lower()) or self._fail_next.get("*")
            if shots:
                shot = shots.pop(0)
                raise TelegramError(shot.status, shot.description, shot.parameters)
            return await self._handlers[name](params)
        except TelegramError as exc:
            self.errors.append((name, exc.status, exc.description))
            raise
        finally:
            await self._notify()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # ----------------------------------------------------------------- chats & messages

    def _start_chat(self, user: FakeUser) -> None:
        self._chats.setdefault(user.id, user.chat_dict)
        self._chat_log.setdefault(user.id, [])

    def _chat_id(self, params: dict[str, Any]) -> int:
        raw = params.get("chat_id")
        if raw is None or raw == "":
            raise bad_request("chat_id is empty")
        try:
            chat_id = _as_int(raw, "chat_id")
        except TelegramError:
            raise bad_request("chat not found") from None
        if chat_id not in self._chats:
            raise bad_request("chat not found")
        if chat_id in self.blocked:
            raise TelegramError(403, "Forbidden: bot was blocked by the user")
        return chat_id

    def _new_message_id(self, chat_id: int) -> int:
        mid = self._next_message_id.get(chat_id, 1)
        self._next_message_id[chat_id] = mid + 1
        return mid

    def _rate_check(self, chat_id: int) -> None:
        now = self.clock()
        self._send_attempts += 1
        if self._rate_every and self._send_attempts % self._rate_every == 0:
            retry = self._rate_retry_after
            raise TelegramError(
                429, f"Too Many Requests: retry after {retry}", {"retry_after": retry}
            )
        if self.max_per_second is not None:
            recent = [t for t in self.send_times[-self.max_per_second - 1 :] if now - t < 1.0]
            if len(recent) >= self.max_per_second:
                self.rate_violations += 1
                raise TelegramError(429, "Too Many Requests: retry after 1", {"retry_after": 1})
        if self.max_per_chat_per_second is not None:
            times = self._chat_sends.get(chat_id, [])
            recent = [t for t in times[-self.max_per_chat_per_second - 1 :] if now - t < 1.0]
            if len(recent) >= self.max_per_chat_per_second:
                self.chat_rate_violations[chat_id] += 1
                raise TelegramError(429, "Too Many Requests: retry after 1", {"retry_after": 1})

    def _store_message(self, chat_id: int, fields: dict[str, Any]) -> dict[str, Any]:
        message: dict[str, Any] = {
            "message_id": self._new_message_id(chat_id),
            "from": self.bot_user,
            "chat": self._chats[chat_id],
            "date": int(time.time()),
        }
        message.update({k: v for k, v in fields.items() if v not in (None, [])})
        self.sent.append(message)
        self._chat_log.setdefault(chat_id, []).append(message)
        self._messages[(chat_id, message["message_id"])] = message
        now = self.clock()
        self.send_times.append(now)
        self._chat_sends.setdefault(chat_id, []).append(now)
        self.send_counts[chat_id] += 1
        return message

    def _check_markup(self, markup: Any) -> dict[str, Any] | None:
        """Validate reply_markup; return it when it belongs in the Message (inline only)."""
        if markup is None or markup == "":
            return None
        if not isinstance(markup, dict):
            raise bad_request("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" not in markup:
            if any(k in markup for k in ("keyboard", "remove_keyboard", "force_reply")):
                return None
            raise bad_request("can't parse reply keyboard markup JSON object")
        rows = markup["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            raise bad_request(
                "can't parse inline keyboard button: InlineKeyboardButton must be an Object"
            )
        actions = (
            "url",
            "callback_data",
            "web_app",
            "login_url",
            "switch_inline_query",
            "switch_inline_query_current_chat",
            "switch_inline_query_chosen_chat",
            "copy_text",
            "callback_game",
            "pay",
        )
        for row in rows:
            for button in row:
                if not isinstance(button, dict) or not str(button.get("text", "")).strip():
                    raise bad_request("BUTTON_TEXT_INVALID")
                if not any(k in button for k in actions):
                    raise bad_request("text buttons are unallowed in the inline keyboard")
                if "callback_data" in button:
                    data = str(button["callback_data"]).encode()
                    if not 1 <= len(data) <= MAX_CALLBACK_DATA:
                        raise bad_request("BUTTON_DATA_INVALID")
                if "url" in button:
                    url = str(button["url"])
                    if not re.match(r"^(https?|tg)://\S+$", url):
                        raise bad_request("BUTTON_URL_INVALID")
        return {"inline_keyboard": rows}

    def _text_fields(
        self, params: dict[str, Any], key: str = "text", limit: int = MAX_TEXT
    ) -> dict[str, Any]:
        raw = params.get(key)
        entities_key = "entities" if key == "text" else "caption_entities"
        if raw is None and key == "caption":
            return {}
        text, entities = format_text(
            "" if raw is None else str(raw), params.get("parse_mode"), params.get(entities_key)
        )
        if key == "text" and not text.strip():
            raise bad_request("message text is empty")
        if len(text) > limit:
            raise bad_request(
                "message is too long" if key == "text" else "message caption is too long"
            )
        fields: dict[str, Any] = {key: text}
        if entities:
            fields[entities_key] = entities
        return fields

    def _find_message(self, params: dict[str, Any], what: str) -> tuple[int, dict[str, Any]]:
        chat_id = self._chat_id(params)
        mid = _as_int(params.get("message_id"), "message_id")
        message = self._messages.get((chat_id, mid))
        if message is None or (chat_id, mid) in self.deleted:
            raise bad_request(f"message to {what} not found")
        return chat_id, message

    # ----------------------------------------------------------------- updates

    def _is_allowed(self, update: dict[str, Any]) -> bool:
        kind = update_type(update)
        if self.allowed_updates:
            return kind in self.allowed_updates
        return kind not in OPT_IN_UPDATES

    def _chat_of(self, update: dict[str, Any]) -> int | None:
        body = update.get(update_type(update))
        if not isinstance(body, dict):
            return None
        chat = body.get("chat") or (body.get("message") or {}).get("chat") or body.get("from")
        return chat.get("id") if isinstance(chat, dict) else None

    async def _deliver(self, update: dict[str, Any], exempt: bool = False) -> dict[str, Any]:
        if "update_id" not in update:
            update = {"update_id": self._next_update_id, **update}
            self._next_update_id += 1
        chat_id = self._chat_of(update)
        if chat_id is not None:
            self._marks[chat_id] = len(self._chat_log.get(chat_id, []))
        self._request_mark = len(self.requests)
        self.updates.append(update)
        if self.webhook_url:
            if self._is_allowed(update) and not await self._post_webhook(update):
                self._queue.append(_Queued(update, exempt))
        else:
            self._queue.append(_Queued(update, exempt))
        await self._notify()
        return update

    def _confirm(self, offset: int | None) -> None:
        if offset is None:
            return
        if offset < 0:
            self._queue = self._queue[offset:]
            return
        self._queue = [e for e in self._queue if e.exempt or e.update["update_id"] >= offset]

    def _take(self, limit: int) -> list[dict[str, Any]]:
        self._queue = [e for e in self._queue if self._is_allowed(e.update)]
        batch = self._queue[:limit]
        for entry in batch:
            entry.exempt = False
        return [entry.update for entry in batch]

    async def _post_webhook(self, update: dict[str, Any]) -> bool:
        url, http = self.webhook_url, self._http
        if not url or http is None:
            return False
        headers = {SECRET_HEADER: self.webhook_secret} if self.webhook_secret else {}
        try:
            async with http.post(
                url, json=update, headers=headers, timeout=aiohttp.ClientTimeout(total=30)
            ) as resp:
                if not 200 <= resp.status < 300:
                    self._webhook_error(
                        f"Wrong response from the webhook: {resp.status} {resp.reason}"
                    )
                    return False
                reply = await self._read_webhook_reply(resp)
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._webhook_error(f"Connection error: {type(exc).__name__}: {exc}")
            return False
        if reply:
            method = str(reply.pop("method"))
            with contextlib.suppress(TelegramError):
                await self.call(method, reply)
        return True

    def _webhook_error(self, message: str) -> None:
        self.webhook_errors.append(message)
        self.last_webhook_error_date = int(time.time())

    async def _read_webhook_reply(self, resp: aiohttp.ClientResponse) -> dict[str, Any] | None:
        """Read a method call returned in the webhook response (aiogram's reply-in-webhook)."""
        params: dict[str, Any] = {}
        if resp.content_type.startswith("multipart/"):
            reader = aiohttp.MultipartReader.from_response(resp)
            async for part in reader:
                if not isinstance(part, aiohttp.BodyPartReader) or not part.name:
                    continue
                if part.filename:
                    data = bytes(await part.read())
                    ctype = part.headers.get("Content-Type", "application/octet-stream")
                    params[part.name] = UploadedFile(part.filename, ctype, data)
                else:
                    params[part.name] = _coerce(part.name, await part.text())
        elif resp.content_type == "application/json":
            with contextlib.suppress(ValueError):
                body = await resp.json()
                if isinstance(body, dict):
                    params = {
                        k: _coerce(k, v) if k in _JSON_PARAMS else v for k, v in body.items()
                    }
        return params if params.get("method") else None

    # ----------------------------------------------------------------- methods

    async def _no_op(self, params: dict[str, Any]) -> bool:
        return True

    async def _get_me(self, params: dict[str, Any]) -> dict[str, Any]:
        return dict(self.bot_user)

    async def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        if self.webhook_url:
            raise TelegramError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = params.get("offset")
        offset = None if offset is None else _as_int(offset, "offset")
        limit = min(100, max(1, _as_int(params.get("limit", 100), "limit")))
        raw_timeout = params.get("timeout") or 0
        if isinstance(raw_timeout, bool) or not isinstance(raw_timeout, int | float):
            raise bad_request("timeout is invalid")
        timeout = max(0.0, float(raw_timeout))
        if params.get("allowed_updates") is not None:
            self.allowed_updates = list(params["allowed_updates"]) or None
        self._poll_generation += 1
        generation = self._poll_generation
        self._confirm(offset)
        batch = self._take(limit)
        if batch or timeout == 0 or self._closing:
            return batch

        def ready() -> bool:
            return (
                self._closing
                or generation != self._poll_generation
                or any(self._is_allowed(e.update) for e in self._queue)
            )

        with contextlib.suppress(TimeoutError):
            await self.wait_until(ready, timeout)
        if generation != self._poll_generation:
            raise TelegramError(
                409,
                "Conflict: terminated by other getUpdates request; make sure that only one "
                "bot instance is running",
            )
        return [] if self._closing else self._take(limit)

    async def _set_webhook(self, params: dict[str, Any]) -> bool:
        url = str(params.get("url") or "")
        if not url:
            return await self._delete_webhook(params)
        if self.strict_webhook_url and not url.startswith("https://"):
            raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        if not re.match(r"^https?://\S+$", url):
            raise bad_request("bad webhook: Failed to resolve host: Name or service not known")
        secret = params.get("secret_token")
        if secret not in (None, "") and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", str(secret)):
            raise bad_request("secret token contains unallowed characters")
        max_conn = params.get("max_connections")
        if max_conn is not None and not 1 <= _as_int(max_conn, "max_connections") <= 100:
            raise bad_request("bad webhook: max_connections must be between 1 and 100")
        if params.get("drop_pending_updates"):
            self._queue.clear()
        if params.get("allowed_updates") is not None:
            self.allowed_updates = list(params["allowed_updates"]) or None
        self.webhook_url = url
        self.webhook_secret = str(secret) if secret else None
        self.webhook_max_connections = max_conn
        self._poll_generation += 1  # a waiting getUpdates ends with 409
        if self._queue:
            task = asyncio.create_task(self.flush_webhook())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return True

    async def _delete_webhook(self, params: dict[str, Any]) -> bool:
        self.webhook_url = None
        self.webhook_secret = None
        self.webhook_max_connections = None
        if params.get("drop_pending_updates"):
            self._queue.clear()
        return True

    async def _get_webhook_info(self, params: dict[str, Any]) -> dict[str, Any]:
        info: dict[str, Any] = {
            "url": self.webhook_url or "",
            "has_custom_certificate": False,
            "pending_update_count": len(self._queue),
        }
        if self.webhook_url and self.webhook_errors:
            info["last_error_date"] = self.last_webhook_error_date
            info["last_error_message"] = self.webhook_errors[-1]
        if self.webhook_url and self.webhook_max_connections:
            info["max_connections"] = self.webhook_max_connections
        if self.allowed_updates:
            info["allowed_updates"] = list(self.allowed_updates)
        return info

    @staticmethod
    def _commands_key(params: dict[str, Any]) -> tuple[str, str]:
        scope = params.get("scope") or {"type": "default"}
        if not isinstance(scope, dict) or "type" not in scope:
            raise bad_request("can't parse BotCommandScope JSON object")
        scope_key = json.dumps(scope, sort_keys=True) if len(scope) > 1 else scope["type"]
        lang = str(params.get("language_code") or "")
        if lang and not re.fullmatch(r"[a-z]{2}", lang):
            raise bad_request("invalid language code specified")
        return scope_key, lang

    def commands_for(self, language_code: str = "", scope: str = "default") -> list[dict]:
        """Return the commands set for a language ("" = all) and scope type."""
        return self.commands.get((scope, language_code), [])

    async def _set_my_commands(self, params: dict[str, Any]) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise bad_request("can't parse commands JSON object")
        for cmd in commands:
            if not isinstance(cmd, dict):
                raise bad_request("can't parse commands JSON object")
            if not re.fullmatch(r"[a-z0-9_]{1,32}", str(cmd.get("command", "")).lstrip("/")):
                raise bad_request("BOT_COMMAND_INVALID")
            if not 1 <= len(str(cmd.get("description", "")).strip()) <= 256:
                raise bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
        key = self._commands_key(params)
        self.commands[key] = [
            {"command": str(c["command"]).lstrip("/"), "description": str(c["description"])}
            for c in commands
        ]
        return True

    async def _get_my_commands(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        return list(self.commands.get(self._commands_key(params), []))

    async def _delete_my_commands(self, params: dict[str, Any]) -> bool:
        self.commands.pop(self._commands_key(params), None)
        return True

    async def _send_message(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = self._chat_id(params)
        fields = self._text_fields(params)
        fields["reply_markup"] = self._check_markup(params.get("reply_markup"))
        self._rate_check(chat_id)
        return self._store_message(chat_id, fields)

    async def _send_photo(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = self._chat_id(params)
        photo = params.get("photo")
        if isinstance(photo, str) and photo.startswith("attach://"):
            photo = params.get(photo[len("attach://") :])
        if isinstance(photo, UploadedFile):
            n = next(self._ids)
            file_id, unique_id = f"AgACAgFAKEPHOTO{n:06d}", f"AQADFAKE{n:06d}"
            self.files[file_id] = photo
            data = photo.data
        elif isinstance(photo, str) and photo in self.files:
            file_id = photo
            unique_id = "AQADFAKE" + photo[-6:]
            data = self.files[photo].data
        elif isinstance(photo, str) and re.match(r"^https?://\S+$", photo):
            n = next(self._ids)
            file_id, unique_id = f"AgACAgFAKEPHOTO{n:06d}", f"AQADFAKE{n:06d}"
            self.files[file_id] = UploadedFile(photo.rsplit("/", 1)[-1], "image/jpeg", b"")
            data = b""
        elif photo in (None, ""):
            raise bad_request("there is no photo in the request")
        else:
            raise bad_request("wrong file identifier/HTTP URL specified")
        if not data and isinstance(photo, UploadedFile):
            raise bad_request("IMAGE_PROCESS_FAILED")
        width, height = _image_size(data)
        fields = self._text_fields(params, "caption", MAX_CAPTION)
        fields["photo"] = [
            {
                "file_id": file_id,
                "file_unique_id": unique_id,
                "width": width,
                "height": height,
                "file_size": len(data),
            }
        ]
        fields["reply_markup"] = self._check_markup(params.get("reply_markup"))
        self._rate_check(chat_id)
        return self._store_message(chat_id, fields)

    async def _send_document(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = self._chat_id(params)
        document = params.get("document")
        if isinstance(document, str) and document.startswith("attach://"):
            document = params.get(document[len("attach://") :])
        if isinstance(document, UploadedFile):
            if not document.data:
                raise bad_request("file must be non-empty")
            if len(document.data) > MAX_UPLOAD_BYTES:
                raise TelegramError(413, "Request Entity Too Large")
            n = next(self._ids)
            file_id, unique_id = f"BQACAgFAKEDOC{n:06d}", f"AgADFAKE{n:06d}"
            self.files[file_id] = document
        elif isinstance(document, str) and document in self.files:
            file_id, unique_id = document, "AgADFAKE" + document[-6:]
            document = self.files[document]
        elif document in (None, ""):
            raise bad_request("there is no document in the request")
        else:
            raise bad_request("wrong file identifier/HTTP URL specified")
        fields = self._text_fields(params, "caption", MAX_CAPTION)
        fields["document"] = {
            "file_id": file_id,
            "file_unique_id": unique_id,
            "file_name": document.filename,
            "mime_type": document.content_type or "application/octet-stream",
            "file_size": len(document.data),
        }
        fields["reply_markup"] = self._check_markup(params.get("reply_markup"))
        self._rate_check(chat_id)
        return self._store_message(chat_id, fields)

    def document_of(self, message: dict[str, Any]) -> UploadedFile:
        """The file a document message carries (name, content type, bytes)."""
        return self.files[message["document"]["file_id"]]

    def add_user_file(self, data: bytes, filename: str = "photo.jpg") -> str:
        """Store a file a user sent; return its file_id (getFile then serves it)."""
        file_id = f"AgACAgFAKEUSER{next(self._ids):06d}"
        self.files[file_id] = UploadedFile(filename, "image/jpeg", data)
        return file_id

    async def _get_file(self, params: dict[str, Any]) -> dict[str, Any]:
        file_id = str(params.get("file_id") or "")
        if file_id not in self.files:
            raise bad_request("invalid file_id")
        return {
            "file_id": file_id,
            "file_unique_id": "AQADFAKE" + file_id[-6:],
            "file_size": len(self.files[file_id].data),
            "file_path": f"photos/{file_id}.jpg",
        }

    async def _download(self, request: web.Request) -> web.Response:
        """GET /file/bot<token>/<file_path>, as getFile's file_path names it."""
        self.requests.append(("downloadFile", {"path": request.match_info["path"]}))
        if request.match_info["token"] != self.token:
            return web.json_response({"ok": False, "error_code": 401}, status=401)
        file_id = request.match_info["path"].removeprefix("photos/").removesuffix(".jpg")
        if file_id not in self.files:
            return web.json_response({"ok": False, "error_code": 404}, status=404)
        return web.Response(body=self.files[file_id].data, content_type="image/jpeg")

    async def _send_chat_action(self, params: dict[str, Any]) -> bool:
        chat_id = self._chat_id(params)
        self.chat_actions.append((chat_id, str(params.get("action", ""))))
        return True

    async def _edit_message_text(self, params: dict[str, Any]) -> dict[str, Any] | bool:
        if params.get("inline_message_id"):
            self._text_fields(params)
            self._check_markup(params.get("reply_markup"))
            return True
        _, message = self._find_message(params, "edit")
        if "text" not in message:
            raise bad_request("there is no text in the message to edit")
        fields = self._text_fields(params)
        markup = self._check_markup(params.get("reply_markup"))
        new = {"text": fields["text"], "entities": fields.get("entities"), "reply_markup": markup}
        old = {k: message.get(k) for k in new}
        if new == old:
            raise bad_request(
                "message is not modified: specified new message content and reply markup are "
                "exactly the same as a current content and reply markup of the message"
            )
        self._apply_edit(message, new)
        return message

    async def _edit_message_reply_markup(self, params: dict[str, Any]) -> dict[str, Any] | bool:
        if params.get("inline_message_id"):
            self._check_markup(params.get("reply_markup"))
            return True
        _, message = self._find_message(params, "edit")
        markup = self._check_markup(params.get("reply_markup"))
        if markup == message.get("reply_markup"):
            raise bad_request(
                "message is not modified: specified new message content and reply markup are "
                "exactly the same as a current content and reply markup of the message"
            )
        self._apply_edit(message, {"reply_markup": markup})
        return message

    @staticmethod
    def _apply_edit(message: dict[str, Any], changes: dict[str, Any]) -> None:
        for key, value in changes.items():
            if value in (None, []):
                message.pop(key, None)
            else:
                message[key] = value
        message["edit_date"] = int(time.time())

    async def _delete_message(self, params: dict[str, Any]) -> bool:
        chat_id, message = self._find_message(params, "delete")
        self.deleted.add((chat_id, message["message_id"]))
        return True

    async def _answer_callback_query(self, params: dict[str, Any]) -> bool:
        query_id = str(params.get("callback_query_id") or "")
        if query_id not in self._callback_queries or query_id in self.callback_answers:
            raise bad_request(
                "query is too old and response timeout expired or query ID is invalid"
            )
        text = params.get("text")
        if text is not None and len(str(text)) > 200:
            raise bad_request("MESSAGE_TOO_LONG")
        self.callback_answers[query_id] = {
            "text": text,
            "show_alert": bool(params.get("show_alert", False)),
            "url": params.get("url"),
            "cache_time": params.get("cache_time"),
        }
        return True

    async def _send_invoice(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = self._chat_id(params)
        title = str(params.get("title") or "")
        description = str(params.get("description") or "")
        payload = str(params.get("payload") or "")
        currency = str(params.get("currency") or "")
        prices = params.get("prices")
        if not 1 <= len(title) <= 32:
            raise bad_request("INVOICE_TITLE_INVALID")
        if not 1 <= len(description) <= 255:
            raise bad_request("INVOICE_DESCRIPTION_INVALID")
        if not 1 <= len(payload.encode()) <= 128:
            raise bad_request("INVOICE_PAYLOAD_INVALID")
        if not re.fullmatch(r"[A-Z]{3}", currency):
            raise bad_request("CURRENCY_INVALID")
        if not isinstance(prices, list) or not prices:
            raise bad_request("prices is empty")
        for price in prices:
            amount = price.get("amount") if isinstance(price, dict) else None
            if not isinstance(price, dict) or not str(price.get("label", "")):
                raise bad_request("can't parse prices JSON object")
            if isinstance(amount, bool) or not isinstance(amount, int):
                raise bad_request("can't parse prices JSON object")
        total = sum(int(p["amount"]) for p in prices)
        if currency == "XTR":
            if params.get("provider_token"):
                raise bad_request("STARS_INVOICE_INVALID")
            if len(prices) != 1:
                raise bad_request("STARS_INVOICE_INVALID")
            if params.get("max_tip_amount") or params.get("suggested_tip_amounts"):
                raise bad_request("STARS_INVOICE_INVALID")
        elif not params.get("provider_token"):
            raise bad_request("PAYMENT_PROVIDER_INVALID")
        if total <= 0 or any(int(p["amount"]) <= 0 for p in prices):
            raise bad_request("CURRENCY_TOTAL_AMOUNT_INVALID")
        markup = self._check_markup(params.get("reply_markup"))
        if markup and markup["inline_keyboard"]:
            first_row = markup["inline_keyboard"][0]
            if not first_row or not first_row[0].get("pay"):
                raise bad_request("REPLY_MARKUP_BUY_EMPTY")
        self._rate_check(chat_id)
        invoice = {
            "title": title,
            "description": description,
            "start_parameter": str(params.get("start_parameter") or ""),
            "currency": currency,
            "total_amount": total,
        }
        message = self._store_message(chat_id, {"invoice": invoice, "reply_markup": markup})
        self.invoices.append(
            SentInvoice(
                chat_id=chat_id,
                message=message,
                title=title,
                description=description,
                payload=payload,
                currency=currency,
                prices=[dict(p) for p in prices],
                total_amount=total,
                params=params,
            )
        )
        return message

    async def _answer_pre_checkout_query(self, params: dict[str, Any]) -> bool:
        query_id = str(params.get("pre_checkout_query_id") or "")
        created = self._precheckout_queries.get(query_id)
        too_old = (
            created is None
            or query_id in self.precheckout_answers
            or self.clock() - created > self.precheckout_deadline
        )
        if too_old:
            raise bad_request(
                "query is too old and response timeout expired or query ID is invalid"
            )
        if "ok" not in params:
            raise bad_request("ok is empty")
        ok = params["ok"] in (True, "true", "True", 1)
        error_message = params.get("error_message")
        if not ok and not error_message:
            raise bad_request("ERROR_MESSAGE_EMPTY")
        self.precheckout_answers[query_id] = {
            "ok": ok,
            "error_message": error_message,
            "seconds": self.clock() - created,
        }
        return True

    async def _refund_star_payment(self, params: dict[str, Any]) -> bool:
        user_id = _as_int(params.get("user_id"), "user_id")
        charge_id = str(params.get("telegram_payment_charge_id") or "")
        charge = self.charges.get(charge_id)
        if charge is None or charge.user_id != user_id:
            raise bad_request("CHARGE_NOT_FOUND")
        if charge.refunded:
            raise bad_request("CHARGE_ALREADY_REFUNDED")
        charge.refunded = True
        self.refunds.append(
            {
                "user_id": user_id,
                "telegram_payment_charge_id": charge_id,
                "total_amount": charge.total_amount,
                "invoice_payload": charge.payload,
            }
        )
        return True

    # ----------------------------------------------------------------- used by FakeUser

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):08d}{secrets.token_hex(4)}"

    def _resolve_invoice(self, chat_id: int, invoice: Any) -> SentInvoice:
        if isinstance(invoice, SentInvoice):
            return invoice
        candidates = self.invoices_for(chat_id)
        if invoice is None:
            if not candidates:
                raise LookupError(f"the bot sent no invoice to chat {chat_id}")
            return candidates[-1]
        message_id = invoice.get("message_id") if isinstance(invoice, dict) else invoice
        for inv in candidates:
            if inv.message_id == message_id:
                return inv
        raise LookupError(f"message {message_id!r} in chat {chat_id} is not an invoice")


class FakeUser:
    """A scripted Telegram user: typing, pressing buttons and paying create updates."""

    def __init__(
        self,
        tg: FakeTelegram,
        user_id: int,
        *,
        first_name: str = "Test",
        language_code: str | None = "en",
        username: str | None = None,
        last_name: str | None = None,
    ) -> None:
        self.tg = tg
        self.id = user_id
        self.first_name = first_name
        self.last_name = last_name
        self.username = username
        self.language_code = language_code
        self.last_payment_error: str | None = None

    @property
    def user_dict(self) -> dict[str, Any]:
        """Return this user as a Telegram User object."""
        data: dict[str, Any] = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        for key in ("last_name", "username", "language_code"):
            if getattr(self, key):
                data[key] = getattr(self, key)
        return data

    @property
    def chat_dict(self) -> dict[str, Any]:
        """Return the private chat with this user as a Telegram Chat object."""
        data: dict[str, Any] = {"id": self.id, "type": "private", "first_name": self.first_name}
        if self.last_name:
            data["last_name"] = self.last_name
        if self.username:
            data["username"] = self.username
        return data

    @property
    def inbox(self) -> list[dict[str, Any]]:
        """Return the messages the bot sent to this user (current state, oldest first)."""
        return self.tg.messages_for(self.id)

    @property
    def last_message(self) -> dict[str, Any] | None:
        """Return the latest message the bot sent to this user."""
        inbox = self.inbox
        return inbox[-1] if inbox else None

    def block(self) -> None:
        """Block the bot (sends to this user get 403)."""
        self.tg.block(self.id)

    def unblock(self) -> None:
        """Unblock the bot."""
        self.tg.unblock(self.id)

    def _message(self, **fields: Any) -> dict[str, Any]:
        self.tg._start_chat(self)
        return {
            "message_id": self.tg._new_message_id(self.id),
            "from": self.user_dict,
            "chat": self.chat_dict,
            "date": int(time.time()),
            **fields,
        }

    async def send(
        self, text: str, *, reply_to: dict[str, Any] | int | None = None, **extra: Any
    ) -> dict[str, Any]:
        """Send a text message to the bot; a leading /command gets a bot_command entity.

        `reply_to` (a message of this chat, or its id) makes it a reply: the update carries
        that message's current state as `reply_to_message`, without a nested reply.
        """
        fields: dict[str, Any] = {"text": text}
        m = re.match(r"/[A-Za-z0-9_]+(@[A-Za-z0-9_]+)?", text)
        if m:
            fields["entities"] = [
                {"type": "bot_command", "offset": 0, "length": _utf16_len(m.group(0))}
            ]
        if reply_to is not None:
            fields["reply_to_message"] = self.tg.replied_message(self.id, reply_to)
        fields.update(extra)
        return await self.tg._deliver({"message": self._message(**fields)})

    async def send_photo(self, data: bytes, caption: str = "") -> dict[str, Any]:
        """Send a picture (a thumbnail and the full size, as Telegram does) with a caption."""
        sizes = [
            {"data": data[:64], "width": 90, "height": 90},
            {"data": data, "width": 800, "height": 600},
        ]
        photo = [
            {
                "file_id": (file_id := self.tg.add_user_file(size["data"])),
                "file_unique_id": "AQADFAKE" + file_id[-6:],
                "width": size["width"],
                "height": size["height"],
                "file_size": len(size["data"]),
            }
            for size in sizes
        ]
        fields: dict[str, Any] = {"photo": photo}
        if caption:
            fields["caption"] = caption
            m = re.match(r"/[A-Za-z0-9_]+(@[A-Za-z0-9_]+)?", caption)
            if m:
                fields["caption_entities"] = [
                    {"type": "bot_command", "offset": 0, "length": _utf16_len(m.group(0))}
                ]
        return await self.tg._deliver({"message": self._message(**fields)})

    def _keyboard_messages(self) -> list[dict[str, Any]]:
        return [
            m for m in reversed(self.inbox) if (m.get("reply_markup") or {}).get("inline_keyboard")
        ]

    async def press(self, button: str, message: dict[str, Any] | None = None) -> dict[str, Any]:
        """Press an inline button (by text or callback_data) of the latest message that has it."""
        if message is not None:
            current = self.tg.message(self.id, message["message_id"]) or message
            candidates = (
                [current] if (current.get("reply_markup") or {}).get("inline_keyboard") else []
            )
        else:
            candidates = self._keyboard_messages()
        if not candidates:
            raise LookupError(f"the bot sent no inline keyboard to user {self.id}")
        for msg in candidates:
            buttons = [b for row in msg["reply_markup"]["inline_keyboard"] for b in row]
            found = next((b for b in buttons if b.get("text") == button), None)
            found = found or next((b for b in buttons if b.get("callback_data") == button), None)
            if found is None:
                continue
            if "callback_data" not in found:
                raise LookupError(f"button {button!r} has no callback_data: {found!r}")
            query_id = self.tg._next_id("cbq")
            query = {
                "id": query_id,
                "from": self.user_dict,
                "message": msg,
                "chat_instance": f"ci{self.id}",
                "data": found["callback_data"],
            }
            self.tg._callback_queries[query_id] = query
            return await self.tg._deliver({"callback_query": query})
        latest = candidates[0]
        labels = [
            (b.get("text"), b.get("callback_data"))
            for row in latest["reply_markup"]["inline_keyboard"]
            for b in row
        ]
        raise LookupError(
            f"no button {button!r} for user {self.id}; latest keyboard "
            f"(message {latest['message_id']}) has {labels!r}"
        )

    async def pay(
        self, invoice_message: Any = None, *, timeout: float | None = None
    ) -> str | None:
        """Pay the invoice; return the charge id, or None if declined (see last_payment_error)."""
        invoice = self.tg._resolve_invoice(self.id, invoice_message)
        query_id = self.tg._next_id("pcq")
        query = {
            "id": query_id,
            "from": self.user_dict,
            "currency": invoice.currency,
            "total_amount": invoice.total_amount,
            "invoice_payload": invoice.payload,
        }
        self.tg._precheckout_queries[query_id] = self.tg.clock()
        self.last_payment_error = None
        await self.tg._deliver({"pre_checkout_query": query})
        wait = self.tg.precheckout_deadline if timeout is None else timeout
        try:
            answer = await self.tg.wait_until(
                lambda: self.tg.precheckout_answers.get(query_id), wait
            )
        except TimeoutError:
            raise TimeoutError(
                f"the bot did not answer pre_checkout_query {query_id} within {wait} s "
                "(is pre_checkout_query in allowed_updates and handled?)"
            ) from None
        if not answer["ok"]:
            self.last_payment_error = answer["error_message"]
            return None
        charge_id = self.tg._next_id("stxFAKE")
        await self.deliver_payment(invoice, charge_id)
        return charge_id

    async def deliver_payment(
        self, invoice: Any = None, charge_id: str | None = None
    ) -> dict[str, Any]:
        """Deliver a successful_payment message for an invoice with a chosen charge id."""
        inv = self.tg._resolve_invoice(self.id, invoice)
        charge_id = charge_id or self.tg._next_id("stxFAKE")
        self.tg.charges.setdefault(
            charge_id,
            Charge(charge_id, self.id, inv.total_amount, inv.currency, inv.payload),
        )
        payment = {
            "currency": inv.currency,
            "total_amount": inv.total_amount,
            "invoice_payload": inv.payload,
            "telegram_payment_charge_id": charge_id,
            "provider_payment_charge_id": "",
        }
        return await self.tg._deliver({"message": self._message(successful_payment=payment)})

    async def wait_for_message(
        self,
        predicate: Callable[[dict[str, Any]], bool] | None = None,
        timeout: float = 15.0,
    ) -> dict[str, Any]:
        """Wait for a bot message to this user sent since this user's last action."""
        return await self.tg.wait_for_message(self.id, predicate, timeout)


def aiogram_bot(tg: FakeTelegram, token: str | None = None, **kwargs: Any) -> Any:
    """Build a real aiogram Bot whose session talks to this fake."""
    from aiogram import Bot
    from aiogram.client.session.aiohttp import AiohttpSession
    from aiogram.client.telegram import TelegramAPIServer

    session = AiohttpSession(api=TelegramAPIServer.from_base(tg.base_url))
    return Bot(token or tg.token, session=session, **kwargs)


async def close_bot(bot: Any) -> None:
    """Close an aiogram Bot's HTTP session without aiogram's 250 ms SSL grace sleep."""
    http = getattr(bot.session, "_session", None)  # plain HTTP to 127.0.0.1: no SSL to drain
    if http is not None and not http.closed:
        await http.close()
    await bot.session.close()


def button_texts(message: dict[str, Any]) -> list[str]:
    """Return the texts of a message's inline buttons, row by row."""
    rows: Iterable[list[dict[str, Any]]] = (message.get("reply_markup") or {}).get(
        "inline_keyboard", []
    )
    return [b.get("text", "") for row in rows for b in row]
