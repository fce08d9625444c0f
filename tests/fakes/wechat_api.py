"""A fake WeChat: the Official Account platform and WeChat Pay APIv3, over real HTTP.

- It pushes users' messages to the bot's `/wechat` like WeChat does: signed (sha1 of token,
  timestamp, nonce), in plain or safe mode (AES, `msg_signature`), waiting `timeout` seconds
  (5 s on WeChat) per try and retrying the same MsgId up to `tries` times (3) on a timeout or an
  error; a passive reply is decrypted and its signature checked.
- It serves the API the bot calls: `cgi-bin/token`, `cgi-bin/stable_token`, customer-service
  messages (40001/42001 for bad tokens, 45015 outside the 48-hour window; text, image and
  `msgmenu`, whose items a user clicks with `FakeUser.click_item`: a text message carrying
  `bizmsgmenuid`, as WeChat sends it), template messages, media upload, menu create/get/delete.
- It serves WeChat Pay APIv3: Native orders, order query, close, refund; every request's
  `Authorization` is verified with the merchant public key and every answer is signed with the
  platform key; `pay()` sends signed, AES-256-GCM encrypted notifications to the order's
  notify_url (or none, or forged, or with a wrong amount).

The RSA keys (merchant and platform) are generated when the fake starts.

    async with FakeWeChat(tmp_path) as wx:
        settings = make_settings(url, **wx.settings(), wechatpay_notify_url=...)
        user = wx.user("oUser1", safe=True)
        delivery = await user.send_text("课程")
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import secrets
import string
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from defusedxml.ElementTree import fromstring
from wechatpy.crypto import WeChatCrypto

from tests.conftest import free_port

SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"
WINDOW_SECONDS = 48 * 3600


def sha1_signature(*parts: str) -> str:
    """WeChat's signature: sha1 of the sorted parts joined."""
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def _rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem_private(key) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _pem_public(key) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def rsa_sign(key, message: str) -> str:
    """RSA-SHA256 PKCS#1 v1.5 signature, base64."""
    return base64.b64encode(
        key.sign(message.encode(), padding.PKCS1v15(), hashes.SHA256())
    ).decode()


def xml_of(fields: dict[str, Any]) -> str:
    """A flat WeChat XML message."""
    inner = "".join(
        f"<{k}>{v}</{k}>" if isinstance(v, int) else f"<{k}><![CDATA[{v}]]></{k}>"
        for k, v in fields.items()
    )
    return f"<xml>{inner}</xml>"


def flat(xml: str) -> dict[str, str]:
    """A flat XML message as a dict."""
    return {child.tag: (child.text or "") for child in fromstring(xml)}


@dataclass
class Delivery:
    """One message pushed to the bot: every try, and what the user finally saw."""

    msg_id: int | None
    tries: list[dict] = field(default_factory=list)
    reply: str | None = None
    failed: bool = False

    @property
    def answer_times(self) -> list[float]:
        """Seconds each answered try took."""
        return [t["seconds"] for t in self.tries if t.get("status") is not None]


