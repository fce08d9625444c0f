"""Tracked session links: `/go/<token>` bound to one learner and one session.

The token is `<learner>.<session>.<mac>` (ids in base 36, mac = HMAC-SHA256 of both, 128 bits,
base64url): unguessable and unforgeable without the key, so a forwarded link still works but
counts for its owner. The key is the `LINK_SECRET` setting; without it a random key is made once
and kept in the database (shared by every process on that database).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from recommender.signals import Signal

KEY_NAME = "links:hmac-key"
MAC_BYTES = 16
PATH = "/go/"


def _b36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


def _mac(key: bytes, learner_id: int, session_id: int) -> str:
    digest = hmac.new(key, f"go:{learner_id}:{session_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:MAC_BYTES]).decode().rstrip("=")


def make_token(key: bytes, learner_id: int, session_id: int) -> str:
    """The signed token of one learner's link to one session."""
    return f"{_b36(learner_id)}.{_b36(session_id)}.{_mac(key, learner_id, session_id)}"


def read_token(key: bytes, token: str) -> tuple[int, int] | None:
    """(learner, session) of a genuine token; None when malformed, forged or foreign."""
    parts = token.split(".")
    if len(parts) != 3 or len(token) > 80:
        return None
    try:
        learner_id, session_id = int(parts[0], 36), int(parts[1], 36)
    except ValueError:
        return None
    if not hmac.compare_digest(parts[2], _mac(key, learner_id, session_id)):
        return None
    return learner_id, session_id


async def signing_key(uow, settings) -> bytes:
    """The HMAC key: LINK_SECRET when set, else one random key kept in the database."""
    secret = getattr(settings, "link_secret", None)
    if secret is not None and secret.get_secret_value():
        return secret.get_secret_value().encode()
    stored = await uow.kv.get(KEY_NAME)
    if stored is None:
        stored = {"key": secrets.token_hex(32)}
        await uow.kv.put(KEY_NAME, stored)
        await uow.session.flush()
    return bytes.fromhex(stored["key"])


def base_url(settings) -> str:
    """Where learners reach our web server: PUBLIC_URL, else http://WEB_HOST:WEB_PORT."""
    public = getattr(settings, "public_url", None)
    return (public or f"http://{settings.web_host}:{settings.web_port}").rstrip("/")


async def link_for(uow, settings, learner_id: int, session_id: int) -> str:
    """The personal tracked link of one learner to one session."""
    key = await signing_key(uow, settings)
    return f"{base_url(settings)}{PATH}{make_token(key, learner_id, session_id)}"


@dataclass(frozen=True)
class Opened:
    """What opening a link gives: `outcome` is go, cancelled, not_found or refused; `url` to
    redirect to; `first` when this was the learner's first open of the session."""

    outcome: str
    url: str | None = None
    first: bool = False
    learner_id: int | None = None
    session: object = None


def _session_over(session, now: datetime) -> bool:
    from services.live import session_end

    return session_end(session) < now


async def open_link(uow, settings, token: str, now: datetime) -> Opened:
    """Check the token, record attendance once per learner and session, say where to go."""
    found = read_token(await signing_key(uow, settings), token)
    if found is None:
        return Opened("refused")
    learner_id, session_id = found
    session = await uow.sessions.get(session_id)
    learner = await uow.learners.get(learner_id)
    if session is None or learner is None:
        return Opened("not_found")
    if session.status == "cancelled":
        return Opened("cancelled", learner_id=learner_id, session=session)
    url = session.replay_url if session.replay_url and _session_over(session, now) else session.url
    first = await uow.attendance.record(session.id, learner_id, session.course_id, now)
    if first:
        await uow.interactions.add(learner_id, session.course_id, Signal.ATTENDANCE, when=now)
    return Opened("go", url, first, learner_id, session)
