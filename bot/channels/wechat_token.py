"""The WeChat access token: one refresher keeps it in the database (or Redis when `REDIS_URL`
is set), workers only read it.

WeChat invalidates the old token (after a short overlap) whenever a new one is fetched, so
several processes that each refresh on their own keep rotating each other's token. Here:

- The token lives in the `kv` table (`wechat:access_token:<appid>`) with its expiry and a
  generation number, or under the same key in Redis (`REDIS_URL`; the key expires with the
  token, the lease is `SET NX` with a time-out). Every process reads it from there.
- Only the refresher fetches: the process that runs the scheduler (`app.scheduler` is set), or
  a keeper built with `refresher=True`. It calls `cgi-bin/stable_token` (10k calls/min; the
  plain `cgi-bin/token` allows ~2000 a day) and uses `force_refresh` only when WeChat refused
  the token we hold.
- A fetch takes a lease first, one per generation (`wechat:token_lease:<appid>:<gen>`, a unique
  key): however many refreshers meet an expired token at once, one of them fetches and the
  others wait for its result.
- A worker that meets a missing, expired or refused token records the request
  (`wechat:token_stale:<appid>`), wakes this process's scheduler, and waits up to
  `WECHAT_TOKEN_WAIT_SECONDS` for the refresher's new token; then the send fails as a plain
  `ChannelError` and the outbox retries it later.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime, timedelta

import aiohttp

from bot.core import ChannelError
from storage.models import KeyValue
from storage.repos import insert_ignore

log = logging.getLogger(__name__)

#: A token with less than this left is not handed to a request.
USABLE_MARGIN = timedelta(seconds=60)
POLL_SECONDS = 0.05
#: Seconds a process keeps using the token it read before reading the store again (a refused
#: token is re-read at once).
CACHE_SECONDS = 30.0
#: Seconds a Redis lease lives (a refresher that died holding one blocks no one for long).
LEASE_TTL = 60
#: Seconds a worker's refresh request lives in Redis.
REQUEST_TTL = 3600


class TokenUnavailable(ChannelError):
    """No usable access token (the refresher has not stored one in time)."""


def _stamp(moment: datetime) -> str:
    return moment.isoformat()


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


class DatabaseTokenStore:
    """Token records in the `kv` table (one transaction per call)."""

    def __init__(self, app) -> None:
        self.app = app
        self.uow = app.uow

    async def get(self, key: str) -> dict | None:
        """The record under `key` (a reader: no write lock)."""
        async with self.uow() as uow:
            await uow.read_only()
            return await uow.kv.get(key)

    async def put(self, key: str, value: dict, ttl: int | None = None) -> None:
        """Store a record (`ttl` is ignored: expiry is in the record)."""
        async with self.uow() as uow:
            await uow.kv.put(key, value)
            await uow.commit()

    async def pop(self, *keys: str) -> None:
        """Delete records."""
        async with self.uow() as uow:
            for key in keys:
                await uow.kv.pop(key)
            await uow.commit()

    async def claim(self, key: str, value: dict, ttl: int) -> bool:
        """Create `key` unless it exists; True for the one caller that created it."""
        now = self.app.clock.now()
        async with self.uow() as uow:
            won = await insert_ignore(uow.session, KeyValue, key=key, value=value, updated_at=now)
            await uow.commit()
        return won

    async def close(self) -> None:
        """Nothing to release."""


class RedisTokenStore:
    """Token records in Redis (`redis.asyncio`), JSON values, optional time-to-live."""

    def __init__(self, url: str, client=None) -> None:
        if client is None:
            import redis.asyncio as aioredis

            client = aioredis.from_url(url)
        self.redis = client

    async def get(self, key: str) -> dict | None:
        """The record under `key`."""
        raw = await self.redis.get(key)
        return json.loads(raw) if raw else None

    async def put(self, key: str, value: dict, ttl: int | None = None) -> None:
        """Store a record, expiring after `ttl` seconds when given."""
        await self.redis.set(key, json.dumps(value), ex=max(1, ttl) if ttl else None)

    async def pop(self, *keys: str) -> None:
        """Delete records."""
        if keys:
            await self.redis.delete(*keys)

    async def claim(self, key: str, value: dict, ttl: int) -> bool:
        """`SET NX EX`: True for the one caller that created `key`."""
        return bool(await self.redis.set(key, json.dumps(value), nx=True, ex=max(1, ttl)))

    async def close(self) -> None:
        """Close the connection pool."""
        await self.redis.aclose()


def token_store(app):
    """Redis when `REDIS_URL` is set, else the database."""
    url = getattr(app.settings, "redis_url", None)
    if url is not None and url.get_secret_value():
        return RedisTokenStore(url.get_secret_value())
    return DatabaseTokenStore(app)


class TokenKeeper:
    """Reads the shared access token; fetches a new one only in the refresher role."""

    def __init__(
        self, app, http: aiohttp.ClientSession | None = None, refresher=None, store=None
    ) -> None:
        self.app = app
        self.settings = app.settings
        self.store = store if store is not None else token_store(app)
        self.appid = self.settings.wechat_app_id or ""
        self._http = http
        self._refresher = refresher
        self.fetches = 0
        self._lock = asyncio.Lock()
        self._cached: tuple[dict, float] | None = None  # (record, loop time it was read)

    @property
    def key(self) -> str:
        return f"wechat:access_token:{self.appid}"

    @property
    def stale_key(self) -> str:
        return f"wechat:token_stale:{self.appid}"

    def lease_key(self, generation: int) -> str:
        return f"wechat:token_lease:{self.appid}:{generation}"

    @property
    def refresher(self) -> bool:
        """True in the one process allowed to fetch tokens."""
        if self._refresher is not None:
            return bool(self._refresher)
        return getattr(self.app, "scheduler", None) is not None

    def _now(self) -> datetime:
        return self.app.clock.now()

    async def stored(self) -> dict | None:
        """The stored token record: token, expires_at, generation."""
        row = await self.store.get(self.key)
        if row is not None:
            self._cached = (row, asyncio.get_running_loop().time())
        return row

    def _recent(self) -> dict | None:
        """The record read less than CACHE_SECONDS ago (saves a read per API call)."""
        if self._cached is None:
            return None
        row, at = self._cached
        return row if asyncio.get_running_loop().time() - at < CACHE_SECONDS else None

    async def close(self) -> None:
        """Release the store's connections."""
        await self.store.close()

    def usable(self, row: dict | None, stale: str | None = None) -> bool:
        """True when `row` holds a token that is not expiring and not the refused one."""
        if not row or not row.get("token") or row["token"] == stale:
            return False
        return _moment(row["expires_at"]) - self._now() > USABLE_MARGIN

    async def token(self) -> str:
        """A usable access token (waits for the refresher when there is none)."""
        row = self._recent()
        if not self.usable(row):
            row = await self.stored()
        if self.usable(row):
            return row["token"]
        return await self._obtain(None)

    async def rejected(self, token: str) -> str:
        """WeChat refused `token` (40001/40014/42001): a newer one, from the refresher."""
        row = await self.stored()
        if self.usable(row, stale=token):
            return row["token"]
        return await self._obtain(token)

    async def _obtain(self, stale: str | None) -> str:
        if self.refresher:
            return await self.refresh(stale=stale)
        await self._ask(stale)
        return await self._wait_for(stale)

    async def _ask(self, stale: str | None) -> None:
        request = {"token": stale or "", "at": _stamp(self._now())}
        await self.store.put(self.stale_key, request, ttl=REQUEST_TTL)
        wake = getattr(self.app, "wake", None)
        if wake is not None:
            wake()

    async def _wait_for(self, stale: str | None) -> str:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.wechat_token_wait_seconds
        while True:
            row = await self.stored()
            if self.usable(row, stale):
                return row["token"]
            if loop.time() >= deadline:
                raise TokenUnavailable("no WeChat access token from the refresher yet")
            await asyncio.sleep(POLL_SECONDS)

    async def refresh(self, stale: str | None = None, force: bool = False) -> str:
        """Fetch and store a new token unless a usable one is stored (refresher only).

        At most one fetch per generation across every process: the lease decides who fetches.
        """
        async with self._lock:
            row = await self.stored()
            if not force and self.usable(row, stale) and not self._expiring(row):
                return row["token"]
            generation = int((row or {}).get("generation", 0)) + 1
            if not await self._lease(generation):
                return await self._wait_for(stale if stale else None)
            try:
                token, expires_in = await self._fetch(force_refresh=bool(stale) or force)
            except Exception:
                await self._drop_lease(generation)  # the next try may take it again
                raise
            expires_at = self._now() + timedelta(seconds=expires_in)
            record = {"token": token, "expires_at": _stamp(expires_at), "generation": generation}
            await self.store.put(self.key, record, ttl=expires_in)
            self._cached = (record, asyncio.get_running_loop().time())
            await self.store.pop(self.stale_key, self.lease_key(generation - 2))
            log.info("stored WeChat access token generation %s (%s s)", generation, expires_in)
            return token

    def _expiring(self, row: dict) -> bool:
        margin = timedelta(seconds=self.settings.wechat_token_refresh_margin_seconds)
        return _moment(row["expires_at"]) - self._now() <= margin

    async def _lease(self, generation: int) -> bool:
        lease = {"at": _stamp(self._now())}
        return await self.store.claim(self.lease_key(generation), lease, ttl=LEASE_TTL)

    async def _drop_lease(self, generation: int) -> None:
        await self.store.pop(self.lease_key(generation))

    async def refresh_if_due(self) -> bool:
        """The refresher's periodic step: fetch when the token is missing, expiring, or a
        worker reported it refused. True when a new token was stored."""
        row = await self.store.get(self.key)
        asked = await self.store.get(self.stale_key)
        stale = (asked or {}).get("token") or None
        refused = bool(stale) and row is not None and row.get("token") == stale
        if row is not None and self.usable(row) and not self._expiring(row) and not refused:
            if asked is not None:  # an old request, already answered
                await self.store.pop(self.stale_key)
            return False
        before = (row or {}).get("generation", 0)
        await self.refresh(stale=stale if refused else None)
        after = ((await self.stored()) or {}).get("generation", 0)
        return after != before

    async def _fetch(self, force_refresh: bool) -> tuple[str, int]:
        """POST cgi-bin/stable_token; returns (token, expires_in)."""
        self.fetches += 1
        settings = self.settings
        secret = (
            settings.wechat_app_secret.get_secret_value() if settings.wechat_app_secret else ""
        )
        body = {
            "grant_type": "client_credential",
            "appid": self.appid,
            "secret": secret,
            "force_refresh": force_refresh,
        }
        url = settings.wechat_api_url.rstrip("/") + "/stable_token"
        http = self._http
        owned = http is None
        if owned:
            http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        try:
            async with http.post(url, json=body) as response:
                data = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            raise ChannelError(f"stable_token failed: {type(error).__name__}") from error
        finally:
            if owned:
                await http.close()
        if not data.get("access_token"):
            raise ChannelError(f"stable_token refused: {data.get('errcode')} {data.get('errmsg')}")
        return data["access_token"], int(data.get("expires_in", 7200))


async def refresh_job() -> bool:
    """Scheduled job (the scheduler role, every 15–60 s): keep the WeChat token fresh."""
    from scheduler.jobs import current_app

    app = current_app()
    if not app.settings.wechat_app_id:
        return False
    channel = app.channels.get("wechat") if "wechat" in app.channels else None
    if channel is not None:
        return await channel.tokens.refresh_if_due()
    keeper = TokenKeeper(app, refresher=True)
    try:
        return await keeper.refresh_if_due()
    finally:
        await keeper.close()