class FakeUser:
    """A follower who writes to the Official Account."""

    def __init__(self, fake: FakeWeChat, openid: str, safe: bool) -> None:
        self.fake = fake
        self.openid = openid
        self.safe = safe

    @property
    def messages(self) -> list[dict]:
        """Everything the user received (passive replies and customer-service messages)."""
        return self.fake.received[self.openid]

    def texts(self) -> list[str]:
        """The texts the user received, in order (a msgmenu as the text the user sees)."""
        return [m["text"] for m in self.messages if m["type"] in ("text", "msgmenu")]

    def menus(self) -> list[dict]:
        """The msgmenu messages the user received."""
        return [m for m in self.messages if m["type"] == "msgmenu"]

    async def click_item(self, menu: dict, n: int) -> Delivery:
        """Click item `n` (from 1) of a received msgmenu: WeChat sends its content as a text
        message with `bizmsgmenuid`."""
        item = menu["menu"]["list"][n - 1]
        msg_id = next(self.fake.msg_ids)
        fields = {
            "MsgType": "text",
            "Content": item["content"],
            "MsgId": msg_id,
            "bizmsgmenuid": int(item["id"]) if item["id"].isdigit() else item["id"],
        }
        return await self.push(fields, msg_id)

    async def send_text(self, content: str, msg_id: int | None = None) -> Delivery:
        """Type a message."""
        msg_id = msg_id or next(self.fake.msg_ids)
        return await self.push({"MsgType": "text", "Content": content, "MsgId": msg_id}, msg_id)

    async def send_image(self, data: bytes) -> Delivery:
        """Send a picture: WeChat keeps it as temporary media and passes its MediaId."""
        msg_id = next(self.fake.msg_ids)
        media_id = "USERMEDIA_" + secrets.token_hex(8)
        self.fake.media[media_id] = data
        fields = {
            "MsgType": "image",
            "PicUrl": f"http://127.0.0.1:{self.fake.port}/pic/{media_id}",
            "MediaId": media_id,
            "MsgId": msg_id,
        }
        return await self.push(fields, msg_id)

    async def event(self, event: str, key: str | None = None, **extra) -> Delivery:
        """An event (subscribe, SCAN, CLICK, unsubscribe …)."""
        fields: dict[str, Any] = {"MsgType": "event", "Event": event}
        if key is not None:
            fields["EventKey"] = key
        fields.update(extra)
        return await self.push(fields, None)

    async def subscribe(self, scene: str | None = None) -> Delivery:
        """Follow the account (scanning a parametric QR code when `scene` is given)."""
        if scene is None:
            return await self.event("subscribe")
        return await self.event("subscribe", f"qrscene_{scene}", Ticket="TICKET")

    async def click(self, key: str) -> Delivery:
        """Press a custom-menu button."""
        return await self.event("CLICK", key)

    async def push(self, fields: dict[str, Any], msg_id: int | None) -> Delivery:
        """Deliver one message like WeChat: same MsgId/CreateTime on every try."""
        self.fake.active[self.openid] = time.time()
        body = {
            "ToUserName": self.fake.original_id,
            "FromUserName": self.openid,
            "CreateTime": next(self.fake.create_times),
            **fields,
        }
        return await self.fake.deliver(self.openid, xml_of(body), msg_id, self.safe)

    async def wait_for(self, predicate, timeout: float = 15.0) -> dict:
        """The first message (received so far or soon) matching `predicate`."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for message in self.messages:
                if predicate(message):
                    return message
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{self.openid} never got it; got {self.messages}")
            await asyncio.sleep(0.02)


class FakeWeChat:
    """The fake WeChat servers (Official Account API + WeChat Pay) in one aiohttp app."""

    def __init__(
        self,
        key_dir: Path,
        timeout: float = 5.0,
        tries: int = 3,
        appid: str = "wx0123456789fake",
        mchid: str = "1900000109",
    ) -> None:
        self.key_dir = Path(key_dir)
        self.timeout = timeout
        self.tries = tries
        self.appid = appid
        self.secret = "fake-app-secret-" + secrets.token_hex(4)
        self.token = "faketoken" + secrets.token_hex(4)
        alphabet = string.ascii_letters + string.digits
        self.aes_key = "".join(secrets.choice(alphabet) for _ in range(43))
        self.original_id = "gh_fake000001"
        self.mchid = mchid
        self.apiv3_key = "".join(secrets.choice(alphabet) for _ in range(32))
        self.public_key_id = "PUB_KEY_ID_0114232134912410000000000000"
        self.serial_no = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"
        self.merchant_key = _rsa_key()
        self.platform_key = _rsa_key()
        self.port = free_port()
        self.bot_url = ""
        self.crypto = WeChatCrypto(self.token, self.aes_key, self.appid)
        self.msg_ids = itertools.count(10_000_000_000_000_001)
        self.create_times = itertools.count(int(time.time()))
        # Official Account state
        self.access_tokens: dict[str, float] = {}  # token -> expiry (time.time())
        self.token_fetches = 0
        self.stable_fetches = 0
        self.api_calls: list[tuple[str, dict]] = []
        self.received: dict[str, list[dict]] = {}
        self.active: dict[str, float] = {}  # openid -> last interaction (48 h window)
        self.media: dict[str, bytes] = {}
        self.menu: dict | None = None
        self.templates: list[dict] = []
        self.fail_next_sends = 0
        self.refuse_menus = False  # msgmenu answered 48001 (an account without the right)
        # WeChat Pay state
        self.orders: dict[str, dict] = {}
        self.refunds: list[dict] = []
        self.notifications: list[dict] = []
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None

    # --- set-up --------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/cgi-bin/"

    @property
    def pay_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def settings(self) -> dict[str, Any]:
        """Settings that point a coursebot at this fake (WeChat and WeChat Pay)."""
        self.key_dir.mkdir(parents=True, exist_ok=True)
        private = self.key_dir / "apiclient_key.pem"
        public = self.key_dir / "pub_key.pem"
        private.write_text(_pem_private(self.merchant_key))
        public.write_text(_pem_public(self.platform_key))
        return dict(
            wechat_token=self.token,
            wechat_app_id=self.appid,
            wechat_app_secret=self.secret,
            wechat_aes_key=self.aes_key,
            wechat_api_url=self.api_url,
            wechatpay_mch_id=self.mchid,
            wechatpay_cert_serial_no=self.serial_no,
            wechatpay_private_key_path=str(private),
            wechatpay_apiv3_key=self.apiv3_key,
            wechatpay_api_url=self.pay_url,
            wechatpay_public_key_path=str(public),
            wechatpay_public_key_id=self.public_key_id,
        )

    async def __aenter__(self) -> FakeWeChat:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        r = app.router
        r.add_get("/cgi-bin/token", self._token)
        r.add_post("/cgi-bin/stable_token", self._stable_token)
        r.add_post("/cgi-bin/message/custom/send", self._custom_send)
        r.add_post("/cgi-bin/message/template/send", self._template_send)
        r.add_post("/cgi-bin/media/upload", self._media_upload)
        r.add_get("/cgi-bin/media/get", self._media_get)
        r.add_post("/cgi-bin/menu/create", self._menu_create)
        r.add_get("/cgi-bin/menu/get", self._menu_get)
        r.add_get("/cgi-bin/menu/delete", self._menu_delete)
        r.add_post("/v3/pay/transactions/native", self._pay_native)
        r.add_get("/v3/pay/transactions/out-trade-no/{no}", self._pay_query)
        r.add_get("/v3/pay/transactions/id/{txid}", self._pay_query_id)
        r.add_post("/v3/pay/transactions/out-trade-no/{no}/close", self._pay_close)
        r.add_post("/v3/refund/domestic/refunds", self._pay_refund)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self._http = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc) -> None:
        if self._http is not None:
            await self._http.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def user(self, openid: str, safe: bool = False) -> FakeUser:
        """A follower; `safe` pushes their messages in safe (AES) mode."""
        self.received.setdefault(openid, [])
        return FakeUser(self, openid, safe)

    def close_window(self, openid: str) -> None:
        """The user last wrote more than 48 hours ago."""
        self.active[openid] = time.time() - WINDOW_SECONDS - 1

    def expire_tokens(self) -> None:
        """Every access token stops working (42001), as after its 7200 s."""
        self.access_tokens = {token: 0.0 for token in self.access_tokens}

    def calls(self, path: str) -> list[dict]:
        """The JSON bodies of the API calls to `path` (e.g. `message/custom/send`)."""
        return [body for p, body in self.api_calls if p == path]

    # --- pushing messages to the bot -----------------------------------------------------

    def _query(self, encrypt: str | None) -> tuple[dict[str, str], str]:
        timestamp, nonce = str(int(time.time())), secrets.token_hex(5)
        query = {
            "signature": sha1_signature(self.token, timestamp, nonce),
            "timestamp": timestamp,
            "nonce": nonce,
            "openid": "",
        }
        if encrypt is not None:
            query["encrypt_type"] = "aes"
            query["msg_signature"] = sha1_signature(self.token, timestamp, nonce, encrypt)
        return query, nonce

    def encrypted(self, xml: str) -> tuple[str, str]:
        """A safe-mode body for `xml` and its Encrypt value."""
        envelope = self.crypto.encrypt_message(xml, "n", str(int(time.time())))
        encrypt = flat(envelope)["Encrypt"]
        body = xml_of({"ToUserName": self.original_id, "Encrypt": encrypt})
        return body, encrypt

    async def post_raw(
        self, body: bytes | str, safe_encrypt: str | None = None, query: dict | None = None
    ) -> aiohttp.ClientResponse:
        """POST a body to the bot's /wechat, signed (tests of refusals use this)."""
        signed, _ = self._query(safe_encrypt)
        async with self._http.post(
            f"{self.bot_url}/wechat",
            params=query if query is not None else signed,
            data=body,
            headers={"Content-Type": "text/xml"},
        ) as response:
            await response.read()
            return response

    async def deliver(self, openid: str, xml: str, msg_id: int | None, safe: bool) -> Delivery:
        """Push `xml` to the bot and retry like WeChat until it answers in time."""
        delivery = Delivery(msg_id)
        body, encrypt = self.encrypted(xml) if safe else (xml, None)
        for attempt in range(self.tries):
            query, _ = self._query(encrypt)
            started = time.perf_counter()
            record: dict[str, Any] = {"attempt": attempt + 1, "status": None}
            delivery.tries.append(record)
            try:
                async with self._http.post(
                    f"{self.bot_url}/wechat",
                    params=query,
                    data=body.encode(),
                    headers={"Content-Type": "text/xml"},
                    timeout=aiohttp.ClientTimeout(total=self.timeout),
                ) as response:
                    text = await response.text()
                    record.update(status=response.status, seconds=time.perf_counter() - started)
            except (TimeoutError, aiohttp.ClientError) as error:
                record.update(error=type(error).__name__, seconds=time.perf_counter() - started)
                continue
            if response.status != 200:
                continue
            if text.strip() in ("", "success"):
                return delivery
            delivery.reply = self._read_passive(openid, text, safe)
            return delivery
        delivery.failed = True  # the user sees 该公众号暂时无法提供服务
        return delivery

    def _read_passive(self, openid: str, text: str, safe: bool) -> str:
        if safe:
            envelope = flat(text)
            expected = sha1_signature(
                self.token, envelope["TimeStamp"], envelope["Nonce"], envelope["Encrypt"]
            )
            assert envelope["MsgSignature"] == expected, "passive reply signature is wrong"
            text = self.crypto.decrypt_message(
                text, envelope["MsgSignature"], envelope["TimeStamp"], envelope["Nonce"]
            )
        fields = flat(text)
        assert fields["ToUserName"] == openid and fields["FromUserName"] == self.original_id
        content = fields.get("Content", "")
        self.received[openid].append({"via": "passive", "type": "text", "text": content})
        return content

    # --- Official Account API ------------------------------------------------------------

    def _new_token(self) -> str:
        token = "ACCESS_" + secrets.token_hex(16)
        self.access_tokens[token] = time.time() + 7200
        return token

    async def _token(self, request: web.Request) -> web.Response:
        q = request.query
        if (q.get("appid"), q.get("secret")) != (self.appid, self.secret):
            return web.json_response({"errcode": 40013, "errmsg": "invalid appid"})
        self.token_fetches += 1
        self.access_tokens.clear()
        return web.json_response({"access_token": self._new_token(), "expires_in": 7200})

    async def _stable_token(self, request: web.Request) -> web.Response:
        data = await request.json()
        if (data.get("appid"), data.get("secret")) != (self.appid, self.secret):
            return web.json_response({"errcode": 40013, "errmsg": "invalid appid"})
        self.token_fetches += 1
        self.stable_fetches += 1
        now = time.time()
        valid = [t for t, exp in self.access_tokens.items() if exp > now]
        if valid and not data.get("force_refresh"):
            token = valid[-1]
            return web.json_response(
                {"access_token": token, "expires_in": int(self.access_tokens[token] - now)}
            )
        self.access_tokens.clear()
        return web.json_response({"access_token": self._new_token(), "expires_in": 7200})

    def _check_token(self, request: web.Request) -> dict | None:
        token = request.query.get("access_token", "")
        if token not in self.access_tokens:
            return {"errcode": 40001, "errmsg": "invalid credential, access_token is invalid"}
        if self.access_tokens[token] <= time.time():
            return {"errcode": 42001, "errmsg": "access_token expired"}
        return None

    async def _custom_send(self, request: web.Request) -> web.Response:
        data = json.loads(await request.read())
        self.api_calls.append(("message/custom/send", data))
        error = self._check_token(request)
        if error:
            return web.json_response(error)
        if self.fail_next_sends > 0:
            self.fail_next_sends -= 1
            return web.json_response({"errcode": -1, "errmsg": "system error"})
        openid = data.get("touser", "")
        if time.time() - self.active.get(openid, 0) > WINDOW_SECONDS:
            return web.json_response(
                {
                    "errcode": 45015,
                    "errmsg": "response out of time limit or subscription is canceled",
                }
            )
        kind = data.get("msgtype")
        message: dict[str, Any] = {"via": "custom", "type": kind}
        if kind == "text":
            message["text"] = data["text"]["content"]
        elif kind == "image":
            media_id = data["image"]["media_id"]
            if media_id not in self.media:
                return web.json_response({"errcode": 40007, "errmsg": "invalid media_id"})
            message["image"] = self.media[media_id]
        elif kind == "msgmenu":
            if self.refuse_menus:
                return web.json_response({"errcode": 48001, "errmsg": "api unauthorized"})
            menu = data["msgmenu"]
            if not menu.get("list") or any(
                not str(i.get("id", "")) or not i.get("content") for i in menu["list"]
            ):
                return web.json_response({"errcode": 40008, "errmsg": "invalid message type"})
            message["menu"] = menu
            lines = [menu.get("head_content", ""), *(i["content"] for i in menu["list"])]
            message["text"] = "\n".join(filter(None, [*lines, menu.get("tail_content", "")]))
        else:
            message["body"] = data
        self.received.setdefault(openid, []).append(message)
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def _template_send(self, request: web.Request) -> web.Response:
        data = json.loads(await request.read())
        self.api_calls.append(("message/template/send", data))
        error = self._check_token(request)
        if error:
            return web.json_response(error)
        self.templates.append(data)
        return web.json_response({"errcode": 0, "errmsg": "ok", "msgid": len(self.templates)})

    async def _media_upload(self, request: web.Request) -> web.Response:
        error = self._check_token(request)
        if error:
            return web.json_response(error)
        form = await request.post()
        media = form.get("media")
        if media is None or request.query.get("type") != "image":
            return web.json_response({"errcode": 40004, "errmsg": "invalid media type"})
        data = media.file.read()
        media_id = "MEDIA_" + secrets.token_hex(8)
        self.media[media_id] = data
        self.api_calls.append(("media/upload", {"media_id": media_id, "size": len(data)}))
        return web.json_response({"type": "image", "media_id": media_id, "created_at": 1})

    async def _media_get(self, request: web.Request) -> web.Response:
        """Temporary media by media_id: the bytes, or a JSON error like WeChat's."""
        error = self._check_token(request)
        if error:
            return web.json_response(error)
        data = self.media.get(request.query.get("media_id", ""))
        self.api_calls.append(("media/get", {"media_id": request.query.get("media_id")}))
        if data is None:
            return web.json_response({"errcode": 40007, "errmsg": "invalid media_id"})
        return web.Response(body=data, content_type="image/jpeg")

    async def _menu_create(self, request: web.Request) -> web.Response:
        error = self._check_token(request)
        if error:
            return web.json_response(error)
        data = json.loads(await request.read())
        buttons = data.get("button", [])
        if not 1 <= len(buttons) <= 3 or any(len(b.get("sub_button", [])) > 5 for b in buttons):
            return web.json_response({"errcode": 40016, "errmsg": "invalid button size"})
        for button in buttons:
            for item in [button, *button.get("sub_button", [])]:
                if len(item.get("key", "").encode()) > 128:
                    return web.json_response({"errcode": 40019, "errmsg": "invalid button key"})
        self.menu = data
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def _menu_get(self, request: web.Request) -> web.Response:
        error = self._check_token(request)
        if error:
            return web.json_response(error)
        if self.menu is None:
            return web.json_response({"errcode": 46003, "errmsg": "menu no exist"})
        return web.json_response({"menu": self.menu})

    async def _menu_delete(self, request: web.Request) -> web.Response:
        self.menu = None
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    # --- WeChat Pay APIv3 ----------------------------------------------------------------

    def _signed(self, status: int, data: dict | None, key=None) -> web.Response:
        body = json.dumps(data, ensure_ascii=False) if data is not None else ""
        timestamp, nonce = str(int(time.time())), secrets.token_hex(16)
        headers = {
            "Wechatpay-Timestamp": timestamp,
            "Wechatpay-Nonce": nonce,
            "Wechatpay-Signature": rsa_sign(
                key or self.platform_key, f"{timestamp}\n{nonce}\n{body}\n"
            ),
            "Wechatpay-Serial": self.public_key_id,
            "Wechatpay-Signature-Type": SIGNATURE_TYPE,
            "Request-ID": uuid.uuid4().hex,
        }
        if data is None:
            return web.Response(status=status, headers=headers)
        return web.Response(
            status=status, text=body, headers=headers, content_type="application/json"
        )

    async def _authorised(self, request: web.Request) -> tuple[bool, str]:
        body = (await request.read()).decode()
        header = request.headers.get("Authorization", "")
        scheme, _, params = header.partition(" ")
        fields = dict(part.strip().split("=", 1) for part in params.split(",") if "=" in part)
        fields = {k: v.strip('"') for k, v in fields.items()}
        message = (
            f"{request.method}\n{request.rel_url}\n{fields.get('timestamp')}\n"
            f"{fields.get('nonce_str')}\n{body}\n"
        )
        try:
            self.merchant_key.public_key().verify(
                base64.b64decode(fields.get("signature", "")),
                message.encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except Exception:
            return False, body
        ok = scheme == SIGNATURE_TYPE and fields.get("mchid") == self.mchid
        return ok and fields.get("serial_no") == self.serial_no, body

    def _unauthorised(self) -> web.Response:
        return self._signed(401, {"code": "SIGN_ERROR", "message": "签名错误"})

    async def _pay_native(self, request: web.Request) -> web.Response:
        ok, body = await self._authorised(request)
        if not ok:
            return self._unauthorised()
        data = json.loads(body)
        no = data["out_trade_no"]
        if data.get("mchid") != self.mchid or data.get("appid") != self.appid:
            return self._signed(400, {"code": "PARAM_ERROR", "message": "mchid/appid"})
        total = int(data["amount"]["total"])
        if no in self.orders:
            order = self.orders[no]
            if order["total"] != total:
                return self._signed(400, {"code": "OUT_TRADE_NO_USED", "message": "used"})
            return self._signed(200, {"code_url": order["code_url"]})
        self.orders[no] = {
            "out_trade_no": no,
            "total": total,
            "description": data.get("description", ""),
            "notify_url": data.get("notify_url", ""),
            "time_expire": data.get("time_expire"),
            "trade_state": "NOTPAY",
            "transaction_id": None,
            "payer": None,
            "code_url": "weixin://wxpay/bizpayurl?pr=" + secrets.token_urlsafe(6),
        }
        return self._signed(200, {"code_url": self.orders[no]["code_url"]})

    def _resource(self, order: dict, total: int | None = None) -> dict:
        resource = {
            "appid": self.appid,
            "mchid": self.mchid,
            "out_trade_no": order["out_trade_no"],
            "trade_type": "NATIVE",
            "trade_state": order["trade_state"],
            "trade_state_desc": order["trade_state"],
            "amount": {
                "total": order["total"] if total is None else total,
                "payer_total": order["total"] if total is None else total,
                "currency": "CNY",
                "payer_currency": "CNY",
            },
        }
        if order["transaction_id"]:
            resource.update(
                transaction_id=order["transaction_id"],
                payer={"openid": order["payer"]},
                success_time="2026-11-23T16:00:00+08:00",
                bank_type="OTHERS",
            )
        return resource

    async def _pay_query(self, request: web.Request) -> web.Response:
        ok, _ = await self._authorised(request)
        if not ok:
            return self._unauthorised()
        order = self.orders.get(request.match_info["no"])
        if order is None:
            return self._signed(404, {"code": "ORDER_NOT_EXIST", "message": "订单不存在"})
        return self._signed(200, self._resource(order))

    async def _pay_query_id(self, request: web.Request) -> web.Response:
        ok, _ = await self._authorised(request)
        if not ok:
            return self._unauthorised()
        txid = request.match_info["txid"]
        order = next((o for o in self.orders.values() if o["transaction_id"] == txid), None)
        if order is None:
            return self._signed(404, {"code": "ORDER_NOT_EXIST", "message": "订单不存在"})
        return self._signed(200, self._resource(order))

    async def _pay_close(self, request: web.Request) -> web.Response:
        ok, _ = await self._authorised(request)
        if not ok:
            return self._unauthorised()
        order = self.orders.get(request.match_info["no"])
        if order is None:
            return self._signed(404, {"code": "ORDER_NOT_EXIST", "message": "订单不存在"})
        if order["trade_state"] == "NOTPAY":
            order["trade_state"] = "CLOSED"
        return self._signed(204, None)

    async def _pay_refund(self, request: web.Request) -> web.Response:
        ok, body = await self._authorised(request)
        if not ok:
            return self._unauthorised()
        data = json.loads(body)
        order = next(
            (o for o in self.orders.values() if o["transaction_id"] == data.get("transaction_id")),
            None,
        )
        if order is None:
            return self._signed(404, {"code": "RESOURCE_NOT_EXISTS", "message": "订单不存在"})
        amount = data["amount"]
        if amount["total"] != order["total"] or amount["refund"] > order["total"]:
            return self._signed(400, {"code": "PARAM_ERROR", "message": "amount"})
        if any(r["out_refund_no"] == data["out_refund_no"] for r in self.refunds):
            return self._signed(200, {"status": "SUCCESS", "out_refund_no": data["out_refund_no"]})
        refund = {
            "refund_id": "5030" + secrets.token_hex(8),
            "out_refund_no": data["out_refund_no"],
            "transaction_id": order["transaction_id"],
            "out_trade_no": order["out_trade_no"],
            "status": "SUCCESS",
            "amount": {"refund": amount["refund"], "total": order["total"], "currency": "CNY"},
        }
        self.refunds.append(refund)
        order["trade_state"] = "REFUND"
        return self._signed(200, refund)

    def order_by_code(self, code_url: str) -> dict:
        """The order a code_url (the QR code's content) belongs to."""
        return next(o for o in self.orders.values() if o["code_url"] == code_url)

    def notification(
        self, order: dict, total: int | None = None, forge: bool = False, age: float = 0.0
    ):
        """A signed, encrypted TRANSACTION.SUCCESS notification body and headers, signed
        `age` seconds ago (a replay of an old one when large)."""
        resource = json.dumps(self._resource(order, total), ensure_ascii=False)
        nonce = secrets.token_hex(6)
        cipher = AESGCM(self.apiv3_key.encode()).encrypt(
            nonce.encode(), resource.encode(), b"transaction"
        )
        body = json.dumps(
            {
                "id": str(uuid.uuid4()),
                "create_time": "2026-11-23T16:00:00+08:00",
                "resource_type": "encrypt-resource",
                "event_type": "TRANSACTION.SUCCESS",
                "summary": "支付成功",
                "resource": {
                    "original_type": "transaction",
                    "algorithm": "AEAD_AES_256_GCM",
                    "ciphertext": base64.b64encode(cipher).decode(),
                    "associated_data": "transaction",
                    "nonce": nonce,
                },
            },
            ensure_ascii=False,
        )
        timestamp, sig_nonce = str(int(time.time() - age)), secrets.token_hex(16)
        key = _rsa_key() if forge else self.platform_key
        headers = {
            "Content-Type": "application/json",
            "Wechatpay-Timestamp": timestamp,
            "Wechatpay-Nonce": sig_nonce,
            "Wechatpay-Signature": rsa_sign(key, f"{timestamp}\n{sig_nonce}\n{body}\n"),
            "Wechatpay-Serial": self.public_key_id,
            "Wechatpay-Signature-Type": SIGNATURE_TYPE,
        }
        return body, headers

    async def notify(
        self,
        order: dict,
        total: int | None = None,
        forge: bool = False,
        url: str | None = None,
        age: float = 0.0,
    ) -> int:
        """POST one notification of `order` to its notify_url; returns the HTTP status."""
        body, headers = self.notification(order, total, forge, age)
        async with self._http.post(
            url or order["notify_url"], data=body.encode(), headers=headers
        ) as response:
            await response.read()
            self.notifications.append({"status": response.status, "forged": forge})
            return response.status

    def mark_paid(self, order: dict, openid: str) -> None:
        """The payer scanned and paid: the order is SUCCESS at WeChat Pay."""
        if order["transaction_id"] is None:
            order["transaction_id"] = "4200" + "".join(
                secrets.choice(string.digits) for _ in range(24)
            )
        order["trade_state"] = "SUCCESS"
        order["payer"] = openid

    async def pay(self, code_url: str, openid: str, notify: bool = True, copies: int = 1):
        """Scan `code_url` and pay; deliver `copies` concurrent notifications (none when
        `notify` is False). Returns the order and the notification statuses."""
        order = self.order_by_code(code_url)
        self.mark_paid(order, openid)
        if not notify:
            return order, []
        statuses = await asyncio.gather(*(self.notify(order) for _ in range(copies)))
        return order, list(statuses)
