"""Learner data rights: `/mydata` sends everything stored about the learner as JSON;
`/deletemydata` asks for confirmation, then erases personal data (see services.data_rights)."""

from __future__ import annotations

from bot.core import Button, Incoming, Reply, Router, esc
from services import data_rights as service

router = Router()


@router.command("mydata", "我的数据")
async def mydata(learner, uow, t, clock) -> list[Reply]:
    """The learner's data as a JSON document (sent as text: every channel shows it)."""
    data = await service.export(uow, learner.id, clock.now())
    document = service.export_bytes(data).decode("utf-8")
    counts = {k: len(v) for k, v in data.items() if isinstance(v, list)}
    total = sum(counts.values())
    return [Reply(t.plural("mydata.head", total, count=total)), Reply(esc(document))]


@router.command("deletemydata", "删除我的数据")
async def delete_my_data(learner, uow, t, clock) -> Reply:
    """Ask before erasing anything."""
    await service.ask_confirmation(uow, learner.id, clock.now())
    buttons = [
        [Button(t("mydata.erase_yes"), "erase:yes"), Button(t("mydata.erase_no"), "erase:no")]
    ]
    return Reply(t("mydata.erase_ask", minutes=service.CONFIRM_MINUTES), buttons)


@router.button("erase")
async def erase_button(msg: Incoming, learner, uow, t, clock) -> Reply:
    """ "Yes, erase" within the confirmation window erases; anything else keeps the data."""
    now = clock.now()
    if msg.payload != "erase:yes":
        await uow.kv.pop(service.CONFIRM_KEY.format(learner_id=learner.id))
        return Reply(t("mydata.erase_cancelled"))
    if not await service.confirmed(uow, learner.id, now):
        return Reply(t("mydata.erase_expired"))
    await service.erase(uow, learner.id, now)
    return Reply(t("mydata.erased"))
