"""Conversation drivers by name; the suite runs every script once per entry.

A new channel adds one line here, e.g.
`"wechat": "tests.conversations.drivers.wechat:WeChatDriver"`.
"""

from __future__ import annotations

import importlib

DRIVERS = {
    "console": "tests.conversations.drivers.console:ConsoleDriver",
    "aiogram": "tests.conversations.drivers.telegram:AiogramDriver",
    "ptb": "tests.conversations.drivers.telegram:PtbDriver",
    "wechat": "tests.conversations.drivers.wechat:WeChatDriver",
}


def driver_class(name: str):
    """The driver class registered as `name`."""
    module, _, attr = DRIVERS[name].partition(":")
    return getattr(importlib.import_module(module), attr)
