"""A learner's data rights: `/mydata` (everything stored about them, as JSON) and
`/deletemydata` (erase personal data, keep anonymised accounting records).

Erased: the display name, time zone and language; every channel identity (the account ids);
texts of reviews and questions (and answers to them); pending messages and reminders; the
channel account id kept on payments and WeChat Pay orders; conversation state; the account id
in update keys and in the audit log. Kept, under the now anonymous learner number: orders,
payments (amount, currency, status, dates: bookkeeping law requires them), enrolments, numeric
ratings, attendance, interactions and suggestions shown (no personal field; they keep course
figures right).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import delete, inspect, select, update

from storage import models as m

ERASED = "erased"
CONFIRM_KEY = "erase:{learner_id}"
CONFIRM_MINUTES = 10
#: learner-keyed kv entries other features keep (step, question draft, pending coupon).
KV_KEYS = ("step:{id}", "askdraft:{learner_id}", "coupon:{learner_id}", "erase:{learner_id}")

#: (model, column naming the learner) exported by /mydata.
OWN_ROWS = (
    (m.Identity, "learner_id"),
    (m.Order, "learner_id"),
    (m.Payment, "learner_id"),
    (m.Enrolment, "learner_id"),
    (m.Rating, "learner_id"),
    (m.Question, "learner_id"),
    (m.Interaction, "learner_id"),
    (m.RecImpression, "learner_id"),
    (m.Reminder, "learner_id"),
    (m.OutboxMessage, "learner_id"),
    (m.Attendance, "learner_id"),
    (m.CouponRedemption, "learner_id"),
    (m.Instructor, "learner_id"),
    (m.AuditEntry, "actor_learner_id"),
)
SKIP_FIELDS = {"body"}  # outbox bodies may hold images; their text is summarised instead


def _plain(value):
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def row_dict(row) -> dict:
    """A model row as JSON-able data."""
    return {
        attr.key: _plain(getattr(row, attr.key))
        for attr in inspect(row).mapper.column_attrs
        if attr.key not in SKIP_FIELDS
    }


async def export(uow, learner_id: int, now: datetime) -> dict:
    """Everything stored about one learner, table by table."""
    learner = await uow.learners.get(learner_id)
    out: dict = {"generated_at": now.isoformat(), "learner": row_dict(learner) if learner else {}}
    for model, column in OWN_ROWS:
        rows = await uow.mydata.rows(model, learner_id, column)
        out[model.__tablename__] = [row_dict(r) for r in rows]
    for row in out.get("outbox", []):
        row.pop("body", None)
    wechat = getattr(m, "WeChatPayOrder", None)
    if wechat is not None:
        order_ids = [o["id"] for o in out["orders"]]
        stmt = select(wechat).where(wechat.order_id.in_(order_ids)) if order_ids else None
        found = (await uow.session.execute(stmt)).scalars().all() if stmt is not None else []
        out[wechat.__tablename__] = [row_dict(r) for r in found]
    return out


def export_bytes(data: dict) -> bytes:
    """The export as a UTF-8 JSON document."""
    return json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True).encode("utf-8")


async def ask_confirmation(uow, learner_id: int, now: datetime) -> None:
    """Remember that the learner asked to erase their data (confirm within 10 minutes)."""
    await uow.kv.put(CONFIRM_KEY.format(learner_id=learner_id), {"at": now.isoformat()})


async def confirmed(uow, learner_id: int, now: datetime) -> bool:
    """True (once) when the learner asked to erase within the last 10 minutes."""
    asked = await uow.kv.pop(CONFIRM_KEY.format(learner_id=learner_id))
    if not asked:
        return False
    return now - datetime.fromisoformat(asked["at"]) <= timedelta(minutes=CONFIRM_MINUTES)


@dataclass(frozen=True)
class Erased:
    """How many rows were erased or anonymised, per table."""

    counts: dict[str, int]


async def erase(uow, learner_id: int, now: datetime) -> Erased:
    """Erase a learner's personal data; accounting rows stay, anonymised."""
    s, d = uow.session, uow.mydata
    counts: dict[str, int] = {}
    identities = await d.identities(learner_id)
    for identity in identities:  # update keys carrying a WeChat openid
        await s.execute(
            delete(m.InboxEntry).where(
                m.InboxEntry.update_key.like(f"wx:ev:{identity.user_ref}:%")
            )
        )
    learner = await uow.learners.get(learner_id)
    if learner is not None:
        learner.display_name, learner.timezone, learner.locale = "", None, None
        learner.announcements_opt_out = True
    counts["identities"] = await d.delete_of(m.Identity, learner_id)
    counts["payments"] = await d.blank(m.Payment, learner_id, "learner_id", user_ref=ERASED)
    counts["reviews"] = await d.blank(m.Rating, learner_id, "learner_id", review=None)
    counts["questions"] = await d.blank(
        m.Question, learner_id, "learner_id", text="", answer=None, is_faq=False
    )
    counts["outbox"] = await d.delete_of(m.OutboxMessage, learner_id)
    counts["reminders"] = await d.delete_of(m.Reminder, learner_id)
    counts["audit"] = await d.blank(
        m.AuditEntry, learner_id, "actor_learner_id", actor=f"{ERASED}:{learner_id}"
    )
    wechat = getattr(m, "WeChatPayOrder", None)
    if wechat is not None:
        orders = select(m.Order.id).where(m.Order.learner_id == learner_id)
        result = await s.execute(
            update(wechat).where(wechat.order_id.in_(orders)).values(user_ref=ERASED)
        )
        counts[wechat.__tablename__] = int(result.rowcount or 0)
    for pattern in KV_KEYS:
        await uow.kv.pop(pattern.format(id=learner_id, learner_id=learner_id))
    return Erased(counts)


async def payment_totals(uow) -> dict[tuple[str, str], tuple[int, int]]:
    """(status, currency) → (count, sum): what accounting needs to add up."""
    return {(st, cur): (int(n), int(s or 0)) for st, cur, n, s in await uow.payments.totals()}
