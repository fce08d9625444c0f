"""The WeChat Official Account channel (wechatpy) and WeChat Pay APIv3 Native (wechatpayv3).

HTTP routes on the one web server:

- `GET /wechat`: the console's URL check (signature verified, `echostr` echoed).
- `POST /wechat`: messages and events, plain or safe mode (`encrypt_type=aes`). A bad
  signature answers 403 before anything is parsed. Bodies over `WECHAT_MAX_BODY_BYTES` are
  refused unread (413); XML with a DTD or entities (XXE, billion laughs) is refused by
  defusedxml (400). Updates are deduplicated by MsgId, events by FromUserName+CreateTime
  (the inbox), and a redelivery of an update still being handled answers `success` at once.
- `POST /wechat/pay/notify`: WeChat Pay notifications (signature verified, resource
  decrypted, amount checked against the order) become `payment` updates of the core.

Answers: a handler that finishes within `WECHAT_REPLY_BUDGET_SECONDS` gets a passive reply
(several replies and their buttons become one numbered text: a passive reply cannot carry a
menu, and answering passively costs no customer-service quota); otherwise WeChat gets `success`
and the replies follow as customer-service messages. There, replies with buttons go out as one
`msgmenu` message (head_content, the numbered buttons as clickable items, tail_content) when
exactly one reply of the group has buttons and the menu fits; otherwise, or when WeChat refuses
the menu, as numbered text. A menu click comes back as a text message with `bizmsgmenuid`,
mapped to the button's payload (ids kept in the database). Typed numbers choose the numbered
options last shown (kept in the database, so every worker sees them).

Outgoing calls use wechatpy's synchronous client in worker threads (`asyncio.to_thread`) with
`auto_retry=False` and the access token read from the database or Redis
(`wechat_token.TokenKeeper`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import logging
import math
import secrets
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

import requests
from aiohttp import web
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring
from wechatpy.client import WeChatClient
from wechatpy.crypto import WeChatCrypto
from wechatpy.events import (
    EVENT_TYPES,
    ClickEvent,
    ScanEvent,
    SubscribeEvent,
    SubscribeScanEvent,
    UnsubscribeEvent,
)
from wechatpy.exceptions import InvalidSignatureException, WeChatClientException
from wechatpy.messages import (
    MESSAGE_TYPES,
    BaseMessage,
    ImageMessage,
    TextMessage,
    UnknownMessage,
)
from wechatpy.utils import check_signature

from bot.channels.base import Channel
from bot.channels.text import plain
from bot.channels.wechat_pay import Transaction, WeChatPayGateway, configured
from bot.channels.wechat_token import TokenKeeper
from bot.channels.wechat_writes import WriteBehind
from bot.core import (
    Button,
    ChannelError,
    Incoming,
    Invoice,
    PaymentInfo,
    RateLimited,
    RejectedMessage,
    Reply,
    Unreachable,
)
from bot.i18n import CNY, translator_for
from bot.parsing import is_number, parse_id
from services import downloads
from storage.db import is_sqlite

log = logging.getLogger(__name__)
NAME = "wechat"
PROVIDER = "wechatpay"
SUCCESS = "success"
#: Customer-service text limit is 2048 bytes; split below it at line breaks.
MAX_TEXT_BYTES = 2000
MAX_PAY_NOTIFY_BYTES = 64 * 1024
#: Larger pictures a user sends are not kept (a course cover is at most 2 MB).
MAX_PICTURE_BYTES = 2_500_000
TOKEN_ERRORS = {40001, 40014, 42001}
UNREACHABLE_ERRORS = {40003, 43004, 43019}  # bad openid, not following, blocked us
OUTSIDE_WINDOW = 45015
RATE_ERRORS = {45009, 45011}
REPLY_LIMIT_ERRORS = {45047}  # over the customer-service quota of the window
CLOSED_STATES = {"CLOSED", "REVOKED", "PAYERROR"}
SCENE_PREFIX = "qrscene_"
#: Seconds between two "last seen" writes for one user (per process).
SEEN_EVERY = 60.0
#: At most this many clickable items in one msgmenu (more become numbered text).
MAX_MENU_ITEMS = 10
#: Menu item ids kept per user, so a click on a recent (not only the last) menu still works.
MENU_IDS_KEPT = 40
MENU_REFUSED = {48001}  # api unauthorized: this account may not send msgmenu


class BadRequest(Exception):
    """A request refused before it reaches the core (size, XML)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def check_xml(data: bytes | str) -> None:
    """Refuse XML with a DTD, entities or external references, or that does not parse."""
    xml_fields(data)


def xml_fields(data: bytes | str) -> dict:
    """The fields of a WeChat XML body, parsed once and safely (no DTD, entities or external
    references), shaped as wechatpy's parser (xmltodict) shapes them."""
    try:
        root = fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (DefusedXmlException, ParseError, ValueError) as error:
        raise BadRequest(400, f"refused XML: {type(error).__name__}") from error
    return _element_fields(root)


