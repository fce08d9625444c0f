"""Issue 13 through the dispatcher: /stats with its chart, CSV export, tracked links, coupons,
roles and the audit log, and the learner's data rights."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import aiohttp
import pytest
from PIL import Image
from sqlalchemy import func, select

from bot.channels.links import TrackedLinks
from bot.channels.web import WebServer
from services import attendance, coupons, export
from storage.models import Attendance, Identity, Interaction, Payment, Question, Rating
from tests.handlers.support import Chat, collecting_channel, enrol, learner_for, payloads
from tests.services.test_stats import build_dataset

ADMIN = "me"  # console:me is on the test ADMINS list


async def outputs(app, user_ref: str, command: str, args: str = "") -> list:
    channel = collecting_channel(app, "console")
    found = await channel.receive(
        app,
        user_ref,
        kind="command",
        command=command,
        args=args,
        text=f"/{command} {args}",
        locale="en",
        display_name=user_ref,
    )
    channel.pop_all(user_ref)
    return found


def check_png(data: bytes) -> None:
    """A real picture: PNG, chart-sized, many colours, not one flat background."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(io.BytesIO(data)).convert("RGB")
    assert image.size[0] >= 800 and image.size[1] >= 600
    colours = image.getcolors(maxcolors=1 << 20)
    assert len(colours) > 20
    assert max(n for n, _ in colours) < 0.97 * image.size[0] * image.size[1]
    for rgb in ((214, 39, 40), (44, 160, 44)):  # the CNY bars and the attended bars are drawn
        assert any(c == rgb for _, c in colours), rgb


async def test_stats_sends_figures_and_a_chart(app, clock):
    await build_dataset(app, clock.now())
    text, chart = await outputs(app, ADMIN, "stats", "30d")
    assert "Conversion (card → bought): 60.0% (3/5)" in text.text
    assert "Repurchase rate: 33.3% (1/3)" in text.text
    assert "• #" in text.text and "2/4 attended" in text.text
    assert chart.image is not None
    check_png(chart.image)


async def test_a_learner_gets_no_figures(app):
    (reply,) = await outputs(app, "nobody", "stats")
    assert "Only admins and instructors" in reply.text


async def test_csv_export_round_trips_chinese(app, clock):
    data = await build_dataset(app, clock.now())
    async with app.uow() as uow:
        course = await uow.courses.get(data["a"])
        title_zh = course.title_zh
        csv_bytes, count = await export.export(uow, "sales", None)
        ratings_csv, _ = await export.export(uow, "ratings", [data["a"]])
    assert csv_bytes.startswith("\ufeff".encode())
    rows = export.read_csv(csv_bytes)
    assert count == len(rows) == 7
    assert any(r["title_zh"] == title_zh for r in rows)
    assert any(ch > "\u4e00" for ch in title_zh)  # the demo titles are Chinese
    assert sum(int(r["amount"]) for r in rows if r["currency"] == "XTR") == 600
    assert [r["coupon_id"] for r in rows if r["coupon_id"]] == ["1"]
    assert len(export.read_csv(ratings_csv)) == 3
    (reply,) = await outputs(app, ADMIN, "export", "sales")
    assert "7 rows" in reply.text
    assert reply.document.filename.startswith("sales-") and reply.document.filename[-4:] == ".csv"
    assert reply.document.data.startswith("\ufeff".encode())
    assert export.read_csv(reply.document.data) == rows


def test_csv_never_holds_a_formula():
    data = export.to_csv("learners", [(1, "=HYPERLINK(1)", "zh", 1, "课程", "c", None)])
    assert export.read_csv(data)[0]["name"] == "'=HYPERLINK(1)"


# --- Tracked links ---------------------------------------------------------------------------


@pytest.fixture
async def links_server(app, unused_tcp_port_factory=None):
    server = WebServer("127.0.0.1", 0)
    server.add(TrackedLinks(app))
    await server.start()
    port = server._runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}"
    await server.stop()


