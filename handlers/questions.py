"""Questions to instructors, answers through the outbox, and a FAQ that answers itself."""

from __future__ import annotations

import logging
import re
from datetime import timedelta

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
from bot.i18n import translator_for
from bot.textindex import SimilarityIndex
from handlers.catalog import card_buttons, course_title
from services.outbox import Outgoing, enqueue

log = logging.getLogger(__name__)
router = Router()
LIST_LIMIT = 20
LIST_TEXT_CHARS = 120
KEYWORDS = 8
DRAFT_KEY = "askdraft:{learner_id}"
# A forwarded question starts with "❓ 问题 #12" / "❓ Question #12" ("question.forward");
# replies are matched on that start only, so a reply to "已回答问题 #12" is plain text.
FORWARD_ID = re.compile(r"❓ (?:问题|Question) #(\d+)\b")


def _theirs(learner, settings):
    return translator_for(
        (learner.locale if learner else None) or settings.default_locale,
        settings,
        learner.timezone if learner else None,
    )


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def may_answer(question, learner, msg: Incoming, uow, settings) -> bool:
    """Admins answer anything; an instructor answers their own course's questions."""
    if settings.is_admin(msg.channel, msg.user_ref):
        return True
    if question.course_id is None:
        return False
    course = await uow.courses.get(question.course_id)
    return course is not None and course.instructor_learner_id == learner.id


async def recipients(course, uow, settings) -> list[tuple[str, str, object]]:
    """Where a question goes: the instructor's reachable identities, then the admins."""
    seen: dict[tuple[str, str], object] = {}
    if course is not None and course.instructor_learner_id:
        instructor = await uow.learners.get(course.instructor_learner_id)
        for identity in await uow.learners.identities_of(course.instructor_learner_id):
            if identity.unreachable_at is None:
                seen[(identity.channel, identity.user_ref)] = instructor
    for entry in sorted(settings.admins):
        channel, _, user_ref = entry.partition(":")
        if not user_ref or (channel, user_ref) in seen:
            continue
        identity = await uow.learners.identity(channel, user_ref)
        if identity is not None and identity.unreachable_at is not None:
            continue
        seen[(channel, user_ref)] = identity.learner if identity else None
    return [(channel, ref, learner) for (channel, ref), learner in seen.items()]


async def forward_question(question, course, asker, uow, settings, clock) -> int:
    """Queue the question for the instructor and admins (`#id`, course, name); returns count."""
    queued = 0
    for channel, user_ref, learner in await recipients(course, uow, settings):
        if learner is not None and learner.id == asker.id:
            continue
        theirs = _theirs(learner, settings)
        course_text = (
            theirs("question.course", title=esc(course_title(course, theirs)), id=course.id)
            if course is not None
            else theirs("question.no_course")
        )
        text = theirs(
            "question.forward",
            id=question.id,
            course=course_text,
            name=esc(asker.display_name or "?"),
            text=esc(question.text),
        )
        button = Button(theirs("question.answer_button", id=question.id), f"qans:{question.id}")
        queued += await enqueue(
            uow,
            Outgoing(
                channel,
                user_ref,
                Reply(text, [[button]]),
                "question",
                learner_id=learner.id if learner is not None else None,
                dedupe_key=f"question:{question.id}:{channel}:{user_ref}",
            ),
            clock.now(),
        )
    return queued


async def check_question(text: str, learner, uow, t, settings, clock) -> Reply | None:
    """A refusal when the text is empty, over-long or over the hourly limit; else None."""
    if not text:
        return Reply(t("ask.usage"))
    if len(text) > settings.question_max_chars:
        return Reply(t("ask.too_long", count=len(text), limit=settings.question_max_chars))
    since = clock.now() - timedelta(hours=1)
    if await uow.questions.count_since(learner.id, since) >= settings.question_rate_per_hour:
        return Reply(t("ask.rate_limited", limit=settings.question_rate_per_hour))
    return None


async def faq_match(text: str, course_id: int | None, uow, settings):
    """The course's FAQ entry (any course's when None) confidently matching `text`, or None."""
    entries = {q.id: q for q in await uow.questions.faq(course_id)}
    if not entries:
        return None
    index = SimilarityIndex({qid: q.text for qid, q in entries.items()})
    found = index.best(text, settings.faq_match_threshold)
    return (entries[found[0]], found[1]) if found else None


async def submit_question(
    text: str, course_id: int | None, uow, learner, t, settings, clock
) -> Reply:
    """Check, then answer from the FAQ or forward to the instructor and admins."""
    text = text.strip()
    refusal = await check_question(text, learner, uow, t, settings, clock)
    if refusal is not None:
        return refusal
    course = await uow.courses.get(course_id) if course_id else None
    course_id = course.id if course is not None else None
    now = clock.now()
    hit = await faq_match(text, course_id, uow, settings)
    if hit is not None:
        entry, score = hit
        question = await uow.questions.add(learner.id, course_id, text, "faq", now)
        await uow.interactions.add(learner.id, course_id, "faq_hit", score, when=now)
        reply = t("faq.hit", faq_id=entry.id, question=esc(entry.text), answer=esc(entry.answer))
        buttons = [
            [Button(t("faq.helped"), f"qok:{question.id}")],
            [Button(t("faq.still_ask"), f"qsend:{question.id}")],
        ]
        return Reply(reply, buttons)
    question = await uow.questions.add(learner.id, course_id, text, "open", now)
    await uow.interactions.add(learner.id, course_id, "question", when=now)
    await forward_question(question, course, learner, uow, settings, clock)
    return Reply(t("ask.sent", id=question.id))


