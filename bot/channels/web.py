"""The one aiohttp web application of a process: every channel adds its routes to it."""

from __future__ import annotations

import logging

from aiohttp import web

log = logging.getLogger(__name__)

#: Largest request body accepted (webhooks and payment notifications are small).
MAX_BODY_BYTES = 1024 * 1024


class WebServer:
    """Serves `/healthz` and the routes channels add (`/telegram`, `/wechat`, …)."""

    def __init__(self, host: str, port: int, channels=()) -> None:
        self.host, self.port = host, port
        self.app = web.Application(client_max_size=MAX_BODY_BYTES)
        self.app.router.add_get("/healthz", self._healthz)
        self._channels = list(channels)
        self._runner: web.AppRunner | None = None

    async def _healthz(self, _request: web.Request) -> web.Response:
        chats = [c.name for c in self._channels if hasattr(c, "send")]  # not route providers
        return web.json_response({"ok": True, "channels": chats})

    def add(self, channel) -> None:
        """Let a channel (or a route provider such as tracked links) add its routes; call
        before `start`."""
        channel.add_routes(self.app)
        self._channels.append(channel)

    def paths(self) -> list[str]:
        """The paths served, for the start-up log line."""
        return sorted({r.resource.canonical for r in self.app.router.routes()})

    async def start(self) -> None:
        """Listen on host:port."""
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        log.info("web server on %s:%s serving %s", self.host, self.port, ", ".join(self.paths()))

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
