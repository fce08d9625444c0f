"""Questions to instructors, their answers, and the FAQ that answers a question first.

Every function takes the unit of work and what it needs (settings, the current time) and returns
plain data; the chat side (`handlers/questions.py`) renders it. Messages for other people (a
forwarded question, an answer notice) go through the one outbox door in their own language.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bot import textindex
from bot.core import Button, Reply, esc
from bot.i18n import translator_for
from recommender.signals import Signal
from services import audit
from services.outbox import Outgoing, enqueue
from services.ratings import CourseRef, review_keywords

log = logging.getLogger(__name__)
LIST_LIMIT = 20
ANSWER_NOTICE_QUESTION_CHARS = 300


@dataclass(frozen=True)
class Refusal:
    """Why a question or an answer is not taken: empty, too_long or rate_limited."""

    reason: str
    count: int = 0
    limit: int = 0


@dataclass(frozen=True)
class FaqEntry:
    """A public answered question."""

    id: int
    question: str
    answer: str


@dataclass(frozen=True)
class Asked:
    """What became of a question: refused, answered from the FAQ, or sent to the instructor."""

    refusal: Refusal | None = None
    question_id: int | None = None
    faq: FaqEntry | None = None
    score: float = 0.0
    forwarded: int = 0

    @property
    def status(self) -> str:
        """`refused`, `faq` or `sent`."""
        if self.refusal is not None:
            return "refused"
        return "faq" if self.faq is not None else "sent"


@dataclass(frozen=True)
class Answered:
    """The outcome of an answer: `not_found`, `refused`, `empty`, `too_long` or `done`."""

    outcome: str
    question_id: int
    count: int = 0
    limit: int = 0


@dataclass(frozen=True)
class OpenQuestion:
    """One open question in an instructor's or admin's list."""

    id: int
    text: str
    asker: str
    course: CourseRef | None


@dataclass(frozen=True)
class OpenQuestions:
    """The open questions someone may answer, and review keywords of the courses they teach."""

    questions: list[OpenQuestion] = field(default_factory=list)
    keywords: list[tuple[CourseRef, list[str]]] = field(default_factory=list)


def _theirs(learner, settings):
    return translator_for(
        (learner.locale if learner else None) or settings.default_locale,
        settings,
        learner.timezone if learner else None,
    )


def clip(text: str, limit: int) -> str:
    """`text` cut to `limit` characters with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def check_question(uow, learner_id: int, text: str, settings, now: datetime):
    """A Refusal when the text is empty, over-long or over the hourly limit; else None."""
    if not text:
        return Refusal("empty")
    if len(text) > settings.question_max_chars:
        return Refusal("too_long", len(text), settings.question_max_chars)
    since = now - timedelta(hours=1)
    if await uow.questions.count_since(learner_id, since) >= settings.question_rate_per_hour:
        return Refusal("rate_limited", limit=settings.question_rate_per_hour)
    return None


async def owned_courses(uow, learner_id: int) -> list:
    """The courses a learner owns (a question is about one of them, or none)."""
    return await uow.enrolments.courses_of(learner_id)


async def faq_match(uow, text: str, course_id: int | None, threshold: float):
    """The course's FAQ entry (any course's when None) matching `text` with its score, or None.

    The FAQ index comes from the one text index and is rebuilt only when an entry changes.
    """
    entries = {q.id: q for q in await uow.questions.faq(course_id)}
    if not entries:
        return None
    await textindex.ready()
    index = textindex.cached_index({qid: q.text for qid, q in entries.items()})
    found = index.best(text, threshold)
    if found is None:
        return None
    entry = entries[found[0]]
    return FaqEntry(entry.id, entry.text, entry.answer), found[1]


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


async def forward_question(uow, question, course, asker, settings, now: datetime) -> int:
    """Queue the question for the instructor and admins (`#id`, course, name); returns count."""
    queued = 0
    for channel, user_ref, learner in await recipients(course, uow, settings):
        if learner is not None and learner.id == asker.id:
            continue
        theirs = _theirs(learner, settings)
        course_text = (
            theirs(
                "question.course",
                title=esc(theirs.pick(course.title_zh, course.title_en)),
                id=course.id,
            )
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
            now,
        )
    return queued


async def ask(uow, learner, text: str, course_id: int | None, settings, now: datetime) -> Asked:
    """Check a question, then answer it from the FAQ or forward it to the instructor and admins.

    A FAQ hit is stored with status `faq` (the learner may still ask, see `ask_after_faq`).
    """
    text = text.strip()
    refusal = await check_question(uow, learner.id, text, settings, now)
    if refusal is not None:
        return Asked(refusal=refusal)
    course = await uow.courses.get(course_id) if course_id else None
    course_id = course.id if course is not None else None
    hit = await faq_match(uow, text, course_id, settings.faq_match_threshold)
    if hit is not None:
        entry, score = hit
        question = await uow.questions.add(learner.id, course_id, text, "faq", now)
        await uow.interactions.add(learner.id, course_id, Signal.FAQ_HIT, score, when=now)
        return Asked(question_id=question.id, faq=entry, score=score)
    question = await uow.questions.add(learner.id, course_id, text, "open", now)
    await uow.interactions.add(learner.id, course_id, Signal.QUESTION, when=now)
    forwarded = await forward_question(uow, question, course, learner, settings, now)
    return Asked(question_id=question.id, forwarded=forwarded)


