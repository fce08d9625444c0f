"""Send limits shared by several sender processes on PostgreSQL (`scheduler.sender`).

A channel has `floor(rate)` slot rows (`send_slots`). A send takes a free one with one
`UPDATE … RETURNING` (`FOR UPDATE SKIP LOCKED`, so two senders never take the same slot), holds
it while the request is out and frees it one rate window after the answer; so no window of that
length ever holds more than `floor(rate)` sends of all senders together. A chat's turn
(`chat_turns`) is taken the same way and comes back one second after the answer. Times are the
database's clock (epoch seconds), the one clock every process shares.
"""

from __future__ import annotations

from sqlalchemy import bindparam, text

from storage.repos import Repo

NOW = "extract(epoch FROM clock_timestamp())"

_TAKE_SLOT = text(
    f"""
    UPDATE send_slots AS s SET free_at = {NOW} + :hold
    FROM (SELECT slot FROM send_slots WHERE channel = :channel AND free_at <= {NOW}
          ORDER BY free_at, slot LIMIT 1 FOR UPDATE SKIP LOCKED) AS pick
    WHERE s.channel = :channel AND s.slot = pick.slot
    RETURNING s.slot
    """
)
_TAKE_SLOTS = text(
    f"""
    UPDATE send_slots AS s SET free_at = {NOW} + :hold
    FROM (SELECT slot FROM send_slots WHERE channel = :channel AND free_at <= {NOW}
          ORDER BY free_at, slot LIMIT :n FOR UPDATE SKIP LOCKED) AS pick
    WHERE s.channel = :channel AND s.slot = pick.slot
    RETURNING s.slot
    """
)
_FREE_SLOTS = text(
    f"UPDATE send_slots SET free_at = {NOW} + :window WHERE channel = :channel AND slot IN :slots"
).bindparams(bindparam("slots", expanding=True))
_TAKE_CHATS = text(
    f"""
    INSERT INTO chat_turns (channel, user_ref, free_at)
    SELECT :channel, ref, {NOW} + :hold FROM unnest(CAST(:refs AS text[])) AS ref
    ON CONFLICT (channel, user_ref) DO UPDATE SET free_at = EXCLUDED.free_at
    WHERE chat_turns.free_at <= {NOW}
    RETURNING user_ref
    """
)
_FREE_CHATS = text(
    f"UPDATE chat_turns SET free_at = {NOW} + :gap WHERE channel = :channel AND user_ref IN :refs"
).bindparams(bindparam("refs", expanding=True))
_SLOT_WAIT = text(f"SELECT min(free_at) - {NOW} FROM send_slots WHERE channel = :channel")
_FREE_SLOT = text(
    f"UPDATE send_slots SET free_at = {NOW} + :window WHERE channel = :channel AND slot = :slot"
)
_TAKE_CHAT = text(
    f"""
    INSERT INTO chat_turns (channel, user_ref, free_at) VALUES (:channel, :user_ref, {NOW} + :hold)
    ON CONFLICT (channel, user_ref) DO UPDATE SET free_at = EXCLUDED.free_at
    WHERE chat_turns.free_at <= {NOW}
    RETURNING 0.0
    """
)
_CHAT_WAIT = text(
    f"SELECT free_at - {NOW} FROM chat_turns WHERE channel = :channel AND user_ref = :user_ref"
)
_FREE_CHAT = text(
    f"UPDATE chat_turns SET free_at = {NOW} + :gap "
    "WHERE channel = :channel AND user_ref = :user_ref"
)


class SendLimitRepo(Repo):
    """Take and give back shared send slots and chat turns (PostgreSQL only)."""

    async def ensure_slots(self, channel: str, cap: int) -> None:
        """Make the channel have exactly `cap` slots (the rate may have changed)."""
        await self.session.execute(
            text(
                "INSERT INTO send_slots (channel, slot, free_at) "
                "SELECT :channel, n, 0 FROM generate_series(0, :cap - 1) AS n "
                "ON CONFLICT DO NOTHING"
            ),
            {"channel": channel, "cap": cap},
        )
        await self.session.execute(
            text("DELETE FROM send_slots WHERE channel = :channel AND slot >= :cap"),
            {"channel": channel, "cap": cap},
        )

    async def take_slot(self, channel: str, hold: float) -> tuple[int | None, float]:
        """(slot, 0) when one was free (held for `hold` s at most), else (None, seconds until
        the next one frees)."""
        args = {"channel": channel, "hold": hold}
        slot = await self.session.scalar(_TAKE_SLOT, args)
        if slot is not None:
            return int(slot), 0.0
        wait = await self.session.scalar(_SLOT_WAIT, {"channel": channel})
        return None, float(wait if wait is not None else 0.05)

    async def take_slots(self, channel: str, n: int, hold: float) -> list[int]:
        """Up to `n` free slots at once (each held for `hold` s at most); maybe none."""
        args = {"channel": channel, "n": n, "hold": hold}
        return [int(slot) for slot in (await self.session.scalars(_TAKE_SLOTS, args))]

    async def slot_wait(self, channel: str) -> float:
        """Seconds until the channel's next slot frees (0.05 when it has none)."""
        wait = await self.session.scalar(_SLOT_WAIT, {"channel": channel})
        return float(wait if wait is not None else 0.05)

    async def free_slots(self, channel: str, slots: list[int], window: float) -> None:
        """Give several slots back: free again `window` seconds from now."""
        if slots:
            args = {"channel": channel, "slots": slots, "window": window}
            await self.session.execute(_FREE_SLOTS, args)

    async def take_chats(self, channel: str, user_refs: list[str], hold: float) -> set[str]:
        """Take the turns of several distinct chats in one statement; the ones taken."""
        args = {"channel": channel, "refs": user_refs, "hold": hold}
        return set((await self.session.scalars(_TAKE_CHATS, args)).all())

    async def free_chats(self, channel: str, user_refs: list[str], gap: float) -> None:
        """The chats' next messages may start `gap` seconds from now."""
        if user_refs:
            args = {"channel": channel, "refs": user_refs, "gap": gap}
            await self.session.execute(_FREE_CHATS, args)

    async def free_slot(self, channel: str, slot: int, window: float) -> None:
        """Give a slot back: free again `window` seconds from now (the answer came now)."""
        await self.session.execute(
            _FREE_SLOT, {"channel": channel, "slot": slot, "window": window}
        )

    async def take_chat(self, channel: str, user_ref: str, hold: float) -> float:
        """0 when the chat's turn was taken (for `hold` s at most), else seconds to wait."""
        args = {"channel": channel, "user_ref": user_ref, "hold": hold}
        if await self.session.scalar(_TAKE_CHAT, args) is not None:
            return 0.0
        wait = await self.session.scalar(_CHAT_WAIT, {"channel": channel, "user_ref": user_ref})
        return max(0.01, float(wait if wait is not None else 0.05))

    async def free_chat(self, channel: str, user_ref: str, gap: float) -> None:
        """The chat's next message may start `gap` seconds from now."""
        await self.session.execute(
            _FREE_CHAT, {"channel": channel, "user_ref": user_ref, "gap": gap}
        )

    async def forget_chats(self, older_than: float) -> None:
        """Drop chat turns free for more than `older_than` seconds (keeps the table small)."""
        await self.session.execute(
            text(f"DELETE FROM chat_turns WHERE free_at < {NOW} - :age"), {"age": older_than}
        )
