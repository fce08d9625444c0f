"""KPI figures of /stats on a fixed dataset, every expected value worked out by hand."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from services import stats
from storage.models import (
    Attendance,
    CouponRedemption,
    Enrolment,
    Interaction,
    Learner,
    LiveSession,
    Order,
    Payment,
    Question,
    Rating,
)


async def build_dataset(app, now) -> dict:
    """Six learners, two courses (A, B), sessions, ratings, questions, clicks and a coupon.

    Times are relative to `now` (d = days before now).
    """
    async with app.uow() as uow:
        a, b = [c.id for c in (await uow.courses.all())[:2]]
        s = uow.session
        learners = {n: Learner(display_name=f"L{n}", locale="en") for n in range(1, 7)}
        s.add_all(learners.values())
        await s.flush()
        L = {n: row.id for n, row in learners.items()}
        d = lambda days: now - timedelta(days=days)  # noqa: E731
        charge = iter(range(1, 100))

        def pay(n, course, currency, amount, days, status="paid", order_id=None):
            s.add(
                Payment(
                    provider="t",
                    provider_charge_id=f"c{next(charge)}",
                    order_id=order_id,
                    learner_id=L[n],
                    course_id=course,
                    channel="console",
                    user_ref=f"u{n}",
                    currency=currency,
                    amount=amount,
                    status=status,
                    created_at=d(days),
                )
            )

        def act(n, course, kind, days):
            s.add(Interaction(learner_id=L[n], course_id=course, kind=kind, created_at=d(days)))

        order = Order(
            learner_id=L[3],
            course_id=a,
            channel="console",
            currency="XTR",
            amount=100,
            status="paid",
            created_at=d(2),
        )
        s.add(order)
        await s.flush()
        pay(1, a, "XTR", 100, 40)
        pay(1, b, "XTR", 200, 5)
        pay(2, a, "CNY", 9900, 10)
        pay(2, b, "CNY", 19900, 3)
        pay(3, a, "XTR", 100, 2, order_id=order.id)
        pay(4, a, "XTR", 100, 1, status="refunded")
        pay(6, a, "XTR", 100, 50)
        for n, course, days in (
            (1, a, 40),
            (1, b, 5),
            (2, a, 10),
            (2, b, 3),
            (3, a, 2),
            (6, a, 50),
        ):
            act(n, course, "purchase", days)
        for n, course in ((1, a), (2, a), (3, b), (5, a), (4, a)):
            act(n, course, "view", 6)
        act(5, a, "rec_click", 8)
        act(3, a, "rec_click", 3)
        act(2, b, "rec_click", 2)
        for n, course in ((1, a), (2, a), (3, a), (6, a), (1, b), (2, b)):
            s.add(Enrolment(learner_id=L[n], course_id=course, created_at=d(1)))
        sessions = [
            LiveSession(course_id=a, title="S1", starts_at=d(7), url="https://x/1"),
            LiveSession(course_id=a, title="S2", starts_at=d(1), url="https://x/2"),
            LiveSession(
                course_id=b, title="S3", starts_at=d(2), url="https://x/3", status="cancelled"
            ),
            LiveSession(
                course_id=a, title="S4", starts_at=now + timedelta(days=2), url="https://x/4"
            ),
        ]
        s.add_all(sessions)
        await s.flush()
        for session, n in ((sessions[0], 1), (sessions[0], 2), (sessions[1], 3)):
            s.add(
                Attendance(
                    session_id=session.id,
                    learner_id=L[n],
                    course_id=session.course_id,
                    first_at=d(1),
                    last_at=d(1),
                )
            )
        for n, parts, score in ((1, (5, 4, 3), 4.1), (2, (3, 3, 3), 3.0), (3, (1, 2, 1), 1.3)):
            s.add(
                Rating(
                    learner_id=L[n],
                    course_id=a,
                    content=parts[0],
                    instructor=parts[1],
                    interaction=parts[2],
                    score=score,
                    created_at=d(4),
                    updated_at=d(4),
                )
            )
        for course, status in (
            (a, "open"),
            (a, "open"),
            (a, "answered"),
            (b, "open"),
            (None, "open"),
        ):
            s.add(
                Question(
                    learner_id=L[5], course_id=course, text="?", status=status, created_at=d(1)
                )
            )
        from storage.models import Coupon

        coupon = Coupon(
            code="HALF", kind="fixed", value=50, currency="XTR", active=True, created_at=d(9)
        )
        s.add(coupon)
        await s.flush()
        s.add(
            CouponRedemption(
                coupon_id=coupon.id,
                learner_id=L[3],
                order_id=order.id,
                currency="XTR",
                list_amount=150,
                amount=100,
                status="used",
                created_at=d(3),
                used_at=d(2),
            )
        )
        await uow.commit()
    return {"a": a, "b": b, "L": L}


async def test_kpis_of_all_courses_over_30_days(app, clock):
    now = clock.now()
    await build_dataset(app, now)
    async with app.uow() as uow:
        r = await stats.report(uow, None, "30d", now, app.settings.zone)
    # Paid in the window: L1-B 200⭐, L2-A ¥99, L2-B ¥199, L3-A 100⭐ (L1-A and L6-A are older,
    # L4's is refunded).
    assert r.revenue == {"XTR": 300, "CNY": 29800}
    assert r.payments == 4
    assert r.refunded == {"XTR": 100}
    assert r.buyers == 3  # L1, L2, L3
    assert r.repeat_buyers == 1 and r.repurchase == pytest.approx(1 / 3)  # L2 bought A and B
    assert (r.viewers, r.converted) == (5, 3)  # viewers L1-L5; L1, L2, L3 bought
    assert r.conversion == pytest.approx(0.6)
    # No learner's first purchase is both in the last 30 days and 30 days old.
    assert (r.cohort, r.retained, r.retention) == (0, 0, None)
    # S1 (A): L1, L2 of 4 enrolled in A; S2 (A): L3 of 4; S3 cancelled, S4 in the future.
    assert [(s.title, s.attended, s.enrolled) for s in r.sessions] == [("S1", 2, 4), ("S2", 1, 4)]
    assert r.attendance == pytest.approx(3 / 8)
    # S = (4.1 + 3.0 + 1.3) / 3; content (5+3+1)/3, instructor (4+3+2)/3, interaction (3+3+1)/3
    assert r.ratings == 3
    assert r.satisfaction == pytest.approx(2.8)
    assert r.criteria == pytest.approx((3.0, 3.0, 7 / 3))
    assert r.rating_histogram == {1: 1, 2: 0, 3: 1, 4: 1, 5: 0}
    assert r.open_questions == 4  # 2 of A, 1 of B, 1 about no course
    # Clicks: L5→A (never bought), L3→A (bought a day later), L2→B (had bought B before).
    assert (r.rec_clicks, r.rec_bought) == (3, 1)
    assert (r.coupon_uses, r.coupon_discount) == (1, {"XTR": 50})
    # Per day in Asia/Shanghai (now is 16:00 there): L2's ¥199 three days ago.
    assert r.per_day[date(2026, 11, 20)] == {"CNY": 19900, "buyers": 1}


async def test_retention_and_repurchase_over_90_days(app, clock):
    now = clock.now()
    await build_dataset(app, now)
    async with app.uow() as uow:
        r = await stats.report(uow, None, "90d", now, app.settings.zone)
    assert r.revenue == {"XTR": 500, "CNY": 29800}  # + L1-A 100⭐ and L6-A 100⭐
    assert r.buyers == 4 and r.repeat_buyers == 2  # L1 and L2 bought two courses
    # Cohort: first purchase ≥ 30 days ago: L1 (40 d, active 6 d ago: retained), L6 (50 d,
    # nothing since: not retained).
    assert (r.cohort, r.retained) == (2, 1)
    assert r.retention == pytest.approx(0.5)


async def test_an_instructors_scope_is_their_course_only(app, clock):
    now = clock.now()
    data = await build_dataset(app, now)
    async with app.uow() as uow:
        r = await stats.report(uow, [data["a"]], "30d", now, app.settings.zone)
    assert r.revenue == {"CNY": 9900, "XTR": 100}  # L2-A, L3-A
    assert r.buyers == 2 and r.repeat_buyers == 0
    assert (r.viewers, r.converted) == (4, 1)  # A viewed by L1, L2, L4, L5; L2 bought A
    assert r.open_questions == 2
    assert (r.rec_clicks, r.rec_bought) == (2, 1)
    assert r.coupon_uses == 1


def test_parse_args():
    assert stats.parse_args("") == (None, "30d")
    assert stats.parse_args("#12 7d") == (12, "7d")
    assert stats.parse_args("all 3") == (3, "all")
    assert stats.parse_args("soon") is None
