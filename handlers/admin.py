"""Admin commands of the storefront: payments and refunds, courses, categories, figures."""

from __future__ import annotations

from bot.core import Button, Incoming, Reply, Router, esc, expect_text
from bot.parsing import parse_id, payload_id
from handlers.addcourse import hint_text
from handlers.addcourse import start as start_guided
from handlers.catalog import course_title
from services import admin as service
from services import audit
from services.admin import EditStatus, FieldProblem, RefundStatus

router = Router()

#: The largest cover picture, in KB, as the admin is told.
COVER_LIMIT_KB = service.MAX_COVER_BYTES // 1000


def _id(text: str) -> int | None:
    return parse_id(text)


async def _actor(msg: Incoming, uow, learner, settings):
    """Who is acting: admin, instructor or learner (services audit and check it)."""
    return await audit.actor_of(uow, settings, msg.channel, msg.user_ref, learner.id)


def _name(learner, t) -> str:
    return esc(learner.display_name) if learner and learner.display_name else "?"


def _status(status: str, t) -> str:
    if status in ("paid", "refunded"):
        return t(f"payments.status.{status}")
    return t("payments.status.other", status=esc(status))


# ----------------------------------------------------------------------------- payments


@router.command("payments", "付款", "订单", admin=True)
async def payments(msg: Incoming, uow, t, settings) -> Reply:
    """`/payments [course_id | channel:user | learner:<id> | name]`: the newest payments with
    their ids, and a refund button for each one that can be refunded."""
    who = msg.args.strip()
    course_id, learner = _id(who), None
    if not who:
        scope = t("payments.scope.all")
    elif course_id is not None:
        scope = t("payments.scope.course", id=course_id)
    else:
        learner = await service.find_learner(uow, who)
        if learner is None:
            return Reply(t("payments.no_learner", who=esc(who)))
        scope = t("payments.scope.learner", id=learner.id, name=_name(learner, t))
    found = await service.recent_payments(
        uow, course_id=course_id, learner_id=learner.id if learner else None
    )
    if not found:
        return Reply(t("payments.none", scope=scope))
    lines, rows = [t("payments.title", scope=scope)], []
    for row in found:
        p = row.payment
        amount = t.money(p.amount, p.currency)
        lines.append(
            t(
                "payments.line",
                id=p.id,
                when=t.when(p.created_at, settings.zone),
                amount=amount,
                status=_status(p.status, t),
                course=p.course_id or "-",
                title=esc(course_title(row.course, t)) if row.course else "-",
                learner=p.learner_id,
                name=_name(row.learner, t),
            )
        )
        if p.status in service.REFUNDABLE:
            rows.append(
                [Button(t("payments.refund_button", id=p.id, amount=amount), f"rfq:{p.id}")]
            )
    return Reply("\n".join(lines), rows)


@router.command("refund", "退款", admin=True)
async def refund(msg: Incoming, uow, t, settings) -> Reply:
    """`/refund <payment_id>`: say what would be given back and ask to confirm with a button."""
    payment_id = _id(msg.args)
    if payment_id is None:
        return Reply(t("refund.usage"))
    return await _ask_refund(payment_id, uow, t, settings)


@router.button("rfq", admin=True)
async def refund_button(msg: Incoming, uow, t, settings) -> Reply:
    """A refund button of /payments: the same confirmation as /refund."""
    payment_id = payload_id(msg.payload)
    if payment_id is None:
        return Reply(t("error.stale_button"))
    return await _ask_refund(payment_id, uow, t, settings)


async def _ask_refund(payment_id: int, uow, t, settings) -> Reply:
    preview = await service.refund_preview(uow, payment_id)
    problem = _refund_problem(preview, payment_id, t, settings)
    if problem is not None:
        return problem
    payment = preview.payment
    amount = t.money(payment.amount, payment.currency)
    learner = await uow.learners.get(payment.learner_id)
    text = t(
        "refund.confirm",
        id=payment.id,
        amount=amount,
        title=esc(course_title(preview.course, t)) if preview.course else "?",
        name=_name(learner, t),
    )
    rows = [
        [Button(t("refund.yes", amount=amount), f"rfy:{payment.id}")],
        [Button(t("refund.no"), f"rfn:{payment.id}")],
    ]
    return Reply(text, rows)


