"""Chinese-aware course search (jieba + BM25)."""

from __future__ import annotations

from bot.core import Incoming, Reply, Router, esc
from handlers.catalog import category_name, course_button, course_title
from services.catalog import clean_query, currency_of
from services.catalog import search as search_courses

router = Router()


@router.command("search", "搜索", "找")
async def search(msg: Incoming, uow, t, channels) -> Reply:
    """Search the catalog: `/search Python 入门`."""
    query = clean_query(msg.args)
    if not query:
        return Reply(t("search.usage"))
    found = await search_courses(uow, query)
    if not found:
        return Reply(t("search.none", query=esc(query)))
    currency = currency_of(channels, msg.channel)
    rows = [[course_button(c, currency, t)] for c in found]
    lines = [t("search.results", query=esc(query))] + [
        f"#{c.id} {esc(course_title(c, t))} — {esc(category_name(c.category, t))}" for c in found
    ]
    return Reply("\n".join(lines), rows)


@router.on("text")
async def plain_text(msg: Incoming, uow, t, channels) -> Reply:
    """Plain words that are not a command are treated as a search."""
    as_search = Incoming(
        **{**msg.__dict__, "kind": "command", "command": "search", "args": msg.text}
    )
    return await search(as_search, uow, t, channels)
