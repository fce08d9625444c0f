"""The live-session and announcement services, called directly: plain data in, plain data out."""

from __future__ import annotations

import ast
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.i18n import translator_for
from services import announcements, live
from services.announcements import AnnouncementProblem
from services.live import LiveProblem
from storage.models import Learner, OutboxMessage
from tests.scheduler.support import add_learners

ROOT = Path(__file__).resolve().parents[2]
URL = "https://live.example/s"


async def learners(app, *user_ids: int, course_id: int | None = 1, locale="en") -> list[int]:
    """Learners with a Telegram identity each, enrolled in a course (unless None)."""
    await add_learners(app, user_ids, locale=locale)
    async with app.uow() as uow:
        rows = await uow.session.execute(select(Learner.id).order_by(Learner.id.desc()))
        ids = sorted(list(rows.scalars())[: len(user_ids)])
        if course_id is not None:
            for learner_id in ids:
                await uow.enrolments.add(learner_id, course_id, None)
        await uow.commit()
    return ids


async def outbox(app, kind: str | None = None) -> list[OutboxMessage]:
    async with app.uow() as uow:
        stmt = select(OutboxMessage).order_by(OutboxMessage.id)
        if kind is not None:
            stmt = stmt.where(OutboxMessage.kind == kind)
        return list((await uow.session.execute(stmt)).scalars())


async def scheduled(app, now, course_id=1, hours=48) -> int:
    async with app.uow() as uow:
        done = await live.schedule_session(
            uow, app.settings, now, course_id, now + timedelta(hours=hours), URL, "Q&A"
        )
        await uow.commit()
    return done.session.id


async def test_schedule_refuses_with_a_code_and_plans_every_notice(app):
    now = app.clock.now()
    await learners(app, 5001)
    async with app.uow() as uow:
        for args, code in [
            ((9999, now + timedelta(hours=1), URL), "no_course"),
            ((1, now + timedelta(hours=1), "ftp://x"), "bad_url"),
            ((1, now - timedelta(minutes=1), URL), "past"),
            ((1, now + timedelta(hours=1), URL, "x" * (live.MAX_TITLE + 1)), "title_too_long"),
        ]:
            with pytest.raises(LiveProblem) as refused:
                await live.schedule_session(uow, app.settings, now, *args)
            assert refused.value.code == code
        done = await live.schedule_session(
            uow, app.settings, now, 1, now + timedelta(hours=48), URL, "x" * live.MAX_TITLE
        )
        await uow.commit()
    assert (done.course.id, done.learners, len(done.session.title)) == (1, 1, live.MAX_TITLE)
    async with app.uow() as uow:
        planned = await uow.reminders.counts(done.session.id)
    kinds = {kind for kind, _ in live.notice_plan(done.session, app.settings)}
    assert planned == {(kind, "pending"): 1 for kind in kinds}


async def test_moving_and_cancelling_tell_learners_once_each(app):
    now = app.clock.now()
    await learners(app, 5101, 5102)
    session_id = await scheduled(app, now)
    later = now + timedelta(hours=72)
    async with app.uow() as uow:
        moved = await live.reschedule_session(uow, app.settings, now, session_id, later)
        await uow.commit()
    assert (moved.learners, moved.session.starts_at) == (2, later)
    rows = await outbox(app, "live-moved")
    assert len(rows) == 2 and all("has moved to" in row.body["text"] for row in rows)
    async with app.uow() as uow:
        groups = await uow.reminders.pending_groups()
        due = {kind: at for sid, kind, at in groups if sid == session_id}
    assert due["start"] == later
    async with app.uow() as uow:
        cancelled = await live.cancel_session(uow, app.settings, now, session_id)
        await uow.commit()
    assert cancelled.learners == 2
    assert len(await outbox(app, "live-cancelled")) == 2
    async with app.uow() as uow:
        with pytest.raises(LiveProblem) as refused:
            await live.reschedule_session(uow, app.settings, now, session_id, later)
        assert refused.value.code == "not_scheduled"
        with pytest.raises(LiveProblem) as refused:
            await live.cancel_session(uow, app.settings, now, 424242)
        assert refused.value.values == {"id": 424242}
        assert await uow.reminders.pending_groups() == []


async def test_due_notices_are_claimed_once_and_refunded_learners_skipped(app):
    now = app.clock.now()
    kept, refunded = await learners(app, 5201, 5202)
    session_id = await scheduled(app, now, hours=1)
    async with app.uow() as uow:
        await uow.enrolments.revoke(refunded, 1)
        await uow.commit()
    runs = []
    for _ in range(2):
        async with app.uow() as uow:
            runs.append(
                await live.send_due_notices(
                    uow, app.settings, now + timedelta(hours=1), session_id, "start",
                    early=timedelta(0), grace=timedelta(minutes=5),
                )
            )
            await uow.commit()
    assert [(r.claimed, r.queued) for r in runs] == [(2, 1), (0, 0)]
    (row,) = await outbox(app, "live-start")
    assert row.learner_id == kept and URL in row.body["text"]
    async with app.uow() as uow:
        counts = await uow.reminders.counts(session_id)
    assert counts[("start", "sent")] == 1 and counts[("start", "not_enrolled")] == 1