def _element_fields(element) -> dict:
    """Children as a dict: text stripped (None when empty), nested ones as dicts, repeated
    ones as a list."""
    fields: dict[str, Any] = {}
    for child in element:
        value = _element_fields(child) if len(child) else (child.text or "").strip() or None
        if child.tag not in fields:
            fields[child.tag] = value
        elif isinstance(fields[child.tag], list):
            fields[child.tag].append(value)
        else:
            fields[child.tag] = [fields[child.tag], value]
    return fields


def message_of(fields: dict) -> BaseMessage:
    """The wechatpy message or event of parsed fields, picked as `wechatpy.parse_message`
    picks it (it parses the XML again with xmltodict: a third of this channel's own CPU)."""
    kind = str(fields["MsgType"] or "").lower()
    if kind != "event" and not kind.startswith("device_"):
        return MESSAGE_TYPES.get(kind, UnknownMessage)(fields)
    event = str(fields.get("Event") or "").lower() or None
    if kind.startswith("device_"):
        event = kind if event is None else f"device_{event}"
    key = str(fields.get("EventKey") or "")
    if event == "subscribe" and key.startswith(("scanbarcode|", "scanimage|")):
        event = fields["Event"] = "subscribe_scan_product"
    elif event == "subscribe" and key.startswith(SCENE_PREFIX):
        event = fields["Event"] = "subscribe_scan"
        fields["EventKey"] = key[len(SCENE_PREFIX) :]
    return EVENT_TYPES.get(event, UnknownMessage)(fields)


def cdata(value: str) -> str:
    """`value` as XML character data (a `]]>` inside cannot end the section)."""
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def passive_xml(message: BaseMessage, content: str) -> str:
    """The passive text reply to `message` (as wechatpy's TextReply renders it)."""
    return (
        f"<xml>\n<MsgType><![CDATA[text]]></MsgType>\n"
        f"<ToUserName>{cdata(message.source or '')}</ToUserName>\n"
        f"<FromUserName>{cdata(message.target or '')}</FromUserName>\n"
        f"<CreateTime>{int(time.time())}</CreateTime>\n"
        f"<Content>{cdata(content)}</Content>\n</xml>"
    )


async def read_limited(request: web.Request, limit: int) -> bytes:
    """The request body, or 413 when it is (or claims to be) longer than `limit`."""
    if request.content_length is not None and request.content_length > limit:
        raise BadRequest(413, "body too large")
    data = bytearray()
    while True:
        chunk = await request.content.read(limit + 1 - len(data))
        if not chunk:
            return bytes(data)
        data += chunk
        if len(data) > limit:
            raise BadRequest(413, "body too large")


def update_key(message: BaseMessage) -> str:
    """The inbox key of a WeChat message: its MsgId, or sender + CreateTime for events."""
    if message.id:
        return f"wx:msg:{message.id}"
    return f"wx:ev:{message.source}:{message.time}"


def options_key(user_ref: str) -> str:
    """The kv key of the numbered options last shown to a WeChat user."""
    return f"wechat:options:{user_ref}"


def menu_key(user_ref: str) -> str:
    """The kv key of the msgmenu item ids sent to a WeChat user (id -> payload)."""
    return f"wechat:menu:{user_ref}"


def menu_parts(replies: list[Reply]) -> tuple[str, list[Button], str] | None:
    """(head, buttons, tail) of one msgmenu for replies of which exactly one has buttons."""
    with_buttons = [i for i, reply in enumerate(replies) if reply.buttons]
    if len(with_buttons) != 1:
        return None
    at = with_buttons[0]
    buttons = [b for row in replies[at].buttons for b in row]
    if len(buttons) > MAX_MENU_ITEMS:
        return None
    head = "\n\n".join(plain(r.text) for r in replies[: at + 1] if r.text)
    tail = "\n\n".join(plain(r.text) for r in replies[at + 1 :] if r.text)
    return head, buttons, tail


def msgmenu(head: str, items: list[tuple[str, Button]], tail: str) -> dict | None:
    """The `msgmenu` body (items numbered like the text fallback), None when too long."""
    menu = {
        "head_content": head,
        "list": [
            {"id": item_id, "content": f"{n}. {plain(b.label)}"}
            for n, (item_id, b) in enumerate(items, start=1)
        ],
        "tail_content": tail,
    }
    size = len(head.encode()) + len(tail.encode())
    size += sum(len(item["content"].encode()) for item in menu["list"])
    return menu if size <= MAX_TEXT_BYTES else None


