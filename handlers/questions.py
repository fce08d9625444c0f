"""Questions to instructors, answers through the outbox, and a FAQ that answers itself.

The chat side only: parse the command or button, call `services.questions`, render the result.
"""

from __future__ import annotations

import re

from bot.core import (
    Button,
    Incoming,
    Reply,
    Route,
    Router,
    call_with_deps,
    esc,
    expect_text,
)
from bot.parsing import parse_id, parse_int, payload_id, split_id
from handlers.catalog import card_buttons, course_title
from services import audit
from services import questions as service
from services.questions import clip as _clip

router = Router()
LIST_TEXT_CHARS = 120
DRAFT_KEY = "askdraft:{learner_id}"
# A forwarded question starts with "❓ 问题 #12" / "❓ Question #12" ("question.forward");
# replies are matched on that start only, so a reply to "已回答问题 #12" is plain text.
FORWARD_ID = re.compile(r"❓ (?:问题|Question) #([0-9]+)\b")


def _is_admin(msg: Incoming, settings) -> bool:
    return settings.is_admin(msg.channel, msg.user_ref)


def _refusal(refusal: service.Refusal, t) -> Reply:
    if refusal.reason == "empty":
        return Reply(t("ask.usage"))
    if refusal.reason == "too_long":
        return Reply(t("ask.too_long", count=refusal.count, limit=refusal.limit))
    return Reply(t("ask.rate_limited", limit=refusal.limit))


async def submit_question(
    text: str, course_id: int | None, uow, learner, t, settings, clock
) -> Reply:
    """Check, then answer from the FAQ or forward to the instructor and admins."""
    asked = await service.ask(uow, learner, text, course_id, settings, clock.now())
    if asked.refusal is not None:
        return _refusal(asked.refusal, t)
    if asked.faq is not None:
        entry = asked.faq
        reply = t(
            "faq.hit", faq_id=entry.id, question=esc(entry.question), answer=esc(entry.answer)
        )
        buttons = [
            [Button(t("faq.helped"), f"qok:{asked.question_id}")],
            [Button(t("faq.still_ask"), f"qsend:{asked.question_id}")],
        ]
        return Reply(reply, buttons)
    return Reply(t("ask.sent", id=asked.question_id))


@router.command("ask", "提问")
async def ask(msg: Incoming, uow, learner, t, settings, clock) -> Reply:
    """`/ask <question>` (optionally `/ask #<course_id> <question>`)."""
    text = msg.args.strip()
    head, _, rest = text.partition(" ")
    course_id = parse_id(head) if head.startswith("#") else None
    if course_id is not None:
        course = await uow.courses.get(course_id)
        if course is not None:
            return await submit_question(rest, course.id, uow, learner, t, settings, clock)
    refusal = await service.check_question(uow, learner.id, text, settings, clock.now())
    if refusal is not None:
        return _refusal(refusal, t)
    owned = await service.owned_courses(uow, learner.id)
    if len(owned) <= 1:
        course_id = owned[0].id if owned else None
        return await submit_question(text, course_id, uow, learner, t, settings, clock)
    await uow.kv.put(DRAFT_KEY.format(learner_id=learner.id), {"text": text})
    rows = [[Button(course_title(c, t), f"askin:{c.id}")] for c in owned]
    rows.append([Button(t("ask.general"), "askin:0")])
    return Reply(t("ask.pick"), rows)


@router.button("askin")
async def ask_in_course(msg: Incoming, uow, learner, t, settings, clock) -> Reply:
    """`askin:<course_id>`: send the drafted question about that course (0: none)."""
    course_id = parse_int(msg.payload.partition(":")[2])  # 0: not about a course
    draft = await uow.kv.pop(DRAFT_KEY.format(learner_id=learner.id))
    if course_id is None:
        return Reply(t("error.stale_button"))
    if not draft:
        return Reply(t("ask.draft_gone"))
    text = draft["text"]
    return await submit_question(text, course_id or None, uow, learner, t, settings, clock)


@router.button("askc")
async def ask_from_card(msg: Incoming, uow, learner, t, settings) -> Reply:
    """ "Ask the instructor" on a card: the next plain text is the question."""
    course_id = payload_id(msg.payload)
    course = await uow.courses.get(course_id) if course_id else None
    if course is None:
        return Reply(t("card.not_found"))
    await expect_text(uow, learner.id, "ask", course_id=course.id)
    title = esc(course_title(course, t))
    return Reply(t("ask.prompt", title=title, limit=settings.question_max_chars))


@router.step("ask")
async def ask_step(msg: Incoming, uow, learner, t, settings, clock, step) -> Reply:
    """The question typed after "Ask the instructor"; an over-long one may be sent again."""
    reply = await submit_question(
        msg.text, int(step["course_id"]), uow, learner, t, settings, clock
    )
    if len(msg.text.strip()) > settings.question_max_chars:
        await expect_text(uow, learner.id, "ask", course_id=int(step["course_id"]))
    return reply


@card_buttons
async def ask_card_button(course, learner, owned, uow, t) -> list[Button]:
    """Every card gets "Ask the instructor"."""
    return [Button(t("ask.button"), f"askc:{course.id}")]


def _question_id(msg: Incoming) -> int | None:
    return payload_id(msg.payload)


