"""Repositories of the WeChat channel (Native pay orders) and of account linking (merging two
learners into one)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, exists, select, update
from sqlalchemy.orm import aliased

from storage.models import (
    Broadcast,
    Course,
    Enrolment,
    Identity,
    Interaction,
    Learner,
    Order,
    OutboxMessage,
    Payment,
    Question,
    Rating,
    Reminder,
    WeChatPayOrder,
)
from storage.repos import Repo


class PayOrderRepo(Repo):
    """WeChat Pay Native orders, one per QR code shown; settled once by `transaction_id`."""

    async def add(self, **fields: Any) -> WeChatPayOrder:
        """Record a new Native order before it is created at WeChat Pay."""
        return await self._insert(WeChatPayOrder, **fields)

    async def get(self, out_trade_no: str) -> WeChatPayOrder | None:
        """A Native order by our out_trade_no."""
        return await self.session.get(WeChatPayOrder, out_trade_no)

    async def reusable(self, order_id: int, amount: int, now: datetime) -> WeChatPayOrder | None:
        """A pending Native order of `order_id` for `amount` whose QR code is still valid."""
        stmt = (
            select(WeChatPayOrder)
            .where(
                WeChatPayOrder.order_id == order_id,
                WeChatPayOrder.amount == amount,
                WeChatPayOrder.status == "pending",
                WeChatPayOrder.code_url.is_not(None),
                WeChatPayOrder.expires_at > now,
            )
            .order_by(WeChatPayOrder.created_at.desc())
            .limit(1)
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def count_of(self, order_id: int) -> int:
        """How many Native orders were made for one of our orders."""
        stmt = select(WeChatPayOrder.out_trade_no).where(WeChatPayOrder.order_id == order_id)
        return len((await self.session.execute(stmt)).all())

    async def by_transaction(self, transaction_id: str) -> WeChatPayOrder | None:
        """The Native order a WeChat Pay transaction paid."""
        stmt = select(WeChatPayOrder).where(WeChatPayOrder.transaction_id == transaction_id)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def unsettled(self, created_before: datetime, limit: int) -> Sequence[WeChatPayOrder]:
        """Pending Native orders older than `created_before`, least recently queried first."""
        stmt = (
            select(WeChatPayOrder)
            .where(
                WeChatPayOrder.status == "pending",
                WeChatPayOrder.code_url.is_not(None),
                WeChatPayOrder.created_at < created_before,
            )
            .order_by(WeChatPayOrder.queried_at.is_not(None), WeChatPayOrder.queried_at)
            .limit(limit)
        )
        return (await self.session.execute(stmt)).scalars().all()

    async def settle(self, out_trade_no: str, status: str, transaction_id: str | None) -> bool:
        """Move a pending Native order to paid/closed; False when it was not pending."""
        values: dict[str, Any] = {"status": status}
        if transaction_id:
            values["transaction_id"] = transaction_id
        result = await self.session.execute(
            update(WeChatPayOrder)
            .where(WeChatPayOrder.out_trade_no == out_trade_no, WeChatPayOrder.status == "pending")
            .values(**values)
        )
        return result.rowcount == 1


class LinkRepo(Repo):
    """Identities as seen last, and the merge of two learners into one."""

    async def touch(self, channel: str, user_ref: str, now: datetime) -> None:
        """Remember that `channel:user_ref` wrote to us at `now` (proactive messages go to the
        channel a learner used last)."""
        await self.session.execute(
            update(Identity)
            .where(Identity.channel == channel, Identity.user_ref == user_ref)
            .values(last_seen_at=now)
        )

    async def merge(self, source_id: int, target_id: int) -> None:
        """Move everything of learner `source_id` to `target_id`, then delete the source.

        Where both hold a row a unique key allows once (an enrolment, a rating, a reminder of
        the same session), the target's row stays and the source's is dropped.
        """
        if source_id == target_id:
            return
        s = self.session
        for model, key in (
            (Enrolment, "course_id"),
            (Rating, "course_id"),
        ):
            other = aliased(model)
            clash = exists().where(
                other.learner_id == target_id, getattr(other, key) == getattr(model, key)
            )
            await s.execute(
                delete(model)
                .where(model.learner_id == source_id, clash)
                .execution_options(synchronize_session=False)
            )
        other = aliased(Reminder)
        clash = exists().where(
            and_(
                other.learner_id == target_id,
                other.session_id == Reminder.session_id,
                other.kind == Reminder.kind,
            )
        )
        await s.execute(
            delete(Reminder)
            .where(Reminder.learner_id == source_id, clash)
            .execution_options(synchronize_session=False)
        )
        for model in (
            Identity,
            Order,
            Payment,
            Enrolment,
            Rating,
            Reminder,
            Question,
            Interaction,
            OutboxMessage,
        ):
            await s.execute(
                update(model)
                .where(model.learner_id == source_id)
                .values(learner_id=target_id)
                .execution_options(synchronize_session=False)
            )
        await s.execute(
            update(Question)
            .where(Question.answered_by == source_id)
            .values(answered_by=target_id)
            .execution_options(synchronize_session=False)
        )
        await s.execute(
            update(Course)
            .where(Course.instructor_learner_id == source_id)
            .values(instructor_learner_id=target_id)
            .execution_options(synchronize_session=False)
        )
        await s.execute(
            update(Broadcast)
            .where(Broadcast.author_learner_id == source_id)
            .values(author_learner_id=target_id)
            .execution_options(synchronize_session=False)
        )
        await s.execute(
            delete(Learner)
            .where(Learner.id == source_id)
            .execution_options(synchronize_session=False)
        )


class WeChatStore:
    """`uow.wechat`: the WeChat pay orders and the linking of accounts."""

    def __init__(self, session) -> None:
        self.pay = PayOrderRepo(session)
        self.links = LinkRepo(session)