def render(replies: Iterable[Reply]) -> tuple[str, list[Button]]:
    """Replies as one plain text with options numbered across all of them."""
    lines: list[str] = []
    options: list[Button] = []
    for reply in replies:
        block = [plain(reply.text)] if reply.text else []
        for button in (b for row in reply.buttons for b in row):
            options.append(button)
            block.append(f"{len(options)}. {plain(button.label)}")
        if block:
            lines.append("\n".join(block))
    return "\n\n".join(lines), options


def split_bytes(text: str, limit: int = MAX_TEXT_BYTES) -> list[str]:
    """Split text at line breaks into pieces of at most `limit` UTF-8 bytes."""
    pieces: list[str] = []
    current = ""
    for line in text.split("\n"):
        while len(line.encode()) > limit:  # one very long line: cut by characters
            cut = len(line.encode()[:limit].decode("utf-8", "ignore"))
            if current:
                pieces.append(current)
                current = ""
            pieces.append(line[:cut])
            line = line[cut:]
        candidate = f"{current}\n{line}" if current else line
        if len(candidate.encode()) > limit:
            pieces.append(current)
            candidate = line
        current = candidate
    if current or not pieces:
        pieces.append(current)
    return pieces


def qr_png(data: str) -> bytes:
    """A QR code of `data` as PNG (segno, pure Python)."""
    import segno

    out = io.BytesIO()
    segno.make(data, error="m").save(out, kind="png", scale=8, border=2)
    return out.getvalue()


def order_id_of(payload: str) -> int | None:
    """The order id in an invoice payload `order:<id>`."""
    prefix, _, number = payload.partition(":")
    return parse_id(number) if prefix == "order" else None


def scene_command(key: str) -> tuple[str, str]:
    """A QR scene (`qrscene_course_5` on follow, `course_5` on scan) as /start arguments."""
    scene = key[len(SCENE_PREFIX) :] if key.startswith(SCENE_PREFIX) else key
    return "start", scene if scene.startswith("course_") else ""


def is_passive(reply: Reply) -> bool:
    """True when a reply can be part of a passive text answer."""
    return (
        reply.image is None
        and reply.invoice is None
        and reply.document is None
        and reply.to is None
    )


