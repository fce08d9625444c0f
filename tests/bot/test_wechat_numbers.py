"""WeChat numbered options read through bot.parsing (issue 17): a typed `²`, `١` or a 30-digit
number is text, never a crash, and never picks an option it does not name."""

from __future__ import annotations

import pytest


async def test_odd_digits_are_text_and_a_real_number_picks_its_option(wechat, wx):
    user = wx.user("oDigits01")
    await user.send_text("课程", msg_id=1)  # numbered categories: 1. 编程开发 …
    for n, text in enumerate(["²", "١", "9" * 30], start=2):
        said = (await user.send_text(text, msg_id=n)).reply or ""
        assert said, f"{text!r} got no answer"
        assert "出了点问题" not in said and "第 1/1 页" not in said, (text, said)
    picked = (await user.send_text("1", msg_id=9)).reply or ""
    assert "第 1/1 页" in picked


@pytest.mark.parametrize("stamp", ["²", "١٧٠٠٠٠٠٠٠٠", "9" * 30, "-1", ""])
def test_a_pay_timestamp_of_odd_digits_is_not_fresh(stamp):
    from bot.channels.wechat_pay import fresh

    assert fresh({"Wechatpay-Timestamp": stamp}, 1_700_000_000.0) is False
