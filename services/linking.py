"""Account linking: a one-time code from one channel, entered on another, makes one learner.

The code is 6 digits, valid `CODE_TTL` (10 minutes), usable once, and replaced by the next
`/link` of the same learner. Entering it merges the learner who asked for it into the learner
who entered it (`storage.wechat.LinkRepo.merge`): purchases, ratings, questions, reminders and
identities all move. A learner gets `MAX_TRIES` wrong codes per `CODE_TTL`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from bot.parsing import ascii_digits

CODE_TTL = timedelta(minutes=10)
CODE_DIGITS = 6
MAX_TRIES = 5

Outcome = Literal["linked", "invalid", "expired", "self", "too_many"]


@dataclass(frozen=True)
class LinkResult:
    """What entering a code did; `merged` is the learner id that was merged away."""

    outcome: Outcome
    merged: int | None = None
    channels: tuple[str, ...] = ()


def _code_key(code: str) -> str:
    return f"link:code:{code}"


def _owner_key(learner_id: int) -> str:
    return f"link:of:{learner_id}"


def _tries_key(learner_id: int) -> str:
    return f"link:tries:{learner_id}"


def normalise(code: str) -> str:
    """The code as typed, without spaces or dashes."""
    return ascii_digits(code)


async def issue_code(uow, learner_id: int, now: datetime) -> str:
    """A fresh one-time code for `learner_id` (their previous code stops working)."""
    previous = await uow.kv.pop(_owner_key(learner_id))
    if previous:
        await uow.kv.pop(_code_key(previous["code"]))
    while True:
        code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
        held = await uow.kv.get(_code_key(code))
        if held is None or datetime.fromisoformat(held["expires_at"]) <= now:
            break
    expires = (now + CODE_TTL).isoformat()
    await uow.kv.put(_code_key(code), {"learner_id": learner_id, "expires_at": expires})
    await uow.kv.put(_owner_key(learner_id), {"code": code})
    return code


async def _count_try(uow, learner_id: int, now: datetime) -> bool:
    """Count a wrong code; False when the learner has used up their tries."""
    tries = await uow.kv.get(_tries_key(learner_id))
    if tries is None or datetime.fromisoformat(tries["since"]) + CODE_TTL <= now:
        tries = {"since": now.isoformat(), "n": 0}
    tries["n"] += 1
    await uow.kv.put(_tries_key(learner_id), tries)
    return tries["n"] <= MAX_TRIES


async def redeem(uow, code: str, learner, now: datetime) -> LinkResult:
    """Enter a code as `learner`: merge the code's owner into `learner`."""
    tries = await uow.kv.get(_tries_key(learner.id))
    if (
        tries
        and tries["n"] >= MAX_TRIES
        and datetime.fromisoformat(tries["since"]) + CODE_TTL > now
    ):
        return LinkResult("too_many")
    held = await uow.kv.get(_code_key(normalise(code)))
    if held is None:
        await _count_try(uow, learner.id, now)
        return LinkResult("invalid")
    if datetime.fromisoformat(held["expires_at"]) <= now:
        await uow.kv.pop(_code_key(normalise(code)))
        return LinkResult("expired")
    source = int(held["learner_id"])
    if source == learner.id:
        return LinkResult("self")
    await uow.kv.pop(_code_key(normalise(code)))
    await uow.kv.pop(_owner_key(source))
    other = await uow.learners.get(source)
    if other is not None:
        learner.timezone = learner.timezone or other.timezone
        learner.display_name = learner.display_name or other.display_name
        learner.announcements_opt_out = learner.announcements_opt_out and (
            other.announcements_opt_out
        )
    await uow.session.flush()
    await uow.wechat.links.merge(source, learner.id)
    identities = await uow.learners.identities_of(learner.id)
    return LinkResult("linked", source, tuple(sorted({i.channel for i in identities})))


async def seen(uow, channel: str, user_ref: str) -> None:
    """Remember that this identity was just used (the channel used last gets proactive
    messages). Wall-clock UTC, like the `last_seen_at` written when an identity is created."""
    await uow.wechat.links.touch(channel, user_ref, datetime.now(UTC))
