"""`/export <sales|learners|ratings|attendance> [course_id]`: a CSV document (UTF-8 with BOM)
of the courses this admin or instructor may see."""

from __future__ import annotations

import tempfile
from dataclasses import fields
from pathlib import Path

from bot.core import Incoming, Reply, Router
from handlers.stats import allowed_scope
from services import audit
from services import export as service

router = Router()
#: Where CSV files go until replies can carry documents (see `document_reply`).
EXPORT_DIR = Path(tempfile.gettempdir()) / "coursebot-exports"


def document_reply(text: str, filename: str, data: bytes) -> Reply:
    """A reply carrying a file: as a document when `Reply` has that field, else saved to a file
    whose path the text names (console and same-host admins open it)."""
    if "document" in {f.name for f in fields(Reply)}:
        return Reply(text, document=(filename, data))  # type: ignore[call-arg]
    EXPORT_DIR.mkdir(parents=True, exist_ok=True)
    path = EXPORT_DIR / filename
    path.write_bytes(data)
    return Reply(f"{text}\n📎 {path}")


@router.command("export", "导出")
async def export(msg: Incoming, uow, learner, t, settings, clock) -> Reply:
    """Send one table as CSV."""
    table, _, rest = msg.args.strip().partition(" ")
    table, rest = table.lower(), rest.strip().lstrip("#")
    if table not in service.TABLES or (rest and not rest.isdigit()):
        return Reply(t("export.usage"))
    course_id = int(rest) if rest else None
    allowed = await allowed_scope(uow, msg, learner, settings, t, course_id)
    if isinstance(allowed, Reply):
        return allowed
    actor, scope = allowed
    data, count = await service.export(uow, table, scope)
    now = clock.now()
    await audit.record(uow, actor, "export", table, now, course_id=course_id, rows=count)
    suffix = f"-{course_id}" if course_id else ""
    filename = f"{table}{suffix}-{now:%Y%m%d-%H%M%S}.csv"
    return document_reply(
        t.plural("export.ready", count, count=count, table=table), filename, data
    )
