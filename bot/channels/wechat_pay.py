"""WeChat Pay APIv3, Native mode, through the `wechatpayv3` SDK (synchronous `requests`, so
every call runs in a worker thread, off the event loop).

The platform's answers and notifications are verified with the WeChat Pay platform public key
(`WECHATPAY_PUBLIC_KEY_PATH`, `WECHATPAY_PUBLIC_KEY_ID`); notifications are AES-256-GCM
decrypted with the APIv3 key by the SDK's `callback`. A notification whose (signed)
`Wechatpay-Timestamp` is more than `FRESH_SECONDS` from now is refused before anything else
(replay protection, as WeChat Pay's docs ask; the SDK does not check it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from bot.core import ChannelError, RejectedMessage
from bot.parsing import is_number

log = logging.getLogger(__name__)

CHINA = timezone(timedelta(hours=8))
TIMEOUT = (5, 10)
#: A notification signed longer ago (or ahead) than this is a replay: refused.
FRESH_SECONDS = 300


@dataclass(frozen=True)
class Transaction:
    """The facts of a (decrypted, verified) WeChat Pay transaction we act on."""

    out_trade_no: str
    transaction_id: str
    trade_state: str
    total: int
    currency: str
    mchid: str
    appid: str
    payer: str


def transaction_of(resource: dict) -> Transaction:
    """A transaction from a notification's decrypted resource or an order query answer."""
    amount = resource.get("amount") or {}
    return Transaction(
        out_trade_no=str(resource.get("out_trade_no", "")),
        transaction_id=str(resource.get("transaction_id") or ""),
        trade_state=str(resource.get("trade_state", "")),
        total=int(amount.get("total", -1)),
        currency=str(amount.get("currency", "CNY")),
        mchid=str(resource.get("mchid", "")),
        appid=str(resource.get("appid", "")),
        payer=str((resource.get("payer") or {}).get("openid", "")),
    )


def fresh(headers, now: float, window: float = FRESH_SECONDS) -> bool:
    """True when the `Wechatpay-Timestamp` header is within `window` seconds of `now`."""
    stamp = str(headers.get("Wechatpay-Timestamp", "")).strip()
    if not is_number(stamp) or len(stamp) > 12:
        return False
    return abs(now - int(stamp)) <= window


def configured(settings) -> bool:
    """True when every WeChat Pay setting needed for Native orders is present."""
    return all(
        (
            settings.wechatpay_mch_id,
            settings.wechatpay_cert_serial_no,
            settings.wechatpay_private_key_path,
            settings.wechatpay_apiv3_key,
            settings.wechatpay_public_key_path,
            settings.wechatpay_public_key_id,
        )
    )


class WeChatPayGateway:
    """Native orders, order queries, refunds and notification checks."""

    def __init__(self, settings, wall: Callable[[], float] = time.time) -> None:
        from wechatpayv3 import WeChatPay, WeChatPayType

        self.settings = settings
        self.wall = wall  # real time (Unix seconds): notifications are signed with it
        self.mchid = settings.wechatpay_mch_id
        self.appid = settings.wechat_app_id
        self.client = WeChatPay(
            wechatpay_type=WeChatPayType.NATIVE,
            mchid=self.mchid,
            private_key=Path(settings.wechatpay_private_key_path).read_text("utf-8"),
            cert_serial_no=settings.wechatpay_cert_serial_no,
            appid=self.appid,
            apiv3_key=settings.wechatpay_apiv3_key.get_secret_value(),
            notify_url=settings.wechatpay_notify_url or "https://localhost/wechat/pay/notify",
            public_key=Path(settings.wechatpay_public_key_path).read_text("utf-8"),
            public_key_id=settings.wechatpay_public_key_id,
            timeout=TIMEOUT,
        )
        # The SDK has no base-URL option; point it at WECHATPAY_API_URL (a fake in tests).
        self.client._core._gate_way = settings.wechatpay_api_url.rstrip("/")

    async def _call(self, fn, **kwargs) -> tuple[int, dict]:
        try:
            code, message = await asyncio.to_thread(fn, **kwargs)
        except Exception as error:  # requests errors, a failed answer signature
            raise ChannelError(f"WeChat Pay call failed: {type(error).__name__}") from error
        try:
            data = json.loads(message) if message else {}
        except (TypeError, ValueError):
            data = {}
        return code, data

    async def create_native(
        self, description: str, out_trade_no: str, total: int, expires_at: datetime
    ) -> str:
        """Create a Native order; returns its `code_url` (shown as a QR code)."""
        code, data = await self._call(
            self.client.pay,
            description=description[:127],
            out_trade_no=out_trade_no,
            amount={"total": total, "currency": "CNY"},
            time_expire=expires_at.astimezone(CHINA).isoformat(timespec="seconds"),
        )
        if code == 200 and data.get("code_url"):
            return data["code_url"]
        if 400 <= code < 500:
            raise RejectedMessage(f"WeChat Pay refused the order: {data.get('code')}")
        raise ChannelError(f"WeChat Pay order failed: HTTP {code} {data.get('code')}")

    async def query(self, out_trade_no: str) -> Transaction | None:
        """The state of a Native order (None when WeChat Pay does not know it)."""
        code, data = await self._call(self.client.query, out_trade_no=out_trade_no)
        if code == 404:
            return None
        if code != 200:
            raise ChannelError(f"WeChat Pay query failed: HTTP {code} {data.get('code')}")
        return transaction_of(data)

    async def query_transaction(self, transaction_id: str) -> Transaction | None:
        """A transaction by WeChat Pay's transaction_id (None when unknown)."""
        code, data = await self._call(self.client.query, transaction_id=transaction_id)
        if code == 404:
            return None
        if code != 200:
            raise ChannelError(f"WeChat Pay query failed: HTTP {code} {data.get('code')}")
        return transaction_of(data)

    async def close(self, out_trade_no: str) -> None:
        """Close an unpaid Native order (its QR code stops working)."""
        code, data = await self._call(self.client.close, out_trade_no=out_trade_no)
        if code not in (200, 204):
            raise ChannelError(f"WeChat Pay close failed: HTTP {code} {data.get('code')}")

    async def refund(self, transaction_id: str, total: int) -> dict:
        """Refund a whole transaction."""
        code, data = await self._call(
            self.client.refund,
            out_refund_no=f"R{transaction_id}"[:64],
            amount={"refund": total, "total": total, "currency": "CNY"},
            transaction_id=transaction_id,
        )
        if code == 200 and data.get("status") in ("SUCCESS", "PROCESSING"):
            return data
        raise ChannelError(f"WeChat Pay refund failed: HTTP {code} {data.get('code')}")

    async def verify(self, headers, body: bytes) -> Transaction | None:
        """A notification's transaction when it is fresh, its signature verifies and it
        decrypts, else None."""
        if not fresh(headers, self.wall()):
            log.warning("stale WeChat Pay notification refused (Wechatpay-Timestamp)")
            return None
        try:
            data = await asyncio.to_thread(self.client.callback, headers, body)
        except Exception as error:  # malformed JSON, unsupported algorithm
            log.warning("WeChat Pay notification refused: %s", type(error).__name__)
            return None
        if not data or not isinstance(data.get("resource"), dict):
            return None
        if data.get("event_type") not in (None, "TRANSACTION.SUCCESS"):
            return None
        return transaction_of(data["resource"])
