"""Questions to instructors, answers through the outbox, FAQ auto-answers and their limits."""

from __future__ import annotations

import json
import time
from pathlib import Path

from sqlalchemy import select

from bot.textindex import TextIndex
from storage.models import Interaction, Question
from tests.conftest import ADMIN_TG, make_settings
from tests.fakes.telegram_api import has
from tests.handlers.support import (
    Chat,
    deliver_outbox,
    enrol,
    learner_for,
    payloads,
    pending,
    set_instructor,
    shown,
)

PAIRS = json.loads((Path(__file__).parents[1] / "data" / "faq_pairs.json").read_text("utf-8"))


async def questions(app) -> list[Question]:
    """Every question row."""
    async with app.uow() as uow:
        stmt = select(Question).order_by(Question.id)
        return list((await uow.session.execute(stmt)).scalars())


async def interaction_kinds(app) -> list[str]:
    """Kinds of every interaction except card views, oldest first."""
    async with app.uow() as uow:
        stmt = select(Interaction.kind).where(Interaction.kind != "view").order_by(Interaction.id)
        return list((await uow.session.execute(stmt)).scalars())


def match_all(threshold: float) -> tuple[float, float, list]:
    """Precision, recall and the mistakes of FAQ matching over the labelled pairs."""
    index = TextIndex({e["id"]: e["question"] for e in PAIRS["faq"]})
    true_pos = predicted = positives = 0
    mistakes = []
    for pair in PAIRS["pairs"]:
        wanted = pair["faq"] if isinstance(pair["faq"], list) else [pair["faq"]]
        found = index.best(pair["query"], threshold)
        positives += pair["faq"] is not None
        predicted += found is not None
        if found is not None and found[0] in wanted:
            true_pos += 1
        elif found is not None or pair["faq"] is not None:
            mistakes.append((pair["query"], pair["faq"], found))
    return true_pos / max(predicted, 1), true_pos / max(positives, 1), mistakes


def test_faq_pairs_precision_and_recall():
    """On ≥ 40 labelled zh/en/mixed pairs at the default threshold: P ≥ 0.9 and R ≥ 0.85."""
    assert len(PAIRS["pairs"]) >= 40
    assert {p["lang"] for p in PAIRS["pairs"]} == {"zh", "en", "mixed"}
    threshold = make_settings("sqlite+aiosqlite://").faq_match_threshold
    precision, recall, mistakes = match_all(threshold)
    assert precision >= 0.9, mistakes
    assert recall >= 0.85, mistakes


def test_chinese_paraphrase_matches_and_unrelated_does_not():
    """A Chinese paraphrase finds its FAQ entry; an unrelated question finds nothing."""
    index = TextIndex({e["id"]: e["question"] for e in PAIRS["faq"]})
    threshold = make_settings("sqlite+aiosqlite://").faq_match_threshold
    assert index.best("错过了直播还能看录播回放吗？", threshold)[0] == 1
    assert index.best("完全没有基础可以学习吗", threshold)[0] == 5
    assert index.best("老师可以推荐几本书吗", threshold) is None
    assert index.best("What is the difference between a list and a tuple?", threshold) is None


def test_matching_one_question_against_1000_faq_is_fast():
    """One question against a 1,000-entry FAQ takes well under 50 ms."""
    base = [e["question"] for e in PAIRS["faq"]]
    index = TextIndex({n: f"{base[n % len(base)]} 第{n}讲 topic{n}" for n in range(1000)})
    started = time.perf_counter()
    index.best("没赶上直播，能看回放吗", 0.25)
    assert time.perf_counter() - started < 0.05


async def test_question_round_trip_through_telegram(telegram_app, tg):
    """/ask → instructor and admin get #id → /answer and a reply-to answer reach the learner."""
    app = telegram_app
    teacher = tg.user(4001, first_name="Wang", language_code="en")
    learner = tg.user(4002, first_name="Li <3", language_code="en")
    admin = tg.user(ADMIN_TG, first_name="Boss", language_code="en")
    for user in (teacher, learner, admin):
        await user.send("/start")
        await user.wait_for_message(has("Hi"))
    await admin.send("/instructor 1 telegram:4001")
    await admin.wait_for_message(has("Wang now teaches course #1"))
    await enrol(app, "telegram", "4002", 1)

    await learner.send("/ask Can I watch on my phone? <b>&")
    await learner.wait_for_message(has("Your question #1 went to the instructor"))
    assert await deliver_outbox(app) == 2
    forwarded = await teacher.wait_for_message(has("Question #1"))
    assert "Python for Beginners" in forwarded["text"] and "Li <3" in forwarded["text"]
    assert "Can I watch on my phone? <b>&" in forwarded["text"]
    assert "4002" not in forwarded["text"]
    await admin.wait_for_message(has("Question #1"))

    await teacher.send("/answer 1 Yes, the <i>app</i> works")
    await teacher.wait_for_message(has("Answered question #1"))
    assert await deliver_outbox(app) == 1
    notice = await learner.wait_for_message(has("Your question #1 was answered"))
    assert "Yes, the <i>app</i> works" in notice["text"]

    await learner.send("/ask Is there homework every week?")
    await learner.wait_for_message(has("#2 went to the instructor"))
    await deliver_outbox(app)
    forwarded = await teacher.wait_for_message(has("Question #2"))
    await teacher.send("Yes, one small exercise.", reply_to=forwarded)
    await teacher.wait_for_message(has("Answered question #2"))
    await deliver_outbox(app)
    await learner.wait_for_message(has("one small exercise"))
    assert not tg.errors, tg.errors
    assert [q.status for q in await questions(app)] == ["answered", "answered"]


