"""Coupons and promo links: create, switch off, apply at checkout, count a use when paid.

A coupon is `percent` off (1-100) or a `fixed` amount off in one currency (Stars, or CNY in
fen); it may be limited to a number of uses, a last day and one course. Each learner uses a
coupon once. A learner applies a code (typed on the buy step, or `/start promo_CODE`): it is
kept as their pending coupon and prices the next order of a course it fits. The order then holds
a reservation; pre-checkout asks `checkout_price`, and only a successful payment turns the
reservation into a use (`redeem`). A discounted price is never below 1.

Checkout calls (services/purchase.py):
    open_order:          price, coupon = await coupons.price_for(uow, learner_id, course,
                                                                 currency, price, now)
                         ... after the order is known: await coupons.attach(uow, order, coupon,
                                                                            list_price, now)
    check_pre_checkout:  expected = await coupons.checkout_price(uow, order, course, list, now)
    record_payment:      await coupons.redeem(uow, order, now)  (when it enrolled)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from bot.i18n import CNY, STARS
from bot.parsing import MAX_AMOUNT, parse_date, parse_id, parse_int, parse_yuan

PERCENT, FIXED = "percent", "fixed"
CODE = re.compile(r"^[A-Z0-9_-]{3,32}$")
PENDING_KEY = "coupon:{learner_id}"
MIN_PRICE = 1
MAX_USES = 1_000_000


@dataclass(frozen=True)
class Discount:
    """`percent` off, or `fixed` amount (smallest unit) off in `currency`."""

    kind: str
    value: int
    currency: str | None = None


def parse_discount(text: str) -> Discount | None:
    """`20%`, `50stars` / `50⭐`, `10cny` / `10元` / `9.9cny`; None when it is none of them."""
    text = text.strip().lower().replace(" ", "")
    if text.endswith("%"):
        value = parse_int(text[:-1], 1, 100)
        return Discount(PERCENT, value) if value is not None else None
    for suffix in ("stars", "star", "⭐", "xtr"):
        if text.endswith(suffix):
            value = parse_int(text[: -len(suffix)], 1, MAX_AMOUNT)
            return Discount(FIXED, value, STARS) if value is not None else None
    for suffix in ("cny", "rmb", "元", "yuan", "¥"):
        if text.endswith(suffix):
            fen = parse_yuan(text[: -len(suffix)])
            return Discount(FIXED, fen, CNY) if fen is not None else None
    return None


def discounted(kind: str, value: int, currency: str | None, price: int, in_currency: str):
    """The price after the discount (never below 1), or None when it does not apply here."""
    if kind == PERCENT:
        off = price * value // 100
    elif currency == in_currency:
        off = value
    else:
        return None
    return max(MIN_PRICE, price - off)


@dataclass(frozen=True)
class NewCoupon:
    """The fields of `/coupon create`, checked."""

    code: str
    discount: Discount
    max_uses: int | None = None
    valid_until: datetime | None = None
    course_id: int | None = None


def parse_create(args: str, zone: ZoneInfo, now: datetime | None = None) -> NewCoupon | None:
    """`CODE 20%|50stars|10cny [max_uses] [until YYYY-MM-DD] [course_id]` (`-` skips a field).

    A last day counts to its end in `zone`. None when malformed.
    """
    parts = args.split()
    if len(parts) < 2 or len(parts) > 5:
        return None
    code, discount = parts[0].upper(), parse_discount(parts[1])
    if not CODE.match(code) or discount is None:
        return None
    max_uses = until = course_id = None
    rest = parts[2:]
    for n, part in enumerate(rest):
        if part == "-":
            continue
        if part.startswith("#"):
            course_id = parse_id(part)
            if course_id is None:
                return None
        elif re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", part):
            day = parse_date(part, now)
            if day is None:
                return None
            until = datetime.combine(day + timedelta(days=1), time(), zone) - timedelta(seconds=1)
        elif n == 0 and parse_int(part) is not None:
            max_uses = parse_int(part, 1, MAX_USES)
            if max_uses is None:
                return None
        elif parse_id(part) is not None:
            course_id = parse_id(part)
        else:
            return None
    return NewCoupon(code, discount, max_uses, until, course_id)


@dataclass(frozen=True)
class Created:
    """`outcome`: done, taken (code exists), no_course, refused (not your course)."""

    outcome: str
    coupon: object = None


async def create(uow, actor, new: NewCoupon, now: datetime) -> Created:
    """Create a coupon; an instructor only for a course of their own."""
    from services import audit

    if new.course_id is not None and await uow.courses.get(new.course_id) is None:
        return Created("no_course")
    if not actor.may_manage(new.course_id):
        return Created("refused")
    if await uow.coupons.by_code(new.code) is not None:
        return Created("taken")
    coupon = await uow.coupons.add(
        code=new.code,
        kind=new.discount.kind,
        value=new.discount.value,
        currency=new.discount.currency,
        max_uses=new.max_uses,
        valid_until=new.valid_until,
        course_id=new.course_id,
        created_by=actor.learner_id,
        active=True,
        created_at=now,
    )
    await audit.record(uow, actor, "coupon.create", new.code, now, course_id=new.course_id)
    return Created("done", coupon)


async def switch_off(uow, actor, code: str, now: datetime) -> str:
    """`/coupon off CODE`: not_found, refused or done."""
    from services import audit

    coupon = await uow.coupons.by_code(code)
    if coupon is None:
        return "not_found"
    if not actor.may_manage(coupon.course_id):
        return "refused"
    coupon.active = False
    await audit.record(uow, actor, "coupon.off", coupon.code, now)
    return "done"


@dataclass(frozen=True)
class CouponLine:
    """One coupon in `/coupon list` and `/coupon stats`."""

    coupon: object
    uses: int
    reserved: int
    discount_given: int


async def listed(uow, actor) -> list[CouponLine]:
    """The coupons this actor may see, with their use counts."""
    coupons = await uow.coupons.listed(None if actor.is_admin else list(actor.course_ids))
    usage = await uow.coupons.usage([c.id for c in coupons])
    return [CouponLine(c, *usage.get(c.id, (0, 0, 0))) for c in coupons]


# --- Applying a code ------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """Whether a coupon may price an order: `reason` is ok, unknown, off, expired, used_up,
    used (by this learner), other_course or currency."""

    reason: str
    coupon: object = None
    price: int | None = None

    @property
    def ok(self) -> bool:
        """True when the coupon applies."""
        return self.reason == "ok"


async def check(
    uow,
    code_or_coupon,
    learner_id: int,
    now: datetime,
    course=None,
    currency=None,
    price: int | None = None,
    order_id: int | None = None,
) -> Check:
    """Every rule of a coupon for one learner (and, given a course, its price there)."""
    coupon = (
        await uow.coupons.by_code(code_or_coupon)
        if isinstance(code_or_coupon, str)
        else code_or_coupon
    )
    if coupon is None:
        return Check("unknown")
    if not coupon.active:
        return Check("off", coupon)
    if coupon.valid_until is not None and now > coupon.valid_until:
        return Check("expired", coupon)
    mine = await uow.coupons.redemption(coupon.id, learner_id)
    if mine is not None and mine.status == "used" and mine.order_id != order_id:
        return Check("used", coupon)
    counted = mine is not None and mine.status == "used"
    limited = coupon.max_uses is not None and not counted
    if limited and await uow.coupons.uses(coupon.id) >= coupon.max_uses:
        return Check("used_up", coupon)
    if course is None:
        return Check("ok", coupon)
    if coupon.course_id is not None and coupon.course_id != course.id:
        return Check("other_course", coupon)
    if price is None:
        return Check("ok", coupon)
    new_price = discounted(coupon.kind, coupon.value, coupon.currency, price, currency)
    if new_price is None:
        return Check("currency", coupon)
    return Check("ok", coupon, new_price)


async def apply(
    uow, learner_id: int, code: str, now: datetime, course=None, currency=None, price=None
) -> Check:
    """Keep a valid code as the learner's pending coupon (for the next order it fits)."""
    found = await check(uow, code.strip().upper(), learner_id, now, course, currency, price)
    if found.ok:
        key = PENDING_KEY.format(learner_id=learner_id)
        await uow.kv.put(key, {"coupon_id": found.coupon.id})
    return found


