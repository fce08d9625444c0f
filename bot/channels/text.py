"""Rendering for channels that show plain text (console, WeChat)."""

from __future__ import annotations

import html
import re

_TAG = re.compile(r"<[^>]+>")


def plain(text: str) -> str:
    """Our HTML-subset reply text as plain text, entities decoded."""
    return html.unescape(_TAG.sub("", text))