async def _own_faq_question(uow, learner_id: int, question_id: int):
    question = await uow.questions.get(question_id)
    if question is None or question.learner_id != learner_id or question.status != "faq":
        return None
    return question


async def resolve_by_faq(uow, learner_id: int, question_id: int, now: datetime) -> bool:
    """ "This helped": the learner's FAQ-answered question is resolved; False if not theirs."""
    question = await _own_faq_question(uow, learner_id, question_id)
    if question is None:
        return False
    question.status = "resolved"
    await uow.interactions.add(learner_id, question.course_id, Signal.FAQ_HELPFUL, 1, when=now)
    return True


async def ask_after_faq(uow, learner, question_id: int, settings, now: datetime) -> bool:
    """ "Still ask the instructor": forward a FAQ-answered question after all."""
    question = await _own_faq_question(uow, learner.id, question_id)
    if question is None:
        return False
    question.status = "open"
    course = await uow.courses.get(question.course_id) if question.course_id else None
    await uow.interactions.add(learner.id, question.course_id, Signal.QUESTION, when=now)
    await forward_question(uow, question, course, learner, settings, now)
    return True


async def may_answer(uow, question, learner_id: int, is_admin: bool) -> bool:
    """Admins answer anything; an instructor answers their own course's questions."""
    if is_admin:
        return True
    if question.course_id is None:
        return False
    course = await uow.courses.get(question.course_id)
    return course is not None and course.instructor_learner_id == learner_id


async def answerable(uow, question_id: int, learner_id: int, is_admin: bool) -> str:
    """`not_found`, `refused` or `ok`: may this learner answer that question?"""
    question = await uow.questions.get(question_id)
    if question is None:
        return "not_found"
    return "ok" if await may_answer(uow, question, learner_id, is_admin) else "refused"


async def answer(
    uow,
    question_id: int,
    text: str,
    learner,
    is_admin: bool,
    settings,
    now: datetime,
    actor=None,
) -> Answered:
    """Store an answer from an allowed answerer and queue it to the asker's channels."""
    question = await uow.questions.get(question_id)
    if question is None:
        return Answered("not_found", question_id)
    if not await may_answer(uow, question, learner.id, is_admin):
        log.warning("refused answer to question #%s by learner %s", question.id, learner.id)
        return Answered("refused", question.id)
    text = text.strip()
    if not text:
        return Answered("empty", question.id)
    if len(text) > settings.question_max_chars:
        return Answered("too_long", question.id, len(text), settings.question_max_chars)
    question.answer, question.answered_by, question.answered_at = text, learner.id, now
    question.status = "answered"
    await audit.note(uow, actor, "answer", f"question:{question.id}", now, chars=len(text))
    asker = await uow.learners.get(question.learner_id)
    theirs = _theirs(asker, settings)
    notice = theirs(
        "answer.notice",
        id=question.id,
        question=esc(clip(question.text, ANSWER_NOTICE_QUESTION_CHARS)),
        answer=esc(text),
    )
    messages = [
        Outgoing(
            identity.channel,
            identity.user_ref,
            Reply(notice),
            "answer",
            learner_id=question.learner_id,
        )
        for identity in await uow.learners.identities_of(question.learner_id)
        if identity.unreachable_at is None
    ]
    if messages:
        await enqueue(uow, messages, now)
    return Answered("done", question.id)


async def set_faq(
    uow, question_id: int, on: bool, learner_id: int, is_admin: bool, actor=None
) -> str:
    """Make an answered question public (or not): `not_found`, `refused`, `not_answered`,
    `added` or `removed`."""
    question = await uow.questions.get(question_id)
    if question is None:
        return "not_found"
    if not await may_answer(uow, question, learner_id, is_admin):
        return "refused"
    if not on:
        question.is_faq = False
        await audit.note(uow, actor, "faq.off", f"question:{question.id}")
        return "removed"
    if not question.answer:
        return "not_answered"
    question.is_faq = True
    await audit.note(uow, actor, "faq.on", f"question:{question.id}")
    return "added"


async def open_questions(
    uow, learner_id: int, is_admin: bool, limit: int = LIST_LIMIT
) -> OpenQuestions | None:
    """Open questions for instructors (their courses) and admins (all), plus review keywords.

    None when the learner is neither an instructor nor an admin.
    """
    taught = await uow.questions.courses_taught_by(learner_id)
    if not taught and not is_admin:
        return None
    course_ids = None if is_admin else [c.id for c in taught]
    rows = await uow.questions.open_questions(course_ids, limit)
    courses: dict[int, CourseRef] = {}
    listed = []
    for question, name in rows:
        if question.course_id and question.course_id not in courses:
            course = await uow.courses.get(question.course_id)
            courses[question.course_id] = (
                CourseRef.of(course) if course else CourseRef(question.course_id, "?", "?")
            )
        course = courses.get(question.course_id) if question.course_id else None
        listed.append(OpenQuestion(question.id, question.text, name, course))
    keywords = []
    for course in taught:
        words = await review_keywords(uow, course.id)
        if words:
            keywords.append((CourseRef.of(course), words))
    return OpenQuestions(listed, keywords)
