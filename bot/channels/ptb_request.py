"""python-telegram-bot's HTTP requests on aiohttp (PTB's `BaseRequest` interface).

PTB's own `HTTPXRequest` spends about half of a chat update's CPU in httpx and its connection
pool (every request walks the pool's connections to assign one and check their expiry), more
than the rest of the update's handling together. aiohttp, which the process already runs for
its web server and the aiogram runtime, does the same request in a fraction of that. PTB keeps
everything else: it builds the request data and parses the answers (errors, `retry_after`).
"""

from __future__ import annotations

import aiohttp
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData

USER_AGENT = "coursebot (python-telegram-bot on aiohttp)"


class AiohttpRequest(BaseRequest):
    """One aiohttp session for PTB's Bot API calls (parameters form-encoded, each value JSON,
    as PTB sends them; files as multipart)."""

    def __init__(
        self,
        connection_pool_size: int = 64,
        read_timeout: float | None = 5.0,
        connect_timeout: float | None = 5.0,
    ) -> None:
        self._pool_size = connection_pool_size
        self._read_timeout = read_timeout
        self._connect_timeout = connect_timeout
        self._session: aiohttp.ClientSession | None = None

    @property
    def read_timeout(self) -> float | None:
        """The read timeout of a request that names none."""
        return self._read_timeout

    async def initialize(self) -> None:
        """Open the session (PTB calls this once, before the first request)."""
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._pool_size)
            headers = {"User-Agent": USER_AGENT}
            self._session = aiohttp.ClientSession(connector=connector, headers=headers)

    async def shutdown(self) -> None:
        """Close the session."""
        if self._session is not None and not self._session.closed:
            await self._session.close()

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout=BaseRequest.DEFAULT_NONE,
        write_timeout=BaseRequest.DEFAULT_NONE,
        connect_timeout=BaseRequest.DEFAULT_NONE,
        pool_timeout=BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        """The status and body of one request; TimedOut or NetworkError when there is none
        (aiohttp has no write timeout: PTB's is not applied)."""
        if self._session is None or self._session.closed:
            raise RuntimeError("This AiohttpRequest is not initialized!")
        files = request_data.multipart_data if request_data else None
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=self._given(pool_timeout, self._connect_timeout),
            sock_connect=self._given(connect_timeout, self._connect_timeout),
            sock_read=self._given(read_timeout, self._read_timeout),
        )
        data = self._body(request_data, files)
        try:
            async with self._session.request(method, url, data=data, timeout=timeout) as resp:
                return resp.status, await resp.read()
        except TimeoutError as error:
            raise TimedOut from error
        except aiohttp.ClientError as error:
            raise NetworkError(f"aiohttp.{type(error).__name__}: {error}") from error

    @staticmethod
    def _given(value, default: float | None) -> float | None:
        return default if isinstance(value, type(BaseRequest.DEFAULT_NONE)) else value

    @staticmethod
    def _body(request_data: RequestData | None, files) -> aiohttp.FormData | dict | None:
        if request_data is None:
            return None
        if not files:
            return request_data.json_parameters
        form = aiohttp.FormData()
        for name, value in request_data.json_parameters.items():
            form.add_field(name, value)
        for name, (filename, content, mimetype) in files.items():
            form.add_field(name, content, filename=filename, content_type=mimetype)
        return form
