"""The guided `/addcourse`: one question per message (category, both titles, both prices,
instructor, description), each answer checked as the one-line form checks it; a wrong answer
is asked again. `/addcourse` without arguments starts it; the one-line form stays for scripts.
Any `/command` ends it (the dispatcher drops a pending step on every command)."""

from __future__ import annotations

from bot.core import Incoming, Reply, Router, esc, expect_text
from bot.parsing import MAX_STARS
from handlers.catalog import course_title
from services import admin as service
from services import audit

router = Router()
STEP = "addcourse"
FIELDS = service.NEW_COURSE_FIELDS
#: Answers that leave the description empty.
NO_DESCRIPTION = ("-", "—", "skip", "none", "跳过", "无")


async def question(uow, t, n: int) -> str:
    """The question of step `n` (from 0), numbered `n+1/7`."""
    slugs = esc(", ".join(await service.category_slugs(uow)) or "-")
    text = t(f"addcourse.ask.{FIELDS[n]}", slugs=slugs)
    return t("addcourse.step", n=n + 1, total=len(FIELDS), question=text)


async def start(uow, learner, t) -> Reply:
    """Begin the guided form: the first question."""
    await expect_text(uow, learner.id, STEP, answers={})
    return Reply(t("addcourse.guided") + "\n\n" + await question(uow, t, 0))


def hint_text(hint: str, t, slugs: str, limit: int = 0) -> str:
    """What a field's value must look like (the one-line and the guided form say the same)."""
    if hint == "category":
        return t("hint.category", slugs=slugs)
    if hint == "too_long":
        return t("hint.too_long", limit=limit or service.MAX_TEXT_FIELD)
    if hint == "stars":
        return t("hint.stars", max=MAX_STARS)
    return t(f"hint.{hint}")


def _problem(check: service.FieldCheck, name: str, t, slugs: str) -> str:
    hint = hint_text(check.hint, t, slugs, check.limit)
    return t("addcourse.bad_answer", field=t(f"field.{name}"), hint=hint)


@router.step(STEP)
async def answer(msg: Incoming, uow, learner, t, settings, clock, step) -> Reply:
    """One answer: checked, stored with the others, then the next question or the course."""
    actor = await audit.actor_of(uow, settings, msg.channel, msg.user_ref, learner.id)
    if not actor.is_staff:  # the role was taken away in the middle
        return Reply(t("admin.refused"))
    answers = dict(step.get("answers") or {})
    n = len(answers)
    if n >= len(FIELDS):
        return Reply(t("error.generic"))
    name, text = FIELDS[n], msg.text.strip()
    if name == "description" and text.lower() in NO_DESCRIPTION:
        text = ""
    check = await service.check_field(uow, name, text)
    if check.hint:
        await expect_text(uow, learner.id, STEP, answers=answers)
        slugs = esc(", ".join(await service.category_slugs(uow)) or "-")
        return Reply(_problem(check, name, t, slugs) + "\n\n" + await question(uow, t, n))
    answers[name] = check.value
    if len(answers) < len(FIELDS):
        await expect_text(uow, learner.id, STEP, answers=answers)
        return Reply(await question(uow, t, n + 1))
    course = await service.add_course(uow, service.new_course(answers), actor, clock.now())
    if course is None:  # the category was removed meanwhile
        return Reply(t("error.generic"))
    return Reply(t("addcourse.done", id=course.id, title=esc(course_title(course, t))))
