"""`/export`: sales, learners, ratings or attendance of some courses as a CSV document.

UTF-8 with a byte-order mark, so Excel opens Chinese titles and names correctly; times are
ISO 8601 in UTC; amounts in the currency's smallest unit (fen for CNY).
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime

TABLES = {
    "sales": (
        "payment_id",
        "paid_at",
        "course_id",
        "title_zh",
        "title_en",
        "learner_id",
        "channel",
        "currency",
        "amount",
        "status",
        "coupon_id",
    ),
    "learners": (
        "learner_id",
        "name",
        "locale",
        "course_id",
        "title_zh",
        "title_en",
        "enrolled_at",
    ),
    "ratings": (
        "rating_id",
        "course_id",
        "title_zh",
        "title_en",
        "learner_id",
        "content",
        "instructor",
        "interaction",
        "score",
        "review",
        "updated_at",
    ),
    "attendance": (
        "session_id",
        "session_title",
        "starts_at",
        "course_id",
        "title_zh",
        "title_en",
        "learner_id",
        "first_opened_at",
        "opens",
    ),
}
BOM = "\ufeff"


def _cell(value) -> object:
    if value is None:
        return ""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value  # never a formula in a spreadsheet
    return value


def to_csv(table: str, rows: list[tuple]) -> bytes:
    """Rows of one table as a UTF-8 CSV with a BOM and a header line."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(TABLES[table])
    for row in rows:
        writer.writerow([_cell(v) for v in row])
    return (BOM + out.getvalue()).encode("utf-8")


def read_csv(data: bytes) -> list[dict[str, str]]:
    """A CSV made by `to_csv` read back (for tests and scripts)."""
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))


async def export(uow, table: str, course_ids: list[int] | None) -> tuple[bytes, int]:
    """The CSV of one table over some courses (None: all) and its number of rows."""
    rows = await uow.stats.export_rows(table, course_ids)
    return to_csv(table, rows), len(rows)