async def pending(uow, learner_id: int):
    """The learner's pending coupon, or None."""
    value = await uow.kv.get(PENDING_KEY.format(learner_id=learner_id))
    return await uow.coupons.get(int(value["coupon_id"])) if value else None


async def price_for(uow, learner_id: int, course, currency: str, price: int, now: datetime):
    """(price, coupon): the learner's pending coupon applied to a course's list price, when it
    fits; (price, None) otherwise."""
    coupon = await pending(uow, learner_id)
    if coupon is None:
        return price, None
    found = await check(uow, coupon, learner_id, now, course, currency, price)
    return (found.price, coupon) if found.ok else (price, None)


async def attach(uow, order, coupon, list_price: int, now: datetime) -> None:
    """Reserve the coupon on the order (one reservation per learner and coupon)."""
    if coupon is None:
        return
    mine = await uow.coupons.redemption(coupon.id, order.learner_id)
    if mine is None:
        await uow.coupons.reserve(
            coupon_id=coupon.id,
            learner_id=order.learner_id,
            order_id=order.id,
            currency=order.currency,
            list_amount=list_price,
            amount=order.amount,
            status="reserved",
            created_at=now,
        )
    elif mine.status == "reserved":
        mine.order_id, mine.currency = order.id, order.currency
        mine.list_amount, mine.amount, mine.created_at = list_price, order.amount, now


async def checkout_price(uow, order, course, list_price: int | None, now: datetime):
    """What the order may be paid: the coupon price when its reservation still holds, else the
    list price (so a coupon switched off or expired after the invoice fails pre-checkout)."""
    if list_price is None:
        return None
    held = await uow.coupons.redemption_of_order(order.id)
    if held is None:
        return list_price
    coupon = await uow.coupons.get(held.coupon_id)
    found = await check(
        uow, coupon, order.learner_id, now, course, order.currency, list_price, order.id
    )
    return found.price if found.ok else list_price


async def redeem(uow, order, now: datetime) -> bool:
    """A successful payment of the order: its coupon reservation becomes a use."""
    held = await uow.coupons.redemption_of_order(order.id)
    if held is None or held.status == "used":
        return False
    held.status, held.used_at = "used", now
    await uow.kv.pop(PENDING_KEY.format(learner_id=order.learner_id))
    return True
