"""`GET /go/<token>`: a learner's tracked session link on the one web server.

A genuine token records attendance (once per learner and session, see services.attendance) and
redirects (302) to the live URL, or to the replay once the session is over. A cancelled session
gets a short page saying so (410); a forged, foreign or malformed token gets 404, never a hint.
Added to the web server like a channel: `web.add(TrackedLinks(app))`.

`GET /dl/<token>/<filename>` serves a document published for a channel that cannot send files
(see services.downloads): as an attachment while the signed link lasts, else 404.
"""

from __future__ import annotations

import html
import logging
from urllib.parse import quote

from aiohttp import web

from bot.i18n import translator_for
from services import attendance, downloads

log = logging.getLogger(__name__)

CONTENT_TYPES = {".csv": "text/csv", ".json": "application/json"}
PAGE = (
    "<!doctype html><html><head><meta charset='utf-8'>"
    "<meta name='viewport' content='width=device-width'><title>{title}</title></head>"
    "<body><p>{text}</p></body></html>"
)


class TrackedLinks:
    """The route provider of tracked links (no chat: it only adds routes)."""

    name = "links"

    def __init__(self, app) -> None:
        self.app = app

    def add_routes(self, web_app: web.Application) -> None:
        """Serve `/go/{token}` and `/dl/{token}/{name}`."""
        web_app.router.add_get(attendance.PATH + "{token}", self.go)
        web_app.router.add_get(downloads.PATH + "{token}/{name}", self.download)

    async def start(self) -> None:
        """Nothing to start (the web server serves the route)."""

    async def stop(self) -> None:
        """Nothing to stop."""

    def _page(self, status: int, key: str, locale: str | None, zone: str | None, **values):
        settings = self.app.settings
        t = translator_for(locale or settings.default_locale, settings, zone)
        text = t(key, **values)
        body = PAGE.format(title=html.escape(t("golink.page_title")), text=text)
        return web.Response(status=status, text=body, content_type="text/html", charset="utf-8")

    async def go(self, request: web.Request) -> web.StreamResponse:
        """Check the token, count the visit, redirect."""
        token = request.match_info["token"]
        async with self.app.uow() as uow:
            opened = await attendance.open_link(
                uow, self.app.settings, token, self.app.clock.now()
            )
            learner = await uow.learners.get(opened.learner_id) if opened.learner_id else None
            await uow.commit()
        locale = learner.locale if learner else None
        zone = learner.timezone if learner else None
        if opened.outcome == "go" and opened.url:
            if opened.first:
                log.info("attendance: learner %s session %s", opened.learner_id, opened.session.id)
            raise web.HTTPFound(opened.url, headers={"Cache-Control": "no-store"})
        if opened.outcome == "cancelled":
            title = html.escape(opened.session.title or f"#{opened.session.id}")
            return self._page(410, "golink.cancelled", locale, zone, session=title)
        return self._page(404, "golink.invalid", locale, zone)

    async def download(self, request: web.Request) -> web.StreamResponse:
        """Send a published document as an attachment, or 404 once its link expired."""
        async with self.app.uow() as uow:
            found = await downloads.fetch(
                uow, self.app.settings, request.match_info["token"], self.app.clock.now()
            )
            await uow.commit()
        if found is None:
            return self._page(404, "download.invalid", None, None)
        suffix = found.filename[found.filename.rfind(".") :].lower()
        headers = {
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(found.filename)}",
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        }
        return web.Response(
            body=found.data,
            content_type=CONTENT_TYPES.get(suffix, "application/octet-stream"),
            charset="utf-8" if suffix in CONTENT_TYPES else None,
            headers=headers,
        )