async def a_session(app, clock, status="scheduled") -> tuple[int, int, int]:
    learner_id = await enrol(app, "console", "u1", 1)
    async with app.uow() as uow:
        session = await uow.sessions.add(
            course_id=1,
            title="直播一",
            starts_at=clock.now() + timedelta(minutes=5),
            url="https://live.example/room",
            status=status,
        )
        await uow.commit()
        return learner_id, session.id, session.course_id


async def token_for(app, learner_id, session_id) -> str:
    async with app.uow() as uow:
        link = await attendance.link_for(uow, app.settings, learner_id, session_id)
        await uow.commit()
    return link.rsplit("/", 1)[1]


async def test_a_tracked_link_redirects_and_counts_once(app, clock, links_server):
    learner_id, session_id, course_id = await a_session(app, clock)
    token = await token_for(app, learner_id, session_id)
    async with aiohttp.ClientSession() as http:
        for _ in range(3):  # the owner twice, then a friend the link was forwarded to
            async with http.get(f"{links_server}/go/{token}", allow_redirects=False) as resp:
                assert resp.status == 302
                assert resp.headers["Location"] == "https://live.example/room"
    async with app.uow() as uow:
        rows = await uow.attendance.of_session(session_id)
        kinds = (
            (
                await uow.session.execute(
                    select(Interaction.kind).where(Interaction.learner_id == learner_id)
                )
            )
            .scalars()
            .all()
        )
    assert [(r.learner_id, r.opens) for r in rows] == [(learner_id, 3)]
    assert list(kinds).count("attendance") == 1


async def test_forged_foreign_and_cancelled_links(app, clock, links_server):
    learner_id, session_id, _ = await a_session(app, clock)
    token = await token_for(app, learner_id, session_id)
    other = await learner_for(app, "console", "u2")
    lid, sid, mac = token.split(".")
    forged = [
        f"{attendance._b36(other)}.{sid}.{mac}",  # someone else's learner id
        f"{lid}.{attendance._b36(session_id + 1)}.{mac}",  # another session
        attendance.make_token(b"another deployment's key", learner_id, session_id),
        "garbage",
    ]
    async with aiohttp.ClientSession() as http:
        for bad in forged:
            async with http.get(f"{links_server}/go/{bad}", allow_redirects=False) as resp:
                assert resp.status == 404, bad
        async with app.uow() as uow:
            session = await uow.sessions.get(session_id)
            session.status = "cancelled"
            await uow.commit()
        async with http.get(f"{links_server}/go/{token}", allow_redirects=False) as resp:
            assert resp.status == 410
            assert "直播一" in await resp.text()
    async with app.uow() as uow:
        assert await uow.session.scalar(select(func.count()).select_from(Attendance)) == 0


# --- Coupons ---------------------------------------------------------------------------------


