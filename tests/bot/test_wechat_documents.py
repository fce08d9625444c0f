"""WeChat cannot receive files in customer-service messages: `/export` and `/mydata` arrive as
a short-lived signed link to our web server, which serves the document until it expires."""

from __future__ import annotations

import json
import re

import aiohttp
import pytest

from services import downloads, export
from storage.models import Identity
from tests.bot.wechat_support import ADMIN_WX, start_wechat_app
from tests.fakes.wechat_api import FakeWeChat
from tests.services.test_stats import build_dataset

LINK = re.compile(r"http://\S+/dl/\S+")


@pytest.fixture
async def wechat(sqlite_url, clock, tmp_path):
    async with FakeWeChat(tmp_path / "keys") as wx:
        app, channel = await start_wechat_app(sqlite_url, clock, wx)
        yield app, wx
        await channel.stop()
        await app.close()


async def link_after(user, command: str) -> str:
    """Send a command; the download link of the text that follows."""
    await user.send_text(command)
    message = await user.wait_for(lambda m: m["type"] == "text" and "/dl/" in m["text"])
    return LINK.search(message["text"]).group(0)


async def get(url: str) -> tuple[int, bytes, dict]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status, await resp.read(), dict(resp.headers)


async def test_export_and_mydata_arrive_as_links_that_expire(wechat, clock):
    app, wx = wechat
    data = await build_dataset(app, clock.now())
    url = await link_after(wx.user(ADMIN_WX), "/export sales")
    status, body, headers = await get(url)
    assert status == 200 and body.startswith("\ufeff".encode())
    assert len(export.read_csv(body)) == 7
    assert headers["Content-Type"].startswith("text/csv")
    assert "attachment" in headers["Content-Disposition"]

    async with app.uow() as uow:
        uow.session.add(
            Identity(learner_id=data["L"][2], channel="wechat", user_ref="oLearnerDoc01")
        )
        await uow.commit()
    mine = await link_after(wx.user("oLearnerDoc01"), "/mydata")
    status, body, _ = await get(mine)
    assert status == 200 and len(json.loads(body)["payments"]) == 2

    token = url.split("/dl/", 1)[1].split("/", 1)[0]
    ident, expiry, mac = token.split(".")
    later = downloads._b36(int(expiry, 36) + 3600)
    forged = url.replace(token, f"{ident}.{later}.{mac}")
    assert (await get(forged))[0] == 404, "the expiry cannot be extended"
    clock.advance(seconds=downloads.TTL.total_seconds() + 1)
    status, body, _ = await get(url)
    assert status == 404 and "过期" in body.decode()
    assert (await get(mine))[0] == 404
