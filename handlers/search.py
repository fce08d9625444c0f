"""Chinese-aware course search (jieba + BM25)."""

from __future__ import annotations

from functools import lru_cache

from bot.core import Button, Incoming, Reply, Router, esc
from bot.textindex import TextIndex
from handlers.catalog import category_name, course_title, price_text

router = Router()
MAX_RESULTS = 8
MAX_QUERY_CHARS = 200


def course_document(course) -> str:
    """The searchable text of a course: titles weigh more than descriptions."""
    titles = f"{course.title_zh} {course.title_en} "
    return " ".join(
        [
            titles * 3,
            course.description_zh,
            course.description_en,
            course.instructor_name,
            course.category.name_zh,
            course.category.name_en,
        ]
    )


@lru_cache(maxsize=4)
def _index(documents: tuple[tuple[int, str], ...]) -> TextIndex:
    return TextIndex(dict(documents))


def course_index(courses) -> TextIndex:
    """The BM25 index of these courses; rebuilt only when a searchable text changed."""
    return _index(tuple((c.id, course_document(c)) for c in courses))


async def search_courses(query: str, uow, limit: int = MAX_RESULTS) -> list:
    """Active courses matching `query`, best first."""
    courses = {c.id: c for c in await uow.courses.active()}
    index = course_index(courses.values())
    return [courses[cid] for cid, _ in index.search(query, limit)]


@router.command("search", "搜索", "找")
async def search(msg: Incoming, uow, learner, t) -> Reply:
    """Search the catalog: `/search Python 入门`."""
    query = msg.args.strip()[:MAX_QUERY_CHARS]
    if not query:
        return Reply(t("search.usage"))
    found = await search_courses(query, uow)
    if not found:
        return Reply(t("search.none", query=esc(query)))
    rows = [
        [Button(f"{course_title(c, t)} · {price_text(c, msg.channel, t)}", f"course:{c.id}")]
        for c in found
    ]
    lines = [t("search.results", query=esc(query))] + [
        f"#{c.id} {esc(course_title(c, t))} — {esc(category_name(c.category, t))}" for c in found
    ]
    return Reply("\n".join(lines), rows)


@router.on("text")
async def plain_text(msg: Incoming, uow, learner, t) -> Reply:
    """Plain words that are not a command are treated as a search."""
    return await search(
        Incoming(**{**msg.__dict__, "kind": "command", "command": "search", "args": msg.text}),
        uow,
        learner,
        t,
    )
