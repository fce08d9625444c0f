"""The courses a learner owns."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bot.core import Button, Reply, Router, call_with_deps, esc
from handlers.catalog import course_title
from services.catalog import owned_courses

router = Router()

MineSection = Callable[..., Awaitable[list[Reply]]]
AFTER_MY_COURSES: list[MineSection] = []


def after_my_courses(fn: MineSection) -> MineSection:
    """Register replies after /mycourses; fn names any of learner, uow, t, clock, msg,
    recommender, channels."""
    AFTER_MY_COURSES.append(fn)
    return fn


@router.command("mycourses", "我的课程", "mine")
async def my_courses(msg, learner, uow, t, clock, recommender, channels) -> list[Reply]:
    """List owned courses, each a button to its card."""
    courses = await owned_courses(uow, learner.id)
    if not courses:
        replies = [Reply(t("mine.none"), [[Button(t("start.catalog"), "cats")]])]
    else:
        lines = [t("mine.title")] + [f"#{c.id} {esc(course_title(c, t))}" for c in courses]
        rows = [[Button(course_title(c, t), f"course:{c.id}")] for c in courses]
        replies = [Reply("\n".join(lines), rows)]
    context = dict(
        learner=learner,
        uow=uow,
        t=t,
        clock=clock,
        msg=msg,
        recommender=recommender,
        channels=channels,
    )
    for section in AFTER_MY_COURSES:
        replies += await call_with_deps(section, context)
    return replies


@router.button("mine")
async def my_courses_button(msg, learner, uow, t, clock, recommender, channels) -> list[Reply]:
    """/mycourses from a button."""
    return await my_courses(msg, learner, uow, t, clock, recommender, channels)
