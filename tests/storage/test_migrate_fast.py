"""A database already at head is recognised without Alembic; anything else still migrates."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from storage.db import make_engine
from storage.migrate import alembic_config, head_revision, is_at_head, upgrade_engine


def test_the_head_read_from_the_files_is_alembics_head():
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert head_revision() == script.get_current_head()


async def test_only_a_database_at_the_newest_revision_counts_as_at_head(db_url):
    engine = make_engine(db_url)
    try:
        assert not await is_at_head(engine)  # new database: no alembic_version table
        await upgrade_engine(engine)
        assert await is_at_head(engine)
        async with engine.begin() as connection:
            await connection.execute(text("UPDATE alembic_version SET version_num = '0001'"))
        assert not await is_at_head(engine)
    finally:
        await engine.dispose()


async def test_processes_migrating_a_fresh_postgresql_database_at_once_all_succeed(db_url):
    """Web, scheduler and sender processes started together all migrate: one after another."""
    if not db_url.startswith("postgresql"):
        pytest.skip("one SQLite file is migrated by the process that owns it")
    engines = [make_engine(db_url) for _ in range(3)]
    try:
        migrations = asyncio.gather(*(upgrade_engine(engine) for engine in engines))
        await asyncio.wait_for(migrations, 60)  # unserialised, they failed or hung
        assert all([await is_at_head(engine) for engine in engines])
    finally:
        for engine in engines:
            await engine.dispose()
