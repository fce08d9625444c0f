"""With PUBLIC_URL set, a buyer's session-start notice carries their own tracked link."""

from __future__ import annotations

import re

import aiohttp
from sqlalchemy import select

from services import live
from storage.models import OutboxMessage
from tests.handlers.test_analytics import a_session, links_server  # noqa: F401 - a fixture


async def start_notice(app, settings, learner_id: int, session_id: int) -> str:
    """The text of the start notice queued for one learner."""
    async with app.uow() as uow:
        session = await uow.sessions.get(session_id)
        course = await uow.courses.get(session.course_id)
        targets = {learner_id: "t"}
        now = app.clock.now()
        await live.enqueue_notices(uow, session, course, live.START, targets, settings, now, "k")
        await uow.commit()
        stmt = select(OutboxMessage.body).where(OutboxMessage.dedupe_key == "k:t")
        return (await uow.session.execute(stmt)).scalar_one()["text"]


async def test_the_start_notice_links_through_our_server_and_counts_attendance(
    app, clock, links_server  # noqa: F811 - the fixture imported above
):
    learner_id, session_id, _ = await a_session(app, clock)
    settings = app.settings.model_copy(update={"public_url": links_server})
    text = await start_notice(app, settings, learner_id, session_id)
    assert "live.example" not in text, "the raw live URL is not handed out"
    link = re.search(r"http://127\.0\.0\.1:\d+/go/[A-Za-z0-9_.\-]+", text).group(0)
    async with aiohttp.ClientSession() as http, http.get(link, allow_redirects=False) as resp:
        assert resp.status == 302
        assert resp.headers["Location"] == "https://live.example/room"
    async with app.uow() as uow:
        opened = await uow.attendance.of_session(session_id)
    assert [row.learner_id for row in opened] == [learner_id]


async def test_without_a_public_url_the_live_url_is_sent(app, clock):
    learner_id, session_id, _ = await a_session(app, clock)
    text = await start_notice(app, app.settings, learner_id, session_id)
    assert "https://live.example/room" in text