async def test_coupon_rules(app, clock):
    now = clock.now()
    admin = Chat(app, ADMIN)
    reply = await admin.send("/coupon create SPRING 20% 2 2026-11-30")
    assert "SPRING" in reply.text and "20% off" in reply.text
    assert "already taken" in (await admin.send("/coupon create spring 5%")).text
    await admin.send("/coupon create FREE 100% - - #1")
    await admin.send("/coupon create TEN 10cny")
    a, b, c = [await learner_for(app, "console", f"c{n}") for n in range(3)]
    async with app.uow() as uow:
        course1, course2 = await uow.courses.get(1), await uow.courses.get(2)
        price = course1.price_stars
        # never below 1, even at 100% off; a course-bound coupon only fits its course
        found = await coupons.apply(uow, a, "free", now, course1, "XTR", price)
        assert found.ok and found.price == 1
        assert (await coupons.check(uow, "FREE", a, now, course2, "XTR", 10)).reason == (
            "other_course"
        )
        # a fixed CNY amount does not apply to a Stars price; it does to a CNY one
        assert (await coupons.check(uow, "TEN", a, now, course1, "XTR", price)).reason == (
            "currency"
        )
        assert (await coupons.check(uow, "TEN", a, now, course1, "CNY", 500)).price == 1
        assert (await coupons.check(uow, "TEN", a, now, course1, "CNY", 9900)).price == 8900
        assert (await coupons.check(uow, "NOPE", a, now)).reason == "unknown"
        # two uses at most, one per learner, counted only when paid
        for learner in (a, b):
            order = await uow.orders.create(
                learner_id=learner,
                course_id=1,
                channel="console",
                currency="XTR",
                amount=price,
                created_at=now,
            )
            await uow.kv.put(
                coupons.PENDING_KEY.format(learner_id=learner),
                {"coupon_id": (await uow.coupons.by_code("SPRING")).id},
            )
            new_price, coupon = await coupons.price_for(uow, learner, course1, "XTR", price, now)
            assert new_price == price - price * 20 // 100
            order.amount = new_price
            await coupons.attach(uow, order, coupon, price, now)
            # pre-checkout: the discounted amount is what may be paid
            assert await coupons.checkout_price(uow, order, course1, price, now) == new_price
            assert (await coupons.check(uow, "SPRING", c, now)).ok  # reserved is not used
            assert await coupons.redeem(uow, order, now)
        assert (await coupons.check(uow, "SPRING", a, now)).reason == "used"
        assert (await coupons.check(uow, "SPRING", c, now)).reason == "used_up"
        later = now + timedelta(days=8)  # after the last day, 2026-11-30 in Asia/Shanghai
        assert (await coupons.check(uow, "TEN", c, later)).ok
        await uow.commit()
    async with app.uow() as uow:
        spring = await uow.coupons.by_code("SPRING")
        spring.max_uses = None
        await uow.commit()
    async with app.uow() as uow:
        assert (await coupons.check(uow, "SPRING", c, now + timedelta(days=8))).reason == (
            "expired"
        )
        # switched off after an invoice was sent: pre-checkout wants the full price again
        order = await uow.orders.create(
            learner_id=c, course_id=1, channel="console", currency="XTR", amount=1, created_at=now
        )
        await coupons.apply(uow, c, "FREE", now)
        _, coupon = await coupons.price_for(uow, c, course1, "XTR", price, now)
        await coupons.attach(uow, order, coupon, price, now)
        assert await coupons.checkout_price(uow, order, course1, price, now) == 1
        await uow.commit()
    assert "switched off" in (await admin.send("/coupon off FREE")).text
    async with app.uow() as uow:
        order = await uow.orders.get(order.id)
        assert await coupons.checkout_price(uow, order, course1, price, now) == price
    stats = (await admin.send("/coupon stats")).text
    assert "SPRING: paid uses 2" in stats


async def test_promo_deep_link_and_the_card_button(app):
    admin = Chat(app, ADMIN)
    await admin.send("/coupon create HALF 50% - - #1")
    learner = Chat(app, "promo-user")
    reply = await learner.send("/start promo_HALF")
    assert "HALF applied" in reply.text and payloads(reply) == ["buy:1"]
    assert "Welcome to the course shop" in (await learner.send("/start")).text
    card = await learner.press("course:2")
    assert "cpn:2" in payloads(card)
    await learner.press("cpn:2")
    assert "another course" in (await learner.send("HALF")).text
    await learner.press("cpn:1")
    assert "HALF applied" in (await learner.send("half")).text
    assert "does not exist" in (await learner.send("/start promo_NOPE")).text


# --- Roles -----------------------------------------------------------------------------------


