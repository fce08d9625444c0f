"""Buttons in customer-service messages as WeChat `msgmenu`; a click (a text message with
`bizmsgmenuid`) maps back to the button's payload; passive replies stay numbered text."""

from __future__ import annotations

import asyncio
import time

import pytest

from bot.channels.wechat import MAX_MENU_ITEMS, menu_parts
from bot.core import Button, Reply
from tests.bot.wechat_support import start_wechat_app


@pytest.fixture
async def wechat(sqlite_url, clock, wx):
    """Every answer goes by customer-service message (a reply budget of 1 ms)."""
    app, channel = await start_wechat_app(sqlite_url, clock, wx, wechat_reply_budget_seconds=0.001)
    yield app, channel
    await channel.stop()
    await app.close()


async def settled(channel) -> None:
    """Wait until every customer-service follow-up of the channel was sent."""
    while channel._background or channel._inflight:
        await asyncio.sleep(0.01)


async def test_catalog_buttons_arrive_as_msgmenu_and_a_click_presses_the_button(wechat, wx):
    _, channel = wechat
    user = wx.user("oMenu0001")
    assert (await user.send_text("课程")).reply is None  # `success`, then the real reply
    await settled(channel)
    [message] = user.menus()
    menu = message["menu"]
    assert menu["head_content"] and 2 <= len(menu["list"]) <= MAX_MENU_ITEMS
    assert [i["content"] for i in menu["list"]] == [
        line for line in message["text"].split("\n") if line[:1].isdigit()
    ]
    await user.click_item(message, 1)
    await settled(channel)
    typed = wx.user("oMenu0002")  # typing the number shows the same page
    await typed.send_text("课程")
    await settled(channel)
    await typed.send_text("1")
    await settled(channel)
    assert len(user.messages) == len(typed.messages) == 2
    assert typed.messages[1]["text"] == user.messages[1]["text"] != message["text"]


async def test_a_click_on_an_older_menu_still_maps_to_its_own_button(wechat, wx):
    _, channel = wechat
    user = wx.user("oMenu0003")
    wx.active[user.openid] = time.time()  # inside the 48-hour window
    first = Reply("第一组", buttons=[[Button("帮助", "help:")], [Button("课程", "catalog:")]])
    await channel.send(user.openid, first)
    await channel.send(user.openid, Reply("第二组", buttons=[[Button("其他", "cat:9:0")]]))
    old = user.menus()[0]
    ids = {item["id"] for m in user.menus() for item in m["menu"]["list"]}
    assert len(ids) == 3  # every item of every menu has its own id
    seen = []
    real = channel.app.dispatcher.dispatch

    async def spy(msg):
        seen.append((msg.kind, msg.payload))
        return await real(msg)

    channel.app.dispatcher.dispatch = spy
    await user.click_item(old, 2)
    await settled(channel)
    assert seen == [("button", "catalog:")]


async def test_unknown_menu_id_is_plain_text(wechat, wx):
    _, channel = wechat
    user = wx.user("oMenu0004")
    seen = []
    real = channel.app.dispatcher.dispatch

    async def spy(msg):
        seen.append((msg.kind, msg.text))
        return await real(msg)

    channel.app.dispatcher.dispatch = spy
    await user.click_item({"menu": {"list": [{"id": "999999", "content": "1. 旧"}]}}, 1)
    await settled(channel)
    assert seen == [("text", "1. 旧")]


async def test_refused_msgmenu_falls_back_to_numbered_text(wechat, wx):
    _, channel = wechat
    wx.refuse_menus = True
    user = wx.user("oMenu0005")
    wx.active[user.openid] = time.time()
    await channel.send(user.openid, Reply("选择", buttons=[[Button("甲", "help:")]]))
    assert user.texts() == ["选择\n1. 甲"] and user.menus() == []
    assert channel.menus is False


async def test_passive_replies_keep_numbered_text(sqlite_url, clock, wx):
    app, channel = await start_wechat_app(sqlite_url, clock, wx)
    try:
        user = wx.user("oMenu0006")
        delivery = await user.send_text("课程")
        assert delivery.reply and "\n1. " in delivery.reply and user.menus() == []
    finally:
        await channel.stop()
        await app.close()


def test_menu_parts_only_for_one_reply_with_a_few_buttons():
    one = Reply("a", buttons=[[Button("x", "p:1")]])
    assert menu_parts([Reply("head"), one, Reply("tail")]) == ("head\n\na", one.buttons[0], "tail")
    assert menu_parts([one, one]) is None  # two lists of options: numbered text
    many = Reply("a", buttons=[[Button(str(n), f"p:{n}")] for n in range(MAX_MENU_ITEMS + 1)])
    assert menu_parts([many]) is None
    assert menu_parts([Reply("no buttons")]) is None
