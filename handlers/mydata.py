"""Learner data rights: `/mydata` sends everything stored about the learner as JSON;
`/deletemydata` asks for confirmation, then erases personal data (see services.data_rights)."""

from __future__ import annotations

from bot.core import Button, Document, Incoming, Reply, Router
from services import data_rights as service

router = Router()


@router.command("mydata", "我的数据")
async def mydata(learner, uow, t, clock) -> Reply:
    """The learner's data as a JSON document."""
    now = clock.now()
    data = await service.export(uow, learner.id, now)
    total = sum(len(v) for v in data.values() if isinstance(v, list))
    filename = f"mydata-{learner.id}-{now:%Y%m%d-%H%M%S}.json"
    document = Document(filename, service.export_bytes(data))
    return Reply(t.plural("mydata.head", total, count=total), document=document)


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