@router.button("qok")
async def faq_helped(msg: Incoming, uow, learner, t, clock) -> Reply:
    """ "This helped": the question is resolved by the FAQ and never reaches the instructor."""
    question_id = _question_id(msg)
    if question_id is None or not await service.resolve_by_faq(
        uow, learner.id, question_id, clock.now()
    ):
        return Reply(t("error.stale_button"))
    return Reply(t("faq.glad"))


@router.button("qsend")
async def faq_still_ask(msg: Incoming, uow, learner, t, settings, clock) -> Reply:
    """ "Still ask the instructor": forward the question after all."""
    question_id = _question_id(msg)
    if question_id is None or not await service.ask_after_faq(
        uow, learner, question_id, settings, clock.now()
    ):
        return Reply(t("error.stale_button"))
    return Reply(t("ask.sent", id=question_id))


async def record_answer(
    question_id: int, text: str, msg: Incoming, uow, learner, t, settings, clock
) -> Reply:
    """Store an answer from an allowed answerer and queue it to the learner's channels."""
    actor = await audit.actor_of(uow, settings, msg.channel, msg.user_ref, learner.id)
    done = await service.answer(
        uow, question_id, text, learner, _is_admin(msg, settings), settings, clock.now(), actor
    )
    if done.outcome == "not_found":
        return Reply(t("answer.not_found", id=question_id))
    if done.outcome == "refused":
        return Reply(t("answer.refused", id=done.question_id))
    if done.outcome == "empty":
        return Reply(t("answer.usage"))
    if done.outcome == "too_long":
        return Reply(t("answer.too_long", count=done.count, limit=done.limit))
    return Reply(t("answer.done", id=done.question_id))


@router.command("answer", "回答")
async def answer(msg: Incoming, uow, learner, t, settings, clock) -> Reply:
    """`/answer <question_id> <text>` by the course's instructor or an admin."""
    question_id, text = split_id(msg.args)
    if question_id is None or not text:
        return Reply(t("answer.usage"))
    return await record_answer(question_id, text, msg, uow, learner, t, settings, clock)


@router.button("qans")
async def answer_button(msg: Incoming, uow, learner, t, settings) -> Reply:
    """ "Answer #id" under a forwarded question: the next plain text is the answer."""
    question_id = _question_id(msg)
    allowed = (
        await service.answerable(uow, question_id, learner.id, _is_admin(msg, settings))
        if question_id is not None
        else "not_found"
    )
    if allowed == "not_found":
        return Reply(t("error.stale_button"))
    if allowed == "refused":
        return Reply(t("answer.refused", id=question_id))
    await expect_text(uow, learner.id, "answer", question_id=question_id)
    return Reply(t("answer.prompt", id=question_id))


@router.step("answer")
async def answer_step(msg: Incoming, uow, learner, t, settings, clock, step) -> Reply:
    """The answer typed after "Answer #id"."""
    return await record_answer(
        int(step["question_id"]), msg.text, msg, uow, learner, t, settings, clock
    )


def replied_question_id(msg: Incoming) -> int | None:
    """The question id of the forwarded message this text replies to, if any."""
    found = FORWARD_ID.match(msg.reply_to_text or "")
    return parse_id(found.group(1)) if found else None


def wrap_router(router: Router) -> None:
    """After all routes merged: a text replying to a forwarded question is its answer."""
    fallback = router.kinds.get("text")

    async def text_or_reply(msg: Incoming, uow, learner, t, deps) -> object:
        question_id = replied_question_id(msg)
        if question_id is not None:
            return await record_answer(
                question_id, msg.text, msg, uow, learner, t, deps["settings"], deps["clock"]
            )
        if fallback is None:
            return None
        return await call_with_deps(fallback.handler, deps)

    router.kinds["text"] = Route(text_or_reply)


@router.command("questions", "问题列表")
async def questions(msg: Incoming, uow, learner, t, settings) -> Reply:
    """Open questions for instructors (their courses) and admins (all), plus review keywords."""
    found = await service.open_questions(uow, learner.id, _is_admin(msg, settings))
    if found is None:
        return Reply(t("questions.not_instructor"))
    lines = [t("questions.head")] if found.questions else [t("questions.none")]
    for question in found.questions:
        where = (
            t(
                "question.course",
                title=esc(course_title(question.course, t)),
                id=question.course.id,
            )
            if question.course is not None
            else "—"
        )
        text = esc(_clip(question.text, LIST_TEXT_CHARS))
        lines.append(f"#{question.id} · {where} · {esc(question.asker or '?')}\n{text}")
    for course, words in found.keywords:
        title = esc(course_title(course, t))
        lines.append(t("questions.keywords", title=title, words=esc("、".join(words))))
    return Reply("\n\n".join(lines))


@router.command("faq", "常见问题")
async def faq(msg: Incoming, uow, learner, t, settings) -> Reply:
    """`/faq <question_id>` makes an answered question public; `/faq <id> off` undoes it."""
    question_id, flag = split_id(msg.args)
    if question_id is None:
        return Reply(t("faq.usage"))
    on = flag.lower() not in ("off", "取消", "no")
    actor = await audit.actor_of(uow, settings, msg.channel, msg.user_ref, learner.id)
    admin = _is_admin(msg, settings)
    outcome = await service.set_faq(uow, question_id, on, learner.id, admin, actor)
    key = {
        "not_found": "answer.not_found",
        "refused": "answer.refused",
        "removed": "faq.removed",
        "not_answered": "faq.not_answered",
    }.get(outcome, "faq.done")
    return Reply(t(key, id=question_id))