def _refund_problem(result, payment_id: int, t, settings) -> Reply | None:
    payment = result.payment
    if result.status is RefundStatus.NOT_FOUND:
        return Reply(t("refund.not_found", id=payment_id))
    if result.status is RefundStatus.NOT_REFUNDABLE:
        if payment.status == "refunded" and payment.refunded_at is not None:
            return Reply(
                t("refund.already", id=payment.id, when=t.when(payment.refunded_at, settings.zone))
            )
        return Reply(t("refund.not_paid", id=payment.id, status=_status(payment.status, t)))
    if result.status is RefundStatus.FAILED:
        return Reply(t("refund.failed", error=esc(result.error)))
    return None


@router.button("rfy", admin=True)
async def refund_confirmed(msg: Incoming, uow, learner, t, clock, channels, settings) -> Reply:
    """The admin confirmed: refund through the provider, then revoke what the payment bought
    (a second press finds the payment refunded and changes nothing)."""
    payment_id = payload_id(msg.payload)
    if payment_id is None:
        return Reply(t("error.stale_button"))
    actor = await _actor(msg, uow, learner, settings)
    result = await service.refund(uow, channels, settings, payment_id, clock.now(), actor)
    problem = _refund_problem(result, payment_id, t, settings)
    if problem is not None:
        return problem
    payment = result.payment
    title = esc(course_title(result.course, t)) if result.course else "?"
    amount = t.money(payment.amount, payment.currency)
    return Reply(t("refund.done", id=payment.id, amount=amount, title=title))


@router.button("rfn", admin=True)
async def refund_kept(msg: Incoming, t) -> Reply:
    """The admin changed their mind."""
    return Reply(t("refund.kept", id=payload_id(msg.payload) or "?"))


# ----------------------------------------------------------------------------- courses


@router.command("addcourse", "上架")
async def add_course(msg: Incoming, uow, learner, t, settings, clock) -> Reply:
    """Add a course from one line of `|`-separated fields; a wrong field is named. Admins and
    instructors (whose new course is their own)."""
    actor = await _actor(msg, uow, learner, settings)
    if not actor.is_staff:
        return Reply(t("admin.refused"))
    if not msg.args.strip():
        return await start_guided(uow, learner, t)
    slugs = await service.category_slugs(uow)
    slug_text = esc(", ".join(slugs) or "-")
    parsed = service.parse_new_course(msg.args)
    usage = t("addcourse.usage", slugs=slug_text)
    if isinstance(parsed, FieldProblem):
        return Reply(_field_problem(parsed, t, slug_text) + "\n\n" + usage)
    course = await service.add_course(uow, parsed, actor, clock.now())
    if course is None:
        wrong = FieldProblem(number=1, field="category", hint="category")
        return Reply(_field_problem(wrong, t, slug_text) + "\n\n" + usage)
    return Reply(t("addcourse.done", id=course.id, title=esc(course_title(course, t))))


def _field_problem(problem: FieldProblem, t, slugs: str) -> str:
    if not problem.number:
        return t.plural("addcourse.bad_count", problem.count, count=problem.count)
    return t(
        "addcourse.bad_field",
        n=problem.number,
        field=t(f"field.{problem.field}"),
        hint=hint_text(problem.hint, t, slugs, problem.limit),
    )


@router.command("editcourse", "修改课程")
async def edit_course(msg: Incoming, uow, learner, t, settings, clock) -> Reply:
    """`/editcourse <id> <field> <value>`: change one field, checked like /addcourse (an
    instructor: of their own courses)."""
    actor = await _actor(msg, uow, learner, settings)
    if not actor.is_staff:
        return Reply(t("admin.refused"))
    head, _, rest = msg.args.strip().partition(" ")
    field_name, _, value = rest.strip().partition(" ")
    course_id = _id(head)
    slugs = esc(", ".join(await service.category_slugs(uow)) or "-")
    usage = t("editcourse.usage", fields=", ".join(sorted(service.EDITABLE)), slugs=slugs)
    if course_id is None or not field_name:
        return Reply(usage)
    edited = await service.edit_course(uow, course_id, field_name, value, actor, clock.now())
    if edited.status is EditStatus.NO_COURSE:
        return Reply(t("admin.no_course", id=course_id))
    if edited.status is EditStatus.NOT_YOURS:
        return Reply(t("kpi.not_yours", id=course_id))
    if edited.status is EditStatus.NO_FIELD:
        return Reply(usage)
    field = t(f"field.{edited.field}")
    if edited.status is EditStatus.BAD_VALUE:
        hint = hint_text(edited.hint, t, slugs, edited.limit)
        return Reply(t("editcourse.bad_value", value=esc(edited.value), field=field, hint=hint))
    return Reply(t("editcourse.done", id=course_id, field=field, value=esc(edited.value)))


