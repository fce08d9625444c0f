"""Start-up stays lean: building the app and answering /start load no heavy module it does not
need, and aiogram's Telegram types build on first use (so the gain cannot silently regress)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from storage.db import make_engine
from storage.migrate import upgrade_engine

ROOT = Path(__file__).resolve().parents[2]

#: Never loaded to build the app (Telegram on aiogram, no WeChat, no model file yet).
NOT_TO_BUILD = (
    "jieba",
    "scipy",
    "surprise",
    "alembic",
    "matplotlib",
    "telegram",
    "wechatpy",
    "wechatpayv3",
    "segno",
    "PIL",
)
#: Never loaded to answer /start either (jieba and the text index may load in the background).
NOT_TO_ANSWER = (
    "surprise",
    "alembic",
    "matplotlib",
    "telegram",
    "wechatpy",
    "wechatpayv3",
    "segno",
    "PIL",
)

PROBE = """
import asyncio, gc, json, sys
from bot.bootstrap import build_app
from bot.runner import start_role
from tests.conftest import make_settings
from tests.fakes.telegram_api import FakeTelegram

def loaded(names):
    return sorted(n for n in names if n in sys.modules)

async def main(url, model, heavy_build, heavy_answer):
    async with FakeTelegram() as tg:
        settings = make_settings(url, telegram_bot_token=tg.token, telegram_api_url=tg.base_url,
                                 telegram_runtime="aiogram", recommender_model_path=model)
        app = await build_app(settings)
        built = loaded(heavy_build)
        stop, services = asyncio.Event(), []
        try:
            await start_role(app, "all", stop, services)
            user = tg.user(1, language_code="zh")
            await user.send("/start")
            await user.wait_for_message(timeout=60)
            from aiogram.types import Poll
            answered = loaded(heavy_answer)
            for _ in range(600):  # the start-up heap is frozen once the catalogue index is built
                if gc.get_freeze_count():
                    break
                await asyncio.sleep(0.05)
            print(json.dumps({"build": built, "answer": answered,
                              "poll_built": Poll.__pydantic_complete__,
                              "frozen": gc.get_freeze_count(),
                              "walked": len(gc.get_objects(generation=2))}))
        finally:
            for service in reversed(services):
                await service.stop()
            await app.close()

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3].split(","), sys.argv[4].split(",")))
"""

EVERY_TYPE = """
import bot.channels
import aiogram.methods, aiogram.types
from pydantic._internal._mock_val_ser import MockValSer
assert not aiogram.types.Message.__pydantic_complete__, "aiogram types were built at import"
broken = []
for module in (aiogram.types, aiogram.methods):
    for name in module.__all__:
        cls = getattr(module, name)
        if isinstance(cls, type) and hasattr(cls, "__pydantic_validator__"):
            cls.__pydantic_validator__.validate_python  # builds a deferred type (or raises)
            cls.__pydantic_serializer__.to_python
            if isinstance(cls.__pydantic_validator__, MockValSer):
                broken.append(name)
assert not broken, broken
print("ok")
"""


async def run_python(*argv: str) -> str:
    """Run `python -c …` from the repository root; its stdout (fails on a non-zero exit)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        *argv,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 180)
    assert proc.returncode == 0, err.decode()[-3000:]
    return out.decode()


async def test_building_the_app_and_answering_start_load_no_heavy_module(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'lean.db'}"
    engine = make_engine(url)
    await upgrade_engine(engine)  # a restart: the database is already at head
    await engine.dispose()
    out = await run_python(
        PROBE, url, str(tmp_path / "no-model.npz"), ",".join(NOT_TO_BUILD), ",".join(NOT_TO_ANSWER)
    )
    found = json.loads(out.strip().splitlines()[-1])
    assert found["build"] == [], f"building the app imported {found['build']}"
    assert found["answer"] == [], f"answering /start imported {found['answer']}"
    assert found["poll_built"] is False, "aiogram types are built eagerly again"
    # A full collection walks only what came after start-up (bot.heap): a few thousand objects,
    # not the ~250,000 of the modules, the catalogue index and jieba (100-150 ms of stalled loop).
    assert found["frozen"] > 100_000, found
    assert found["walked"] < found["frozen"] / 10, found


async def test_every_aiogram_type_and_method_builds_on_first_use():
    assert (await run_python(EVERY_TYPE)).strip() == "ok"