@router.command("ask", "提问")
async def ask(msg: Incoming, uow, learner, t, settings, clock) -> Reply:
    """`/ask <question>` (optionally `/ask #<course_id> <question>`)."""
    text = msg.args.strip()
    head, _, rest = text.partition(" ")
    if head.startswith("#") and head[1:].isdigit():
        course = await uow.courses.get(int(head[1:]))
        if course is not None:
            return await submit_question(rest, course.id, uow, learner, t, settings, clock)
    refusal = await check_question(text, learner, uow, t, settings, clock)
    if refusal is not None:
        return refusal
    owned = await uow.enrolments.courses_of(learner.id)
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
    arg = msg.payload.partition(":")[2]
    draft = await uow.kv.pop(DRAFT_KEY.format(learner_id=learner.id))
    if not arg.isdigit():
        return Reply(t("error.stale_button"))
    if not draft:
        return Reply(t("ask.draft_gone"))
    return await submit_question(draft["text"], int(arg) or None, uow, learner, t, settings, clock)


@router.button("askc")
async def ask_from_card(msg: Incoming, uow, learner, t, settings) -> Reply:
    """ "Ask the instructor" on a card: the next plain text is the question."""
    arg = msg.payload.partition(":")[2]
    course = await uow.courses.get(int(arg)) if arg.isdigit() else None
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


async def _own_faq_question(msg: Incoming, uow, learner):
    arg = msg.payload.partition(":")[2]
    question = await uow.questions.get(int(arg)) if arg.isdigit() else None
    if question is None or question.learner_id != learner.id or question.status != "faq":
        return None
    return question


@router.button("qok")
async def faq_helped(msg: Incoming, uow, learner, t, clock) -> Reply:
    """ "This helped": the question is resolved by the FAQ and never reaches the instructor."""
    question = await _own_faq_question(msg, uow, learner)
    if question is None:
        return Reply(t("error.stale_button"))
    question.status = "resolved"
    await uow.interactions.add(learner.id, question.course_id, "faq_helpful", 1, when=clock.now())
    return Reply(t("faq.glad"))


@router.button("qsend")
async def faq_still_ask(msg: Incoming, uow, learner, t, settings, clock) -> Reply:
    """ "Still ask the instructor": forward the question after all."""
    question = await _own_faq_question(msg, uow, learner)
    if question is None:
        return Reply(t("error.stale_button"))
    question.status = "open"
    course = await uow.courses.get(question.course_id) if question.course_id else None
    await uow.interactions.add(learner.id, question.course_id, "question")
    await forward_question(question, course, learner, uow, settings, clock)
    return Reply(t("ask.sent", id=question.id))


async def record_answer(
    question_id: int, text: str, msg: Incoming, uow, learner, t, settings, clock
) -> Reply:
    """Store an answer from an allowed answerer and queue it to the learner's channels."""
    question = await uow.questions.get(question_id)
    if question is None:
        return Reply(t("answer.not_found", id=question_id))
    if not await may_answer(question, learner, msg, uow, settings):
        log.warning("refused answer to question #%s by learner %s", question.id, learner.id)
        return Reply(t("answer.refused", id=question.id))
    text = text.strip()
    if not text:
        return Reply(t("answer.usage"))
    if len(text) > settings.question_max_chars:
        return Reply(t("answer.too_long", count=len(text), limit=settings.question_max_chars))
    now = clock.now()
    question.answer, question.answered_by, question.answered_at = text, learner.id, now
    question.status = "answered"
    asker = await uow.learners.get(question.learner_id)
    theirs = _theirs(asker, settings)
    notice = theirs(
        "answer.notice",
        id=question.id,
        question=esc(_clip(question.text, 300)),
        answer=esc(text),
    )
    for identity in await uow.learners.identities_of(question.learner_id):
        if identity.unreachable_at is None:
            await enqueue(
                uow,
                Outgoing(
                    identity.channel,
                    identity.user_ref,
                    Reply(notice),
                    "answer",
                    learner_id=question.learner_id,
                ),
                now,
            )
    return Reply(t("answer.done", id=question.id))


@router.command("answer", "回答")
async def answer(msg: Incoming, uow, learner, t, settings, clock) -> Reply:
    """`/answer <question_id> <text>` by the course's instructor or an admin."""
    head, _, text = msg.args.strip().partition(" ")
    head = head.lstrip("#")
    if not head.isdigit() or not text.strip():
        return Reply(t("answer.usage"))
    return await record_answer(int(head), text, msg, uow, learner, t, settings, clock)


