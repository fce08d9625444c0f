"""Alembic upgrades, callable from the CLI, bootstrap and tests.

A database already at the newest revision (the usual restart) is recognised without Alembic:
the revision ids are read from the migration files and compared with the `alembic_version`
row, so start-up neither imports Alembic (~0.2 s, ~10 MB) nor loads its script directory.
"""

from __future__ import annotations

import ast
import asyncio
import re
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

if TYPE_CHECKING:  # pragma: no cover
    from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")
_ASSIGNMENT = re.compile(r"^(revision|down_revision)\s*(?::[^=]*)?=\s*(.+?)\s*$", re.MULTILINE)


#: The PostgreSQL advisory lock key that serialises migrations ("cbmigrat").
MIGRATION_LOCK = 0x63626D6967726174


def head_revision(versions: Path = MIGRATIONS / "versions") -> str | None:
    """The newest revision id of the migration files, read as text; None unless one head."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in versions.glob("*.py"):
        found = dict(m.groups() for m in _ASSIGNMENT.finditer(path.read_text(encoding="utf-8")))
        if "revision" not in found:
            continue
        revisions.add(ast.literal_eval(found["revision"]))
        down = ast.literal_eval(found.get("down_revision", "None"))
        parents.update(down if isinstance(down, tuple | list) else [down])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


async def is_at_head(engine: AsyncEngine) -> bool:
    """True when the database's `alembic_version` is exactly the newest migration file."""
    head = head_revision()
    if head is None:
        return False
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(text("SELECT version_num FROM alembic_version"))
            return rows.scalars().all() == [head]
    except DBAPIError:  # no alembic_version table yet: a new database
        return False


def alembic_config(url: str) -> Config:
    """An Alembic config pointing at our migrations and `url`."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Upgrade the database at `url` (blocking; not from inside a running loop)."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)


async def upgrade_engine(engine: AsyncEngine, revision: str = "head") -> None:
    """Upgrade the database behind an async engine from inside the event loop (fast at head)."""
    if revision == "head" and await is_at_head(engine):
        return
    from alembic import command

    config = alembic_config(engine.url.render_as_string(hide_password=False))

    def run(connection) -> None:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Processes starting together on a fresh database migrate one after the other
            # (both creating alembic_version at once failed the second); the lock ends with
            # the transaction, and the second then finds the schema at head.
            await connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        await connection.run_sync(run)


def upgrade_blocking(url: str) -> None:
    """Upgrade from synchronous code that may or may not be inside a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        upgrade(url)
        return
    raise RuntimeError("call upgrade_engine() from async code")


async def revisions(engine: AsyncEngine) -> tuple[str | None, str]:
    """(the database's current revision or None, the newest revision of the code)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config(str(engine.url))).get_current_head()
    async with engine.connect() as connection:
        current = await connection.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision()
        )
    return current, head or ""