@router.command("withdraw", "下架", admin=True)
async def withdraw(msg: Incoming, uow, learner, t, settings, clock) -> Reply:
    """`/withdraw <id>`: no longer listed, found or sold; learners who own it keep it."""
    course_id = _id(msg.args)
    if course_id is None:
        return Reply(t("withdraw.usage"))
    actor = await _actor(msg, uow, learner, settings)
    done = await service.withdraw(uow, course_id, actor, clock.now())
    if done.status is EditStatus.NO_COURSE:
        return Reply(t("admin.no_course", id=course_id))
    if done.status is EditStatus.UNCHANGED:
        return Reply(t("withdraw.already", id=course_id))
    return Reply(t("withdraw.done", id=course_id, title=esc(course_title(done.course, t))))


@router.command("category", "分类", admin=True)
async def category(msg: Incoming, uow, learner, t, settings, clock) -> Reply:
    """`/category add <slug> <name zh> <name en>` (the English name may have spaces)."""
    parts = msg.args.split(maxsplit=3)
    if len(parts) != 4 or parts[0].lower() not in ("add", "new", "新增"):
        return Reply(t("category.usage"))
    _, slug, name_zh, name_en = parts
    actor = await _actor(msg, uow, learner, settings)
    done = await service.add_category(uow, slug, name_zh, name_en.strip(), actor, clock.now())
    if done.status is EditStatus.BAD_SLUG:
        return Reply(t("category.bad_slug", slug=esc(slug)))
    if done.status is EditStatus.TAKEN:
        return Reply(t("category.taken", slug=esc(slug)))
    return Reply(t("category.done", slug=esc(slug), zh=esc(name_zh), en=esc(name_en.strip())))


@router.command("cover", "封面", admin=True)
async def cover(msg: Incoming, uow, learner, t, settings, clock) -> Reply:
    """A photo captioned `/cover <id>` becomes the course's cover; `/cover <id> off` removes
    it. The photo arrives as `msg.image` (bytes) from channels that receive pictures."""
    head, _, rest = msg.args.strip().partition(" ")
    course_id = _id(head)
    off = rest.strip().lower() in ("off", "none", "remove", "删除")
    if course_id is None:
        return Reply(t("cover.usage"))
    if msg.image is None and not off:  # WeChat pictures carry no caption: ask for it next
        if await uow.courses.get(course_id) is None:
            return Reply(t("admin.no_course", id=course_id))
        await expect_text(uow, learner.id, "cover", course_id=course_id)
        return Reply(t("cover.send_now", id=course_id))
    actor = await _actor(msg, uow, learner, settings)
    return await _set_cover(uow, t, course_id, None if off else msg.image, actor, clock)


@router.step("cover")
async def cover_step(msg: Incoming, uow, learner, t, step, settings, clock) -> Reply:
    """The picture sent after `/cover <id>`."""
    if msg.image is None:
        return Reply(t("cover.usage"))
    actor = await _actor(msg, uow, learner, settings)
    return await _set_cover(uow, t, int(step["course_id"]), msg.image, actor, clock)


async def _set_cover(uow, t, course_id: int, image: bytes | None, actor, clock) -> Reply:
    done = await service.set_cover(uow, course_id, image, actor, clock.now())
    if done.status is EditStatus.NOT_YOURS:
        return Reply(t("kpi.not_yours", id=course_id))
    if done.status is EditStatus.NO_COURSE:
        return Reply(t("admin.no_course", id=course_id))
    if done.status is EditStatus.BAD_VALUE:
        return Reply(t("cover.too_big", size=done.value // 1000, limit=COVER_LIMIT_KB))
    done_key = "cover.removed" if image is None else "cover.done"
    return Reply(t(done_key, id=course_id))


