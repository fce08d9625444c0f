"""/link: one learner across Telegram and WeChat, through a one-time code."""

from __future__ import annotations

from bot.core import Button, Incoming, Reply, Router
from services import linking

router = Router()


@router.command("link", "绑定", "关联账号")
async def link(msg: Incoming, uow, learner, t, clock) -> Reply:
    """Without a code: give one. With a code from the other channel: merge the accounts."""
    code = linking.normalise(msg.args)
    if not code:
        code = await linking.issue_code(uow, learner.id, clock.now())
        minutes = int(linking.CODE_TTL.total_seconds() // 60)
        return Reply(t("link.code", code=code, minutes=minutes))
    result = await linking.redeem(uow, code, learner, clock.now())
    if result.outcome != "linked":
        return Reply(t(f"link.{result.outcome}"))
    await linking.seen(uow, msg.channel, msg.user_ref)
    return Reply(
        t("link.done", channels=", ".join(result.channels)), [[Button(t("pay.mine"), "mine")]]
    )