async def test_the_rating_notice_carries_the_feedback_button(app):
    now = app.clock.now()
    await learners(app, 5301)
    session_id = await scheduled(app, now, hours=1)
    async with app.uow() as uow:
        session = await uow.sessions.get(session_id)
        run = await live.send_due_notices(
            uow, app.settings, live.session_end(session), session_id, live.RATE,
            early=timedelta(0), grace=timedelta(minutes=5),
        )
        await uow.commit()
    assert run.queued == 1
    (row,) = await outbox(app, "live-rate")
    assert row.body["buttons"][0][0]["payload"] == "rate:1"


async def test_replays_and_a_new_learners_plan(app):
    now = app.clock.now()
    session_id = await scheduled(app, now, hours=2)
    async with app.uow() as uow:
        with pytest.raises(LiveProblem) as refused:
            await live.set_replay(uow, now, session_id, "not a link")
        assert refused.value.code == "bad_url"
        replay = await live.set_replay(uow, now, session_id, "https://replay.example/1")
        await uow.commit()
    assert replay.due == live.session_end(replay.session)
    (learner,) = await learners(app, 5401)
    async with app.uow() as uow:
        plan = await live.plan_for_new_learner(uow, now, learner, 1)
        await uow.commit()
        mine = await uow.reminders.counts(session_id)
    # the replay is not watchable before the session is over, and /sessions lists none yet
    assert plan.next_starts_at == now + timedelta(hours=2) and plan.replays == 0
    assert mine[("start", "pending")] == 1
    async with app.uow() as uow:
        stranger = await live.sessions_of_course(uow, now, 1, learner_id=None)
        owner = await live.sessions_of_course(uow, now, 1, learner_id=learner)
    assert [item.url for item in stranger.items] == [None]
    assert [item.url for item in owner.items] == [URL]
    assert not any(item.replay for item in owner.items)


def test_replay_counts_are_plural_in_both_languages(app):
    for locale, one, many in [("en", "1 replay is", "2 replays are"), ("zh", "1", "2")]:
        t = translator_for(locale, app.settings)
        assert one in t.plural("live.purchase.replays", 1, n=1, id=3)
        assert many in t.plural("live.purchase.replays", 2, n=2, id=3)


async def test_announcements_fan_out_once_and_report_to_the_author(app):
    now = app.clock.now()
    author, reader, quiet = await learners(app, 5501, 5502, 5503, course_id=None)
    async with app.uow() as uow:
        (await uow.learners.get(quiet)).announcements_opt_out = True
        for code, args in [
            ("too_long", (None, "x" * (announcements.MAX_TEXT + 1))),
            ("no_course", (9999, "hello")),
        ]:
            with pytest.raises(AnnouncementProblem) as refused:
                await announcements.create_announcement(uow, app.settings, now, author, *args)
            assert refused.value.code == code
        later = await announcements.create_announcement(
            uow, app.settings, now, author, None, "later", now + timedelta(hours=1)
        )
        at_once = await announcements.create_announcement(
            uow, app.settings, now, author, None, "<b>now</b>"
        )
        await uow.commit()
    assert later.send_at == now + timedelta(hours=1) and later.fan_out is None
    assert (at_once.fan_out.queued, at_once.fan_out.opted_out) == (2, 1)
    rows = await outbox(app, "announce")
    assert all("&lt;b&gt;now&lt;/b&gt;" in row.body["text"] for row in rows)
    async with app.uow() as uow:
        started = [
            await announcements.start_broadcast(uow, later.broadcast.id, app.settings, now)
            for _ in range(2)
        ]
        await uow.commit()
    assert started == [True, False]
    assert len(await outbox(app, "announce")) == 4
    async with app.uow() as uow:
        for row in await outbox(app, "announce"):
            await uow.claims.settle(row.id, "sent", now)
        assert await announcements.report_finished(uow, app.settings, now) == 2
        await uow.commit()
    reports = await outbox(app, "report")
    assert len(reports) == 2 and {r.learner_id for r in reports} == {author}
    assert "Sent: 2" in reports[0].body["text"]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_services_and_the_scheduler_never_import_handlers():
    files = sorted((ROOT / "scheduler").glob("*.py")) + sorted((ROOT / "services").glob("*.py"))
    wrong = {
        str(path.relative_to(ROOT)): name
        for path in files
        for name in _imports(path)
        if name == "handlers" or name.startswith("handlers.")
    }
    assert wrong == {}