async def test_faq_hit_answers_at_once_and_still_ask_forwards(app):
    """A FAQ hit is answered at once without the instructor; "Still ask" reaches them."""
    teacher_id = await learner_for(app, "console", "teacher", "Wang")
    await set_instructor(app, 1, teacher_id)
    await enrol(app, "console", "a", 1, name="A")
    await enrol(app, "console", "b", 1, name="B")
    a, b, teacher = Chat(app, "a", "A"), Chat(app, "b", "B"), Chat(app, "teacher", "Wang")
    await a.send("/ask 直播结束后有回放吗？")
    await teacher.send("/answer 1 有，直播结束后 2 小时内上传回放。")
    assert "is now a FAQ" in (await teacher.send("/faq 1")).text
    before = len(await pending(app))

    hit = await b.send("/ask 错过了直播还能看录播回放吗？")
    assert "FAQ #1" in hit.text and "2 小时内上传回放" in hit.text
    assert payloads(hit) == ["qok:2", "qsend:2"]
    assert len(await pending(app)) == before
    assert "Glad it helped" in (await b.press("qok:2")).text
    assert "no longer valid" in (await b.press("qsend:2")).text
    assert len(await pending(app)) == before

    hit = await b.send("/ask 没赶上直播，能看回放吗")
    assert payloads(hit) == ["qok:3", "qsend:3"]
    assert "no longer valid" in (await a.press("qsend:3")).text  # not a's question
    assert "#3 went to the instructor" in (await b.press("qsend:3")).text
    rows = await pending(app)
    assert [r.user_ref for r in rows[before:]] == ["teacher", "me", str(ADMIN_TG)]
    assert "#3" in rows[before].body["text"]
    assert [q.status for q in await questions(app)] == ["answered", "resolved", "open"]
    kinds = await interaction_kinds(app)
    assert kinds.count("question") == 2 and kinds.count("faq_hit") == 2

    unrelated = await b.send("/ask 装饰器和闭包有什么区别？")
    assert "#4 went to the instructor" in unrelated.text


async def test_ask_from_card_and_course_choice(app):
    """ "Ask the instructor" takes the next text; several owned courses ask which one."""
    await enrol(app, "console", "m", 1, 2, name="M")
    chat = Chat(app, "m", "M")
    prompt = await chat.press("askc:5")
    assert "instructor of “Excel Data Analysis Crash Course”" in prompt.text
    assert "#1 went to the instructor" in (await chat.send("Which Excel version?")).text
    pick = await chat.send("/ask Where are the slides?")
    assert payloads(pick) == ["askin:2", "askin:1", "askin:0"]
    assert "#2 went" in (await chat.press("askin:2")).text
    assert "already handled" in (await chat.press("askin:2")).text
    assert [(q.course_id, q.text) for q in await questions(app)] == [
        (5, "Which Excel version?"),
        (2, "Where are the slides?"),
    ]
    assert "Put your question after /ask" in (await chat.send("/ask")).text


async def test_limits_html_and_rate_limit(app):
    """Over 2,000 chars is refused whole; HTML is escaped; the 11th question in an hour waits."""
    await enrol(app, "console", "q", 1, name="<b>Q&A</b>")
    chat = Chat(app, "q", "<b>Q&A</b>")
    too_long = await chat.send("/ask " + "问" * 2001)
    assert "too long (2001 characters, the limit is 2000)" in too_long.text
    prompt_then_long = await chat.press("askc:1")
    assert "2000" in prompt_then_long.text
    assert "too long" in (await chat.send("x" * 2001)).text
    assert await questions(app) == [] and await pending(app) == []
    assert "went to the instructor" in (await chat.send("<script>alert(1)</script> & co")).text
    [forward, *_] = await pending(app)
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in forward.body["text"]
    assert "&lt;b&gt;Q&amp;A&lt;/b&gt;" in forward.body["text"]
    for n in range(8):
        assert "went to the instructor" in (await chat.send(f"/ask question {n}")).text
    assert "went to the instructor" in (await chat.send("/ask " + "问" * 2000)).text
    limited = await chat.send("/ask one more")
    assert "the limit per hour is 10" in limited.text
    assert len(await questions(app)) == 10
    app.clock.advance(hours=1, seconds=1)
    assert "went to the instructor" in (await chat.send("/ask one more")).text