async def test_instructors_see_and_change_only_their_own(app, clock):
    await build_dataset(app, clock.now())
    admin = Chat(app, ADMIN)
    await learner_for(app, "console", "teacher1", "Teacher One")
    await learner_for(app, "console", "teacher2", "Teacher Two")
    assert "teaches course #1" in (await admin.send("/instructor add console:teacher1 1")).text
    assert "teaches course #2" in (await admin.send("/instructor add console:teacher2 2")).text
    one, two = Chat(app, "teacher1"), Chat(app, "teacher2")
    # stats: own course yes, another's no, no argument = own courses only
    text, _chart = await outputs(app, "teacher1", "stats", "1")
    assert "#1" in text.text
    (refused,) = await outputs(app, "teacher1", "stats", "2")
    assert "not one of your courses" in refused.text
    mine, _ = await outputs(app, "teacher1", "stats")
    assert "your 1 course" in mine.text and "Open questions: 2" in mine.text
    # exports, coupons
    (refused,) = await outputs(app, "teacher1", "export", "sales 2")
    assert "not one of your courses" in refused.text
    assert "own courses" in (await one.send("/coupon create TT1 10% - - #2")).text
    assert "own courses" in (await one.send("/coupon create TT1 10%")).text  # site-wide
    assert "created" in (await two.send("/coupon create TT2 10% - - #2")).text
    assert "own courses" in (await one.send("/coupon off TT2")).text
    assert "TT2" not in (await one.send("/coupon list")).text
    # questions: another instructor's question cannot be answered
    async with app.uow() as uow:
        qid = await uow.session.scalar(
            select(Question.id).where(Question.course_id == 2, Question.status == "open")
        )
    assert "Only this course's instructor" in (await one.send(f"/answer {qid} hi")).text
    async with app.uow() as uow:
        assert (await uow.questions.get(qid)).status == "open"
    # audit log: admin only, records the role changes and the coupon
    assert "only admins" in (await one.send("/audit")).text
    log = (await admin.send("/audit")).text
    assert "instructor.add" in log and "coupon.create TT2" in log
    assert "freed" in (await admin.send("/instructor remove console:teacher1")).text
    (refused,) = await outputs(app, "teacher1", "stats")
    assert "Only admins and instructors" in refused.text


# --- Data rights -----------------------------------------------------------------------------


async def test_mydata_then_deletemydata(app, clock):
    data = await build_dataset(app, clock.now())
    learner_id = data["L"][2]
    async with app.uow() as uow:
        s = uow.session
        s.add(
            Identity(
                learner_id=learner_id, channel="console", user_ref="me2", last_seen_at=clock.now()
            )
        )
        rating = (await s.execute(select(Rating).where(Rating.learner_id == learner_id))).scalar()
        rating.review = "讲得很好，李老师"
        await uow.commit()
        before = await uow.payments.totals()
    user = Chat(app, "me2", name="李雷")
    channel = collecting_channel(app, "console")
    (reply,) = await channel.receive(
        app, "me2", kind="command", command="mydata", display_name="李雷", locale="en"
    )
    channel.pop_all("me2")
    assert "records" in reply.text and reply.document.filename.endswith(".json")
    exported = json.loads(reply.document.data.decode("utf-8"))
    assert exported["learner"]["display_name"] == "李雷"
    assert len(exported["payments"]) == 2 and len(exported["enrolments"]) == 2
    assert exported["ratings"][0]["review"] == "讲得很好，李老师"
    assert exported["identities"][0]["user_ref"] == "me2"
    reply = await user.send("/deletemydata")
    assert payloads(reply) == ["erase:yes", "erase:no"]
    assert "Nothing" in (await user.press("erase:no")).text
    assert "expired" in (await user.press("erase:yes")).text
    await user.send("/deletemydata")
    assert "erased" in (await user.press("erase:yes")).text
    async with app.uow() as uow:
        learner = await uow.learners.get(learner_id)
        assert learner.display_name == ""
        assert await uow.learners.identities_of(learner_id) == []
        payments = (
            (await uow.session.execute(select(Payment).where(Payment.learner_id == learner_id)))
            .scalars()
            .all()
        )
        assert len(payments) == 2 and {p.user_ref for p in payments} == {"erased"}
        rating = (
            await uow.session.execute(select(Rating).where(Rating.learner_id == learner_id))
        ).scalar()
        assert rating.review is None and rating.score == 3.0
        assert await uow.payments.totals() == before  # accounting still adds up
        left = json.dumps(
            (
                await __import__("services.data_rights").data_rights.export(
                    uow, learner_id, clock.now()
                )
            ),
            ensure_ascii=False,
        )
    for personal in ("李雷", "me2", "讲得很好", "u2"):
        assert personal not in left
