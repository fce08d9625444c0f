"""`/export <sales|learners|ratings|attendance> [course_id]`: a CSV document (UTF-8 with BOM)
of the courses this admin or instructor may see."""

from __future__ import annotations

from bot.core import Document, Incoming, Reply, Router
from bot.parsing import parse_id
from handlers.stats import allowed_scope
from services import audit
from services import export as service

router = Router()


@router.command("export", "导出")
async def export(msg: Incoming, uow, learner, t, settings, clock) -> Reply:
    """Send one table as CSV."""
    table, _, rest = msg.args.strip().partition(" ")
    table, rest = table.lower(), rest.strip()
    course_id = parse_id(rest) if rest else None
    if table not in service.TABLES or (rest and course_id is None):
        return Reply(t("export.usage"))
    allowed = await allowed_scope(uow, msg, learner, settings, t, course_id)
    if isinstance(allowed, Reply):
        return allowed
    actor, scope = allowed
    data, count = await service.export(uow, table, scope)
    now = clock.now()
    await audit.record(uow, actor, "export", table, now, course_id=course_id, rows=count)
    suffix = f"-{course_id}" if course_id else ""
    filename = f"{table}{suffix}-{now:%Y%m%d-%H%M%S}.csv"
    text = t.plural("export.ready", count, count=count, table=table)
    return Reply(text, document=Document(filename, data))