async def test_only_the_instructor_or_an_admin_answers(app):
    """Another course's instructor and learners cannot /answer, /faq or see /questions."""
    wang = await learner_for(app, "console", "wang", "Wang")
    chen = await learner_for(app, "console", "chen", "Chen")
    await set_instructor(app, 1, wang)
    await set_instructor(app, 2, chen)
    await enrol(app, "console", "l", 1, name="L")
    learner = Chat(app, "l", "L")
    await learner.send("/ask Is there a replay? 回放")
    await learner.send("/ask #2 Django 版本？")
    wang_chat, chen_chat = Chat(app, "wang", "Wang"), Chat(app, "chen", "Chen")
    assert "Only this course's instructor" in (await chen_chat.send("/answer 1 no")).text
    assert "Only this course's instructor" in (await learner.send("/answer 1 yes")).text
    assert "Only this course's instructor" in (await chen_chat.send("/faq 1")).text
    assert "Only this course's instructor" in (await chen_chat.press("qans:1")).text
    assert "Only instructors and admins" in (await learner.send("/questions")).text
    assert [q.answer for q in await questions(app)] == [None, None]

    listing = await wang_chat.send("/questions")
    assert "#1 · “Python for Beginners” #1" in listing.text and "#2" not in listing.text
    assert "#2 · " in (await chen_chat.send("/questions")).text
    everything = await Chat(app, "me").send("/questions")
    assert "#1 · " in everything.text and "#2 · " in everything.text

    assert "no answer yet" in (await wang_chat.send("/faq 1")).text
    assert "Send your answer to question #1" in (await wang_chat.press("qans:1")).text
    assert "Answered question #1" in (await wang_chat.send("Yes, within two hours.")).text
    assert "Answered question #2" in (await Chat(app, "me").send("/answer 2 4.2")).text
    assert [q.answer for q in await questions(app)] == ["Yes, within two hours.", "4.2"]


async def test_questions_show_review_keywords(app):
    """Instructors see the top keywords of their course's reviews in /questions."""
    wang = await learner_for(app, "console", "wang", "Wang")
    await set_instructor(app, 1, wang)
    reviews = ["讲解清楚，例子实用，回放清晰", "例子很实用，讲解清楚", "互动多，例子实用"]
    for n, text in enumerate(reviews):
        await enrol(app, "console", f"r{n}", 1)
        chat = Chat(app, f"r{n}")
        await chat.press("rt:1:5:5:5")
        await chat.send(text)
    listing = await Chat(app, "wang", "Wang").send("/questions")
    assert "No open questions" in listing.text
    assert "Review keywords of “Python for Beginners”" in listing.text
    assert "实用" in listing.text and "例子" in listing.text


async def test_pending_step_takes_text_that_starts_with_a_command_word(app):
    """While a step waits for text, `help …`/`推荐` are that text; a real /command still wins."""
    await enrol(app, "console", "s", 1, name="S")
    chat = Chat(app, "s", "S")
    await chat.press("askc:1")
    assert "#1 went to the instructor" in (await chat.send("help me with decorators")).text
    await chat.press("askc:1")
    assert "Commands" in (await chat.send("/help")).text  # the command cancels the step
    assert "Commands" in (await chat.send("help")).text  # and the bare word is a command again
    assert [q.text for q in await questions(app)] == ["help me with decorators"]

    await chat.press("rt:1:5:5:5")
    assert "Thank you for your review" in (await chat.send("推荐")).text
    async with app.uow() as uow:
        assert (await uow.ratings.get(await chat.learner_id(), 1)).review == "推荐"


async def test_only_a_reply_to_a_forwarded_question_answers_it(app):
    """Replying to "❓ Question #1" answers it; replying to other texts naming #1 does not."""
    wang = await learner_for(app, "console", "wang", "Wang")
    await set_instructor(app, 1, wang)
    await enrol(app, "console", "l", 1, name="L")
    await Chat(app, "l", "L").send("/ask Is there a replay?")
    teacher = Chat(app, "wang", "Wang")
    for quoted in ("✅ 已回答问题 #1，回答会发送给提问的学员。", "📌 问题 #1 已设为常见问题"):
        reply = await teacher.reply("python", quoted)
        assert "Answered" not in reply.text and "Python" in shown(reply)
    assert [q.answer for q in await questions(app)] == [None]
    forwarded = "❓ 问题 #1\n课程：《Python 入门》 #1\n来自：L\n\nIs there a replay?"
    assert "Answered question #1" in (await teacher.reply("Yes.", forwarded)).text
    assert [q.answer for q in await questions(app)] == ["Yes."]
