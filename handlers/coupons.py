"""Coupons: `/coupon create|list|stats|off` for admins and instructors; learners apply a code
on a course card ("Use a coupon", then type it) or through `/start promo_CODE`."""

from __future__ import annotations

from bot.core import Button, Incoming, Reply, Route, Router, call_with_deps, esc, expect_text
from bot.parsing import payload_id
from handlers.catalog import card_buttons, course_title
from services import audit
from services import coupons as service
from services.catalog import currency_of, price_in

router = Router()
PROMO_PREFIX = "promo_"
REASONS = ("unknown", "off", "expired", "used_up", "used", "other_course", "currency")


def describe(coupon, t) -> str:
    """`20%` or `50 ⭐` / `¥10.00` off."""
    if coupon.kind == service.PERCENT:
        return t("coupon.kind.percent", value=coupon.value)
    return t("coupon.kind.fixed", amount=t.money(coupon.value, coupon.currency))


def refusal(check: service.Check, t) -> Reply:
    """Why a code does not apply, in the learner's words."""
    reason = check.reason if check.reason in REASONS else "unknown"
    return Reply(t(f"coupon.reason.{reason}"))


async def _actor(msg: Incoming, uow, learner, settings):
    return await audit.actor_of(uow, settings, msg.channel, msg.user_ref, learner.id)


@router.command("coupon", "优惠券")
async def coupon(msg: Incoming, uow, learner, t, settings, clock) -> Reply:
    """`/coupon create CODE 20%|50stars|10cny [max_uses] [until] [course_id]`, `list`, `stats`,
    `off CODE` — admins for every course, instructors for their own."""
    actor = await _actor(msg, uow, learner, settings)
    if not actor.is_staff:
        return Reply(t("coupon.staff_only"))
    verb, _, rest = msg.args.strip().partition(" ")
    verb = verb.lower()
    now = clock.now()
    if verb in ("create", "new", "创建"):
        new = service.parse_create(rest, settings.zone, now)
        if new is None:
            return Reply(t("coupon.usage"))
        created = await service.create(uow, actor, new, now)
        if created.outcome == "taken":
            return Reply(t("coupon.taken", code=esc(new.code)))
        if created.outcome == "no_course":
            return Reply(t("kpi.no_course", id=new.course_id))
        if created.outcome == "refused":
            return Reply(t("coupon.refused"))
        return Reply(t("coupon.created", code=esc(new.code), discount=describe(created.coupon, t)))
    if verb in ("off", "停用"):
        code = rest.strip().upper()
        outcome = await service.switch_off(uow, actor, code, now) if code else "not_found"
        if outcome == "not_found":
            return Reply(t("coupon.not_found", code=esc(code)))
        if outcome == "refused":
            return Reply(t("coupon.refused"))
        return Reply(t("coupon.off_done", code=esc(code)))
    if verb in ("list", "stats", "列表", "统计"):
        lines = await service.listed(uow, actor)
        if not lines:
            return Reply(t("coupon.list_empty"))
        key = "coupon.stats_line" if verb in ("stats", "统计") else "coupon.line"
        rows = [t("coupon.list_head")]
        for line in lines:
            c = line.coupon
            rows.append(
                t(
                    key,
                    code=esc(c.code),
                    discount=describe(c, t),
                    uses=line.uses,
                    limit=c.max_uses if c.max_uses is not None else "∞",
                    until=t.when(c.valid_until) if c.valid_until else "—",
                    course=f"#{c.course_id}" if c.course_id else t("coupon.all_courses"),
                    state=t("coupon.state.on") if c.active else t("coupon.state.off"),
                    reserved=line.reserved,
                    given=t.money(line.discount_given, c.currency)
                    if c.currency
                    else line.discount_given,
                )
            )
        return Reply("\n".join(rows))
    return Reply(t("coupon.usage"))


@card_buttons
async def coupon_card_button(course, learner, owned, uow, t) -> list[Button]:
    """A "Use a coupon" button on cards of courses not yet owned, while any coupon is on."""
    if owned or not await uow.coupons.any_active():
        return []
    return [Button(t("coupon.button"), f"cpn:{course.id}")]


@router.button("cpn")
async def coupon_button(msg: Incoming, uow, learner, t) -> Reply:
    """ "Use a coupon": the next plain text is the code."""
    course_id = payload_id(msg.payload)
    course = await uow.courses.get(course_id) if course_id else None
    if course is None or not course.active:
        return Reply(t("card.not_found"))
    await expect_text(uow, learner.id, "coupon", course_id=course.id)
    return Reply(t("coupon.prompt", title=esc(course_title(course, t))))


async def apply_code(code: str, course, msg, uow, learner, t, clock, channels) -> Reply:
    """Check a code (for a course when given), keep it for checkout, show the new price."""
    now = clock.now()
    currency = currency_of(channels, msg.channel)
    if course is None:
        found = await service.apply(uow, learner.id, code, now)
        if not found.ok:
            return refusal(found, t)
        coupon = found.coupon
        if coupon.course_id is not None:
            course = await uow.courses.get(coupon.course_id)
        if course is None:
            return Reply(
                t("coupon.applied", code=esc(coupon.code), discount=describe(coupon, t)),
                [[Button(t("start.catalog"), "cats")]],
            )
    price = price_in(course, currency)
    if price is None:
        return Reply(t("buy.no_price"))
    found = await service.apply(uow, learner.id, code, now, course, currency, price)
    if not found.ok:
        return refusal(found, t)
    title = esc(course_title(course, t))
    text = t(
        "coupon.applied_course",
        code=esc(found.coupon.code),
        title=title,
        old=t.money(price, currency),
        new=t.money(found.price, currency),
    )
    return Reply(
        text, [[Button(t("coupon.buy", price=t.money(found.price, currency)), f"buy:{course.id}")]]
    )


@router.step("coupon")
async def coupon_step(msg: Incoming, uow, learner, t, clock, channels, step) -> Reply:
    """The code typed after "Use a coupon"."""
    course = await uow.courses.get(int(step["course_id"]))
    if course is None:
        return Reply(t("card.not_found"))
    return await apply_code(msg.text, course, msg, uow, learner, t, clock, channels)


def wrap_router(router: Router) -> None:
    """After all routes merged: `/start promo_CODE` pre-applies a coupon; other payloads go
    to the start handler as before."""
    for word, route in list(router.commands.items()):
        if route.handler.__name__ != "start" or route.handler.__module__ != "handlers.start":
            continue
        router.commands[word] = Route(_promo_start(route.handler), route.admin)


def _promo_start(start_handler):
    async def start_or_promo(msg: Incoming, uow, learner, t, deps) -> object:
        payload = msg.args.strip()
        if payload.lower().startswith(PROMO_PREFIX) and len(payload) > len(PROMO_PREFIX):
            code = payload[len(PROMO_PREFIX) :]
            return await apply_code(
                code, None, msg, uow, learner, t, deps["clock"], deps["channels"]
            )
        return await call_with_deps(start_handler, deps)

    start_or_promo.__name__ = start_or_promo.__qualname__ = "start_or_promo"
    return start_or_promo