@router.button("qans")
async def answer_button(msg: Incoming, uow, learner, t, settings) -> Reply:
    """ "Answer #id" under a forwarded question: the next plain text is the answer."""
    arg = msg.payload.partition(":")[2]
    question = await uow.questions.get(int(arg)) if arg.isdigit() else None
    if question is None:
        return Reply(t("error.stale_button"))
    if not await may_answer(question, learner, msg, uow, settings):
        return Reply(t("answer.refused", id=question.id))
    await expect_text(uow, learner.id, "answer", question_id=question.id)
    return Reply(t("answer.prompt", id=question.id))


@router.step("answer")
async def answer_step(msg: Incoming, uow, learner, t, settings, clock, step) -> Reply:
    """The answer typed after "Answer #id"."""
    return await record_answer(
        int(step["question_id"]), msg.text, msg, uow, learner, t, settings, clock
    )


def replied_question_id(msg: Incoming) -> int | None:
    """The question id of the forwarded message this text replies to, if any."""
    found = FORWARD_ID.match(msg.reply_to_text or "")
    return int(found.group(1)) if found else None


def wrap_router(router: Router) -> None:
    """After all routes merged: a text replying to a forwarded question is its answer."""
    fallback = router.kinds.get("text")

    async def text_or_reply(msg: Incoming, uow, learner, t, step, app) -> object:
        question_id = replied_question_id(msg)
        deps = {**app.deps, "msg": msg, "uow": uow, "learner": learner, "t": t, "step": step}
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
    is_admin = settings.is_admin(msg.channel, msg.user_ref)
    taught = await uow.questions.courses_taught_by(learner.id)
    if not taught and not is_admin:
        return Reply(t("questions.not_instructor"))
    course_ids = None if is_admin else [c.id for c in taught]
    rows = await uow.questions.open_questions(course_ids, LIST_LIMIT)
    lines = [t("questions.head")] if rows else [t("questions.none")]
    titles: dict[int, str] = {}
    for question, name in rows:
        if question.course_id and question.course_id not in titles:
            course = await uow.courses.get(question.course_id)
            titles[question.course_id] = course_title(course, t) if course else "?"
        where = (
            t("question.course", title=esc(titles[question.course_id]), id=question.course_id)
            if question.course_id
            else "—"
        )
        text = esc(_clip(question.text, LIST_TEXT_CHARS))
        lines.append(f"#{question.id} · {where} · {esc(name or '?')}\n{text}")
    lines += await keyword_lines(taught, uow, t)
    return Reply("\n\n".join(lines))


def review_keywords(texts: list[str], top: int = KEYWORDS) -> list[str]:
    """The top keywords of some reviews (jieba TF-IDF extract_tags)."""
    import jieba.analyse

    words = jieba.analyse.extract_tags("\n".join(texts), topK=top * 2)
    return [w for w in words if len(w.strip()) > 1 and not w.isdigit()][:top]


async def keyword_lines(courses, uow, t) -> list[str]:
    """One line of review keywords per course that has reviews."""
    lines = []
    for course in courses:
        texts = await uow.ratings.review_texts([course.id])
        words = review_keywords(texts) if texts else []
        if words:
            lines.append(
                t(
                    "questions.keywords",
                    title=esc(course_title(course, t)),
                    words=esc("、".join(words)),
                )
            )
    return lines


@router.command("faq", "常见问题")
async def faq(msg: Incoming, uow, learner, t, settings) -> Reply:
    """`/faq <question_id>` makes an answered question public; `/faq <id> off` undoes it."""
    head, _, flag = msg.args.strip().partition(" ")
    head = head.lstrip("#")
    if not head.isdigit():
        return Reply(t("faq.usage"))
    question = await uow.questions.get(int(head))
    if question is None:
        return Reply(t("answer.not_found", id=head))
    if not await may_answer(question, learner, msg, uow, settings):
        return Reply(t("answer.refused", id=question.id))
    if flag.strip().lower() in ("off", "取消", "no"):
        question.is_faq = False
        return Reply(t("faq.removed", id=question.id))
    if not question.answer:
        return Reply(t("faq.not_answered", id=question.id))
    question.is_faq = True
    return Reply(t("faq.done", id=question.id))


@router.command("instructor", "讲师", admin=True)
async def set_instructor(msg: Incoming, uow, t) -> Reply:
    """`/instructor <course_id> <channel:user>`: who receives a course's questions."""
    head, _, who = msg.args.strip().partition(" ")
    channel, _, user_ref = who.strip().partition(":")
    head = head.lstrip("#")
    course = await uow.courses.get(int(head)) if head.isdigit() else None
    identity = await uow.learners.identity(channel, user_ref) if user_ref else None
    if course is None or identity is None:
        return Reply(t("instructor.usage"))
    course.instructor_learner_id = identity.learner_id
    name = identity.learner.display_name or f"#{identity.learner_id}"
    return Reply(t("instructor.done", name=esc(name), id=course.id))