class WeChatChannel(Channel):
    """A WeChat Official Account (公众号) on the same core, paying through WeChat Pay."""

    name = NAME
    currency = CNY
    payment_provider = PROVIDER

    def __init__(self, app, refresher: bool | None = None) -> None:
        self.app = app
        settings = self.settings = app.settings
        self.token = settings.wechat_token.get_secret_value()
        self.appid = settings.wechat_app_id
        keys = [settings.wechat_aes_key, settings.wechat_aes_key_previous]
        self.cryptos = [
            WeChatCrypto(self.token, key.get_secret_value(), self.appid)
            for key in keys
            if key and key.get_secret_value()
        ]
        self.tokens = TokenKeeper(app, refresher=refresher)
        self.pay = WeChatPayGateway(settings) if configured(settings) else None
        self.api_base = settings.wechat_api_url.rstrip("/") + "/"
        self._requests = requests.Session()
        self._client: WeChatClient | None = None
        self._client_token: str | None = None
        self._inflight: dict[str, asyncio.Task] = {}
        self._background: set[asyncio.Task] = set()
        self._seen: dict[str, float] = {}  # user -> monotonic time of the last `seen` write
        self.seen_every = SEEN_EVERY
        self._shown: dict[str, list] = {}  # user -> options this process stored last
        # SQLite has one writer and every dispatch is a write transaction: dispatches (and the
        # write-behind) wait their turn here, first come first served, not in SQLite's busy
        # handler, which sleeps and serves no one in order (under a burst some waited past
        # its 15 s timeout: "database is locked"). Reads take no write lock and do not wait.
        self._writer = asyncio.Lock() if is_sqlite(settings.database_url) else None
        self.writes = WriteBehind(app.uow, self._write_state, turn=self._turn)
        self.menus = True  # buttons in customer-service messages as msgmenu

    # --- routes -------------------------------------------------------------------------

    def add_routes(self, web_app: web.Application) -> None:
        """`/wechat` (GET check, POST messages) and `/wechat/pay/notify`."""
        web_app.router.add_get("/wechat", self._on_check)
        web_app.router.add_post("/wechat", self._on_post)
        web_app.router.add_post("/wechat/pay/notify", self._on_pay_notify)

    async def stop(self) -> None:
        """Let replies being delivered finish (briefly), then close connections."""
        pending = list(self._background) + list(self._inflight.values())
        if pending:
            await asyncio.wait(pending, timeout=5)
        await self.writes.close()
        self._requests.close()
        await self.tokens.close()

    def _signed(self, query) -> bool:
        try:
            check_signature(
                self.token,
                query.get("signature", ""),
                query.get("timestamp", ""),
                query.get("nonce", ""),
            )
        except InvalidSignatureException:
            return False
        return True

    async def _on_check(self, request: web.Request) -> web.Response:
        if not self._signed(request.query):
            return web.Response(status=403, text="forbidden")
        return web.Response(text=request.query.get("echostr", ""))

    async def _on_post(self, request: web.Request) -> web.Response:
        query = request.query
        if not self._signed(query):
            return web.Response(status=403, text="forbidden")
        safe = query.get("encrypt_type", "raw").lower() == "aes"
        try:
            body = await read_limited(request, self.settings.wechat_max_body_bytes)
            fields = xml_fields(body)
            if safe:
                fields = xml_fields(self._decrypt(fields, query))
            message = message_of(fields)
        except BadRequest as error:
            log.warning("refused a /wechat request: %s", error)
            return web.Response(status=error.status, text=str(error))
        except InvalidSignatureException:
            return web.Response(status=403, text="forbidden")
        except (KeyError, TypeError, ValueError, UnicodeDecodeError) as error:
            log.warning("unreadable /wechat message: %s", type(error).__name__)
            return web.Response(status=400, text="bad message")
        answer = await self._answer(message)
        if answer is None:
            return web.Response(text=SUCCESS)
        xml_out = passive_xml(message, answer)
        if safe:
            nonce = query.get("nonce") or secrets.token_hex(8)
            xml_out = self.cryptos[0].encrypt_message(xml_out, nonce, query.get("timestamp"))
        return web.Response(text=xml_out, content_type="application/xml")

    def _decrypt(self, envelope: dict, query) -> str:
        """Decrypt a safe-mode message with the current key, then the previous one."""
        if not self.cryptos:
            raise BadRequest(400, "safe mode needs WECHAT_AES_KEY")
        last: Exception | None = None
        for crypto in self.cryptos:
            try:
                return crypto.decrypt_message(
                    envelope,
                    query.get("msg_signature", ""),
                    query.get("timestamp", ""),
                    query.get("nonce", ""),
                )
            except InvalidSignatureException:
                raise
            except Exception as error:  # wrong key: bad padding or app id
                last = error
        raise BadRequest(400, f"cannot decrypt: {type(last).__name__}")

    # --- inbound -------------------------------------------------------------------------

    async def to_incoming(self, message: BaseMessage) -> Incoming | None:
        """A parsed WeChat message or event as an Incoming (None: nothing to answer)."""
        user = message.source
        base = dict(channel=NAME, user_ref=user, update_key=update_key(message))
        if isinstance(message, SubscribeScanEvent | ScanEvent):
            command, args = scene_command(message.scene_id or "")
            return Incoming(kind="command", command=command, args=args, **base)
        if isinstance(message, SubscribeEvent):
            await self._reachable(user)
            command, args = scene_command(message.key or "")
            return Incoming(kind="command", command=command, args=args, **base)
        if isinstance(message, UnsubscribeEvent):
            async with self.app.uow() as uow:
                await uow.learners.mark_unreachable(NAME, user, self.app.clock.now())
                await uow.commit()
            return None
        if isinstance(message, ClickEvent):
            return self._menu_incoming(message.key or "", base)
        if isinstance(message, TextMessage):
            clicked = str(message._data.get("bizmsgmenuid") or "")
            if clicked:
                payload = await self._menu_payload(user, clicked)
                if payload is not None:
                    return Incoming(kind="button", payload=payload, **base)
            return await self._text_incoming(message.content or "", base)
        if isinstance(message, ImageMessage):  # no caption on WeChat: `/cover <id>` asks first
            return Incoming(kind="text", image=await self._picture(message.media_id), **base)
        if isinstance(message, UnknownMessage) or message.type == "event":
            return None  # VIEW, template delivery reports, popups …: nothing to say
        return Incoming(kind="command", command="help", **base)  # image, voice, location …

    async def _picture(self, media_id: str | None) -> bytes | None:
        """The bytes of a picture the user sent (temporary media), None when unavailable."""
        if not media_id:
            return None
        try:
            response = await self.api(lambda wx: wx.media.download(media_id))
        except ChannelError as error:
            log.warning("could not download a picture: %s", error)
            return None
        data = getattr(response, "content", None)
        return data if isinstance(data, bytes) and len(data) <= MAX_PICTURE_BYTES else None

    def _menu_incoming(self, key: str, base: dict) -> Incoming:
        if key.startswith("cmd:"):
            command, _, args = key[4:].partition(" ")
            return Incoming(kind="command", command=command.lower(), args=args, **base)
        return Incoming(kind="button", payload=key, **base)

    async def _text_incoming(self, text: str, base: dict) -> Incoming:
        text = text.strip()
        if text.startswith("/"):
            head, _, args = text[1:].partition(" ")
            return Incoming(
                kind="command", command=head.lower(), args=args.strip(), text=text, **base
            )
        if is_number(text) and len(text) <= 3:
            options = await self._options_of(base["user_ref"])
            if 1 <= int(text) <= len(options):
                return Incoming(kind="button", payload=options[int(text) - 1][1], **base)
        return Incoming(kind="text", text=text, **base)

    async def _options_of(self, user_ref: str) -> list:
        """The numbered options last shown to a user: pending in this process, or stored."""
        pending = self.writes.pending(user_ref)
        if pending is not None:
            return pending
        async with self.app.uow() as uow:
            await uow.read_only()  # no write lock: never waits behind a dispatch
            shown = await uow.kv.get(options_key(user_ref))
        return (shown or {}).get("options", [])

    async def _write_state(self, uow, options: dict[str, list], seen: dict[str, datetime]):
        """One batch of the write-behind: options shown, identities seen (and when)."""
        for user_ref, shown in options.items():
            await uow.kv.put(options_key(user_ref), {"options": shown})
        for user_ref, when in sorted(seen.items()):
            await uow.wechat.links.touch(NAME, user_ref, when)

    async def _menu_payload(self, user_ref: str, item_id: str) -> str | None:
        """The payload of a msgmenu item this user was sent (None: unknown or too old)."""
        async with self.app.uow() as uow:
            await uow.read_only()
            stored = await uow.kv.get(menu_key(user_ref))
        return (stored or {}).get("ids", {}).get(item_id)

    async def _reachable(self, user_ref: str) -> None:
        async with self.app.uow() as uow:
            await uow.learners.mark_reachable(NAME, user_ref)
            await uow.commit()

    async def _dispatch(self, msg: Incoming) -> list:
        async with self._turn():
            outputs = await self.app.dispatcher.dispatch(msg)
        now = time.monotonic()
        if outputs and now - self._seen.get(msg.user_ref, -math.inf) >= self.seen_every:
            self._seen[msg.user_ref] = now
            self.writes.touch(msg.user_ref)  # the channel used last gets proactive messages
        return outputs

    async def _answer(self, message: BaseMessage) -> str | None:
        """Handle a message within the budget: the passive text, or None (`success`).

        Everything that may wait (reading the options shown, the database's turn, the
        handler) runs inside the budget, so WeChat always gets an answer in time."""
        key = update_key(message)
        if key in self._inflight:  # WeChat's retry while we are still at it
            return None
        task = asyncio.create_task(self._handle_message(message))
        self._inflight[key] = task
        task.add_done_callback(lambda _t: self._inflight.pop(key, None))
        done, _ = await asyncio.wait({task}, timeout=self.settings.wechat_reply_budget_seconds)
        if not done:
            log.info("%s took longer than the reply budget; following up", key)
            self._spawn(self._follow_up(message.source, task))
            return None
        try:
            outputs = task.result()
        except Exception:
            log.exception("dispatch of %s failed", key)
            return None
        return await self._passive(message.source, outputs)

    def _turn(self) -> contextlib.AbstractAsyncContextManager:
        """This process's turn to write (SQLite); nothing to wait for on PostgreSQL."""
        return self._writer if self._writer is not None else contextlib.nullcontext()

    async def _handle_message(self, message: BaseMessage) -> list:
        """The outputs of one WeChat message (none when there is nothing to answer)."""
        msg = await self.to_incoming(message)
        return [] if msg is None else await self._dispatch(msg)

    async def _passive(self, user_ref: str, outputs: list) -> str | None:
        """The passive answer text, or None after handing the replies to customer service."""
        replies = [o for o in outputs if isinstance(o, Reply)]
        passive = [r for r in replies if is_passive(r)]
        if not passive or len(passive) != len(replies):
            if replies:
                self._spawn(self._deliver(user_ref, replies))
            return None
        text, options = render(passive)
        if len(text.encode()) > MAX_TEXT_BYTES:
            self._spawn(self._deliver(user_ref, replies))
            return None
        await self._remember(user_ref, options)
        return text

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _follow_up(self, user_ref: str, task: asyncio.Task) -> None:
        try:
            outputs = await task
        except Exception:
            log.exception("slow dispatch failed")
            return
        await self._deliver(user_ref, [o for o in outputs if isinstance(o, Reply)])

    async def _deliver(self, user_ref: str, replies: list[Reply]) -> None:
        """Send replies as customer-service messages: plain ones merged into one message."""
        group: list[Reply] = []

        async def flush() -> None:
            if group:
                replies = list(group)
                group.clear()
                await self._send_group(user_ref, replies)

        for reply in replies:
            try:
                if reply.to is not None and (reply.to.channel, reply.to.user_ref) != (
                    NAME,
                    user_ref,
                ):
                    await self.app.channels.get(reply.to.channel).send(reply.to.user_ref, reply)
                elif is_passive(reply):
                    group.append(reply)
                else:
                    await flush()
                    await self.send(user_ref, reply)
            except (ChannelError, KeyError) as error:
                log.warning("reply to %s not delivered: %s", user_ref[:6], error)
        try:
            await flush()
        except ChannelError as error:
            log.warning("reply to %s not delivered: %s", user_ref[:6], error)

    async def _remember(self, user_ref: str, options: list[Button]) -> None:
        """Keep the numbered options shown, for the user's next typed number (any worker)."""
        shown = [[b.label, b.payload] for b in options]
        if not shown or self._shown.get(user_ref) == shown:
            return
        self.writes.put_options(user_ref, shown)
        if len(self._shown) > 10_000:
            self._shown.clear()
        self._shown[user_ref] = shown

    # --- outbound ------------------------------------------------------------------------

    def _wx(self, token: str) -> WeChatClient:
        if self._client is None or self._client_token != token:
            client = WeChatClient(self.appid, "", access_token=token, timeout=10, auto_retry=False)
            client.API_BASE_URL = self.api_base
            client._http = self._requests
            self._client, self._client_token = client, token
        return self._client

    async def api(self, call: Callable[[WeChatClient], Any]) -> Any:
        """Run one wechatpy call in a thread with the shared token; errors as ChannelError."""
        token = await self.tokens.token()
        for attempt in (1, 2):
            client = self._wx(token)
            try:
                return await asyncio.to_thread(call, client)
            except WeChatClientException as error:
                code = error.errcode
                if code in TOKEN_ERRORS and attempt == 1:
                    token = await self.tokens.rejected(token)
                    continue
                raise self._error(code, error.errmsg) from error
            except requests.RequestException as error:
                raise ChannelError(f"WeChat API unreachable: {type(error).__name__}") from error
        raise ChannelError("WeChat refused the access token twice")

    @staticmethod
    def _error(code: int | None, message: str | None) -> ChannelError:
        text = f"{code} {message}"
        if code == OUTSIDE_WINDOW:
            return RejectedMessage(f"undeliverable: {OUTSIDE_WINDOW} outside the 48-hour window")
        if code in UNREACHABLE_ERRORS:
            return Unreachable(text)
        if code in RATE_ERRORS:
            return RateLimited(60.0, text)
        if code in REPLY_LIMIT_ERRORS:
            return RejectedMessage(f"undeliverable: {text}")
        if code is None or code < 0:
            return ChannelError(text)
        return RejectedMessage(text)

    async def _send_text(self, user_ref: str, text: str) -> None:
        try:
            await self.api(lambda c: c.message.send_text(user_ref, text))
        except RejectedMessage as error:
            template = self.settings.wechat_template_id
            if not template or str(OUTSIDE_WINDOW) not in str(error):
                raise
            data = {"content": {"value": text[:200]}}
            await self.api(lambda c: c.message.send_template(user_ref, template, data))

    async def send_image(self, user_ref: str, png: bytes) -> None:
        """Upload an image (temporary media) and send it."""
        uploaded = await self.api(
            lambda c: c.media.upload("image", ("image.png", io.BytesIO(png), "image/png"))
        )
        media_id = uploaded["media_id"]
        await self.api(lambda c: c.message.send_image(user_ref, media_id))

    async def _send_group(self, user_ref: str, replies: list[Reply]) -> None:
        """Text replies as one customer-service message: a msgmenu when it can be one,
        otherwise numbered text (split below the byte limit)."""
        text, options = render(replies)
        if not text:
            return
        await self._remember(user_ref, options)
        parts = menu_parts(replies) if self.menus else None
        if parts is not None and await self._send_menu(user_ref, *parts):
            return
        for piece in split_bytes(text):
            await self._send_text(user_ref, piece)

    async def _send_menu(self, user_ref: str, head: str, buttons: list[Button], tail: str):
        """Send a msgmenu; False (nothing sent) when it is too long or WeChat refuses it."""
        menu = msgmenu(head, [("", b) for b in buttons], tail)
        if menu is None:
            return False
        ids = await self._menu_ids(user_ref, buttons)
        for item, item_id in zip(menu["list"], ids, strict=True):
            item["id"] = item_id
        try:
            await self.api(lambda c: c.message.send_msg_menu(user_ref, menu))
        except RejectedMessage as error:
            if str(OUTSIDE_WINDOW) in str(error) and self.settings.wechat_template_id:
                return False  # the text path falls back to the template
            if not any(str(error).startswith(f"{code} ") for code in MENU_REFUSED):
                raise
            log.warning("WeChat refused msgmenu (%s); numbered text from now on", error)
            self.menus = False
            return False
        return True

    async def _menu_ids(self, user_ref: str, buttons: list[Button]) -> list[str]:
        """New msgmenu item ids for `buttons`, stored (with recent ones) for the click."""
        async with self.app.uow() as uow:
            stored = await uow.kv.get(menu_key(user_ref)) or {}
            serial = int(stored.get("serial", 0)) + 1
            ids = [str(serial * 100 + n) for n in range(1, len(buttons) + 1)]
            known = dict(stored.get("ids", {}))
            known.update(zip(ids, (b.payload for b in buttons), strict=True))
            kept = dict(list(known.items())[-MENU_IDS_KEPT:])
            await uow.kv.put(menu_key(user_ref), {"serial": serial % 10_000_000, "ids": kept})
            await uow.commit()
        return ids

    async def send(self, user_ref: str, reply: Reply) -> None:
        """Send one reply as customer-service messages (image, text or msgmenu, a download
        link for a document, WeChat Pay QR code)."""
        if reply.document is not None:
            reply = await self._with_download_link(user_ref, reply)
        if reply.image is not None:
            await self.send_image(user_ref, reply.image)
        await self._send_group(user_ref, [reply])
        if reply.invoice is not None:
            await self.send_invoice(user_ref, reply.invoice)

    async def _with_download_link(self, user_ref: str, reply: Reply) -> Reply:
        """The reply with its document replaced by a short-lived link to our web server:
        customer-service messages cannot carry files (see services.downloads)."""
        document = reply.document
        async with self.app.uow() as uow:
            url = await downloads.publish(
                uow, self.settings, document.filename, document.data, self.app.clock.now()
            )
            await uow.commit()
        t = await self._translator(user_ref)
        minutes = int(downloads.TTL.total_seconds() // 60)
        link = t("download.link", name=document.filename, url=url, minutes=minutes)
        text = "\n\n".join(filter(None, [reply.text, link]))
        return dataclasses.replace(reply, text=text, document=None)

    # --- WeChat Pay ----------------------------------------------------------------------

    async def _native_order(self, user_ref: str, invoice: Invoice) -> tuple[str, datetime]:
        """The code_url of a Native order for the invoice (a valid one is reused)."""
        order_id = order_id_of(invoice.payload)
        now = self.app.clock.now()
        async with self.app.uow() as uow:
            order = await uow.orders.get(order_id) if order_id else None
            if order is None or order.status != "pending":
                raise RejectedMessage("undeliverable: the order is not open")
            if (order.currency, order.amount) != (CNY, invoice.amount):
                raise RejectedMessage("undeliverable: the invoice does not match its order")
            row = await uow.wechat.pay.reusable(
                order.id, invoice.amount, now + timedelta(minutes=5)
            )
            if row is not None:
                return row.code_url, row.expires_at
            expires = now + timedelta(minutes=self.settings.wechatpay_order_expire_minutes)
            out_trade_no = f"CB{order.id}X{secrets.token_hex(4)}"
            await uow.wechat.pay.add(
                out_trade_no=out_trade_no,
                order_id=order.id,
                user_ref=user_ref,
                amount=invoice.amount,
                status="pending",
                created_at=now,
                expires_at=expires,
            )
            await uow.commit()
        code_url = await self.pay.create_native(
            invoice.title or invoice.description, out_trade_no, invoice.amount, expires
        )
        async with self.app.uow() as uow:
            row = await uow.wechat.pay.get(out_trade_no)
            row.code_url = code_url
            await uow.commit()
        return code_url, expires

    async def send_invoice(self, user_ref: str, invoice: Invoice) -> None:
        """A WeChat Pay Native order: its QR code as an image, then its code_url."""
        if self.pay is None:
            raise RejectedMessage("undeliverable: WeChat Pay is not configured (WECHATPAY_*)")
        if invoice.currency != CNY:
            raise RejectedMessage(f"undeliverable: WeChat Pay takes CNY, not {invoice.currency}")
        code_url, expires = await self._native_order(user_ref, invoice)
        t = await self._translator(user_ref)
        await self.send_image(user_ref, await asyncio.to_thread(qr_png, code_url))
        text = t(
            "wechat.pay.scan",
            title=plain(invoice.title),
            price=t.money(invoice.amount, CNY),
            url=code_url,
            until=t.when(expires),
        )
        await self._send_text(user_ref, text)

    async def _translator(self, user_ref: str):
        async with self.app.uow() as uow:
            identity = await uow.learners.identity(NAME, user_ref)
            learner = identity.learner if identity else None
        locale = (learner.locale if learner else None) or self.settings.default_locale
        return translator_for(locale, self.settings, learner.timezone if learner else None)

    async def _on_pay_notify(self, request: web.Request) -> web.Response:
        if self.pay is None:
            return web.json_response({"code": "FAIL", "message": "not configured"}, status=404)
        try:
            body = await read_limited(request, MAX_PAY_NOTIFY_BYTES)
        except BadRequest as error:
            return web.json_response({"code": "FAIL", "message": str(error)}, status=error.status)
        transaction = await self.pay.verify(request.headers, body)
        if transaction is None:
            log.warning("WeChat Pay notification with a bad signature or resource refused")
            return web.json_response({"code": "FAIL", "message": "signature"}, status=401)
        outcome = await self.settle(transaction)
        if outcome in ("mismatch", "unknown"):
            return web.json_response({"code": "FAIL", "message": outcome}, status=400)
        return web.json_response({"code": "SUCCESS", "message": "OK"})

    async def settle(self, tx: Transaction) -> str:
        """Act on a verified transaction: 'paid', 'duplicate', 'ignored', 'mismatch' or
        'unknown'. Only a SUCCESS for the right merchant, app, order and amount enrols."""
        if tx.trade_state != "SUCCESS":
            return "ignored"
        if tx.mchid != self.pay.mchid or (tx.appid and tx.appid != self.appid):
            log.error("WeChat Pay transaction for another merchant or app refused")
            return "mismatch"
        async with self.app.uow() as uow:
            row = await uow.wechat.pay.get(tx.out_trade_no)
            order = await uow.orders.get(row.order_id) if row else None
            facts = (row.user_ref, row.amount, row.order_id) if row else None
            priced = (order.currency, order.amount) if order else None
        if facts is None or priced is None:
            log.error("WeChat Pay transaction for an unknown out_trade_no")
            return "unknown"
        user_ref, amount, order_id = facts
        if (tx.currency, tx.total) != (CNY, amount) or priced != (CNY, amount):
            log.error(
                "WeChat Pay amount %s does not match order #%s (%s)", tx.total, order_id, amount
            )
            return "mismatch"
        if not tx.transaction_id:
            return "mismatch"
        info = PaymentInfo(
            currency=CNY,
            amount=tx.total,
            invoice_payload=f"order:{order_id}",
            charge_id=tx.transaction_id,
            provider=PROVIDER,
        )
        msg = Incoming(
            channel=NAME,
            user_ref=user_ref,
            update_key=f"wxpay:{tx.transaction_id}",
            kind="payment",
            payment=info,
        )
        async with self._turn():
            outputs = await self.app.dispatcher.dispatch(msg)
        async with self.app.uow() as uow:
            await uow.wechat.pay.settle(tx.out_trade_no, "paid", tx.transaction_id)
            await uow.commit()
        replies = [o for o in outputs if isinstance(o, Reply)]
        if replies:
            self._spawn(self._deliver(user_ref, replies))
            return "paid"
        return "duplicate"

    async def settle_unpaid(self, limit: int = 50) -> dict[str, int]:
        """Query Native orders that got no notification; settle paid ones, close expired."""
        counts = {"queried": 0, "paid": 0, "closed": 0}
        if self.pay is None:
            return counts
        now = self.app.clock.now()
        older = now - timedelta(seconds=self.settings.wechatpay_query_after_seconds)
        async with self.app.uow() as uow:
            rows = [
                (r.out_trade_no, r.expires_at)
                for r in await uow.wechat.pay.unsettled(older, limit)
            ]
        for out_trade_no, expires_at in rows:
            try:
                tx = await self.pay.query(out_trade_no)
            except ChannelError as error:
                log.warning("query of %s failed: %s", out_trade_no, error)
                continue
            counts["queried"] += 1
            status = None
            if tx is not None and tx.trade_state == "SUCCESS":
                if await self.settle(tx) in ("paid", "duplicate"):
                    counts["paid"] += 1
                continue
            if tx is None or tx.trade_state in CLOSED_STATES:
                status = "closed"
            elif expires_at <= now:
                with contextlib.suppress(ChannelError):
                    await self.pay.close(out_trade_no)
                status = "closed"
            async with self.app.uow() as uow:
                row = await uow.wechat.pay.get(out_trade_no)
                row.queried_at = now
                if status:
                    counts["closed"] += int(
                        await uow.wechat.pay.settle(out_trade_no, status, None)
                    )
                await uow.commit()
        return counts

    async def refund(self, user_ref: str, charge_id: str) -> None:
        """Refund a WeChat Pay transaction in full.

        Called inside the refunding handler's transaction, so it reads nothing from the
        database (SQLite has one writer): the amount comes from WeChat Pay's own record.
        """
        if self.pay is None:
            raise ChannelError("WeChat Pay is not configured")
        tx = await self.pay.query_transaction(charge_id)
        if tx is None or tx.total <= 0:
            raise ChannelError("unknown WeChat Pay transaction")
        await self.pay.refund(charge_id, tx.total)


async def settle_orders_job() -> dict[str, int]:
    """Scheduled job (every minute or so): settle Native orders that got no notification."""
    from scheduler.jobs import current_app

    app = current_app()
    if NAME not in app.channels:
        return {}
    return await app.channels.get(NAME).settle_unpaid()
