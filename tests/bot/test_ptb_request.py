"""PTB's requests on aiohttp (`bot.channels.ptb_request`): what PTB sends arrives as PTB's own
HTTPX request sends it, and transport failures are PTB's TimedOut and NetworkError."""

from __future__ import annotations

import asyncio
import socket

import pytest
from aiohttp import web
from telegram import InputFile
from telegram.error import NetworkError, TimedOut
from telegram.request import RequestData
from telegram.request._requestparameter import RequestParameter  # how PTB's Bot builds them

from bot.channels.ptb_request import AiohttpRequest


@pytest.fixture
async def server():
    """A local HTTP server that records what it got; `/slow` never answers in time."""
    seen: list[dict] = []

    async def record(request: web.Request) -> web.Response:
        form = await request.post()
        fields = {}
        for name, value in form.items():
            fields[name] = (value.filename, value.file.read()) if hasattr(value, "file") else value
        seen.append({"method": request.method, "fields": fields})
        return web.json_response({"ok": True, "result": True})

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(1)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_route("*", "/record", record)
    app.router.add_post("/slow", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", seen
    await runner.cleanup()


def data(**values) -> RequestData:
    return RequestData([RequestParameter.from_input(k, v) for k, v in values.items()])


async def test_parameters_are_sent_json_encoded_and_files_as_multipart(server):
    base, seen = server
    request = AiohttpRequest()
    await request.initialize()
    try:
        status, body = await request.do_request(
            f"{base}/record", "POST", data(chat_id=5, reply_markup={"a": [1]})
        )
        assert (status, body) == (200, b'{"ok": true, "result": true}')
        photo = InputFile(b"\x89PNG...", filename="cover.png")
        await request.do_request(f"{base}/record", "POST", data(chat_id=5, photo=photo))
    finally:
        await request.shutdown()
    first, second = (entry["fields"] for entry in seen)
    assert first == {"chat_id": "5", "reply_markup": '{"a": [1]}'}
    assert second["chat_id"] == "5"
    [(filename, content)] = [v for v in second.values() if isinstance(v, tuple)]
    assert (filename, content) == ("cover.png", b"\x89PNG...")


async def test_a_silent_server_is_timed_out_and_a_closed_port_a_network_error(server):
    base, _ = server
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    request = AiohttpRequest()
    await request.initialize()
    try:
        with pytest.raises(TimedOut):
            await request.do_request(f"{base}/slow", "POST", data(x=1), read_timeout=0.2)
        with pytest.raises(NetworkError) as refused:
            await request.do_request(f"http://127.0.0.1:{closed}/x", "POST", data(x=1))
        assert not isinstance(refused.value, TimedOut)  # TimedOut is a NetworkError too
    finally:
        await request.shutdown()
    with pytest.raises(RuntimeError):
        await request.do_request(f"{base}/record", "POST")
