"""Short-lived download links for documents a channel cannot send as files (WeChat).

WeChat customer-service messages carry text, images, voice, video and menus, not arbitrary
files, so a CSV export or a `/mydata` JSON goes to WeChat as a link to our web server:
`/dl/<token>/<filename>`. The document is kept in the database (kv, so any web process can
serve it) until the link expires after `TTL`; the token is `<id>.<expiry>.<mac>` (random id,
expiry in base 36, HMAC-SHA256 under the tracked-link key), so a link can be neither guessed
nor extended. Expired documents are dropped when the next one is published.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import quote

from services.attendance import base_url, signing_key

PATH = "/dl/"
TTL = timedelta(minutes=30)
KEY = "download:{id}"
INDEX_KEY = "downloads:index"
MAC_BYTES = 16


@dataclass(frozen=True)
class Download:
    """A published document: its name, content and when its link stops working."""

    filename: str
    data: bytes
    expires_at: datetime


def _mac(key: bytes, ident: str, expires: int) -> str:
    digest = hmac.new(key, f"dl:{ident}:{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:MAC_BYTES]).decode().rstrip("=")


def _b36(n: int) -> str:
    digits, out = "0123456789abcdefghijklmnopqrstuvwxyz", ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


async def _purge(uow, now: datetime) -> list[list]:
    """Drop expired documents; the index of those still live."""
    index = (await uow.kv.get(INDEX_KEY) or {}).get("live", [])
    live = []
    for ident, expires in index:
        if expires <= now.timestamp():
            await uow.kv.pop(KEY.format(id=ident))
        else:
            live.append([ident, expires])
    return live


async def publish(uow, settings, filename: str, data: bytes, now: datetime) -> str:
    """Keep a document for `TTL` and return the signed link to it (a URL string)."""
    key = await signing_key(uow, settings)
    ident = secrets.token_urlsafe(12)
    expires = int((now + TTL).timestamp())
    live = await _purge(uow, now)
    stored = {"filename": filename, "data": base64.b64encode(data).decode("ascii")}
    await uow.kv.put(KEY.format(id=ident), {**stored, "expires": expires})
    await uow.kv.put(INDEX_KEY, {"live": [*live, [ident, expires]]})
    token = f"{ident}.{_b36(expires)}.{_mac(key, ident, expires)}"
    return f"{base_url(settings)}{PATH}{token}/{quote(filename)}"


async def fetch(uow, settings, token: str, now: datetime) -> Download | None:
    """The document of a genuine, unexpired token; None otherwise (forged, expired, gone)."""
    parts = token.split(".")
    if len(parts) != 3 or len(token) > 100:
        return None
    ident, expiry, mac = parts
    try:
        expires = int(expiry, 36)
    except ValueError:
        return None
    key = await signing_key(uow, settings)
    if not hmac.compare_digest(mac, _mac(key, ident, expires)) or expires <= now.timestamp():
        return None
    stored = await uow.kv.get(KEY.format(id=ident))
    if stored is None:
        return None
    data = base64.b64decode(stored["data"])
    return Download(stored["filename"], data, datetime.fromtimestamp(expires, now.tzinfo))
