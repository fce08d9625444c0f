"""Chinese-aware course search (jieba + BM25)."""

from __future__ import annotations

from bot.core import Incoming, Reply, Router, esc
from handlers.catalog import category_name, listing_rows
from services.catalog import clean_query, currency_of
from services.catalog import search as search_courses

router = Router()


@router.command("search", "搜索", "找")
async def search(msg: Incoming, uow, t, channels, clock) -> Reply:
    """Search the catalog: `/search Python 入门`."""
    query = clean_query(msg.args)
    if not query:
        return Reply(t("search.usage"))
    found = await search_courses(uow, query)
    if not found:
        return Reply(t("search.none", query=esc(query)))
    currency = currency_of(channels, msg.channel)
    notes = {c.id: category_name(c.category, t) for c in found}
    rows = await listing_rows(found, currency, t, uow, clock, notes)
    return Reply(t("search.results", query=esc(query)), rows)


@router.on("text")
async def plain_text(msg: Incoming, uow, t, channels, clock) -> Reply:
    """Plain words that are not a command are treated as a search."""
    as_search = Incoming(
        **{**msg.__dict__, "kind": "command", "command": "search", "args": msg.text}
    )
    return await search(as_search, uow, t, channels, clock)
