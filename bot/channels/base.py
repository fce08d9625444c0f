"""The one contract every channel adapter fulfils, and the plain-text base for channels that
cannot draw buttons or show pictures inline."""

from __future__ import annotations

import tempfile
import uuid
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

from aiohttp import web

from bot.channels.text import plain
from bot.core import Button, ChannelError, Document, Reply, numbered_text
from bot.i18n import STARS


class ChannelConfigError(Exception):
    """A channel cannot start with these settings (e.g. the platform refused the token)."""


class Channel(ABC):
    """A chat channel: receives updates (its own way), sends replies, refunds payments.

    `currency` and `payment_provider` say how the channel takes money (Telegram: Stars,
    WeChat: CNY through WeChat Pay); handlers price an order in the currency of the channel.
    """

    name: ClassVar[str]
    currency: ClassVar[str] = STARS
    payment_provider: ClassVar[str] = ""

    def add_routes(self, web_app: web.Application) -> None:  # noqa: B027 - optional hook
        """Add this channel's HTTP routes (webhooks) to the one web application."""

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Start receiving updates (polling, webhook registration, menus)."""

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Stop receiving updates and release connections."""

    def config_problem(self, error: Exception) -> str | None:
        """What to tell the operator when `error` from `start` means a setting is wrong (no
        retry will help); None for failures worth retrying (network blips, 5xx)."""
        return None

    @abstractmethod
    async def send(self, user_ref: str, reply: Reply) -> None:
        """Deliver one reply to one user; raise a ChannelError subclass on failure."""

    async def refund(self, user_ref: str, charge_id: str) -> None:
        """Give a payment back; raise ChannelError on failure."""
        raise ChannelError(f"the {self.name} channel takes no payments to refund")


class TextChannel(Channel):
    """A channel that shows plain text: buttons become numbered options, images and documents
    become files whose paths are printed."""

    def __init__(self, image_dir: Path | None = None) -> None:
        self.image_dir = image_dir

    def render(self, reply: Reply) -> tuple[str, list[Button]]:
        """The reply as plain text with numbered options, and the options in order."""
        text, options = numbered_text(reply, plain)
        if reply.image is not None:
            text = "\n".join(filter(None, [text, f"🖼 {self.save_image(reply.image)}"]))
        if reply.document is not None:
            text = "\n".join(filter(None, [text, f"📎 {self.save_document(reply.document)}"]))
        return text, options

    def _folder(self, default: str) -> Path:
        folder = self.image_dir or Path(tempfile.gettempdir()) / default
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def save_image(self, image: bytes) -> Path:
        """Write an image to a file the user can open; returns its path."""
        path = self._folder("coursebot-images") / f"{uuid.uuid4().hex[:12]}.png"
        path.write_bytes(image)
        return path

    def save_document(self, document: Document) -> Path:
        """Write a document under its own name (in a folder of its own); returns its path."""
        folder = self._folder("coursebot-documents") / uuid.uuid4().hex[:12]
        folder.mkdir()
        path = folder / (Path(document.filename).name or "document")
        path.write_bytes(document.data)
        return path
