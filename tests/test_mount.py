"""An RSGI app mounted under a prefix inside Starlette and FastAPI, next to native routes, on uvicorn.

The apps are defined here and served by a real uvicorn (``tests.test_mount:starlette_app`` etc.).
The mounted app is the diff app with hooks (``tests.apps.diff_app.Hooked``), which logs
``init``/``del`` and the start and end of ``/slow`` into ``$DIFF_HOOK_LOG``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.websockets import WebSocket
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

import rsgi_bridge
from tests.apps.diff_app import FILE, Hooked, _log_hook
from tests.servers import Server, get_during_sigterm

# -- the apps ------------------------------------------------------------------------------------


async def native(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"native {request.url.path}")


async def native_ws(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text("native " + await websocket.receive_text())
    await websocket.close()


# Starlette: the helper as the whole lifespan.
legacy = rsgi_bridge.wrap(Hooked())
starlette_app = Starlette(
    routes=[
        Route("/native", native),
        WebSocketRoute("/native-ws", native_ws),
        Mount("/legacy", app=legacy),
    ],
    lifespan=lambda app: rsgi_bridge.lifespan_context(legacy),
)

# FastAPI: the helper inside the app's own lifespan.
fastapi_legacy = rsgi_bridge.wrap(Hooked())


@contextlib.asynccontextmanager
async def fastapi_lifespan(app: FastAPI) -> AsyncIterator[None]:
    _log_hook("outer-startup")
    async with rsgi_bridge.lifespan_context(fastapi_legacy):
        yield
    _log_hook("outer-shutdown")


fastapi_app = FastAPI(lifespan=fastapi_lifespan)


@fastapi_app.get("/native")
async def fastapi_native() -> PlainTextResponse:
    return PlainTextResponse("native /native")


@fastapi_app.websocket("/native-ws")
async def fastapi_native_ws(websocket: WebSocket) -> None:
    await native_ws(websocket)


fastapi_app.mount("/legacy", fastapi_legacy)

# Not wired: the bridge starts the app on its first request and stops it when the server stops.
unwired_legacy = rsgi_bridge.wrap(Hooked())
unwired_app = Starlette(routes=[Route("/native", native), Mount("/legacy", app=unwired_legacy)])


class FailingInit(Hooked):
    def __rsgi_init__(self, loop: Any) -> None:
        raise RuntimeError("database unreachable")


failing_legacy = rsgi_bridge.wrap(FailingInit())
failing_app = Starlette(
    routes=[Mount("/legacy", app=failing_legacy)], lifespan=lambda app: rsgi_bridge.lifespan_context(failing_legacy)
)

APPS = {"starlette": "tests.test_mount:starlette_app", "fastapi": "tests.test_mount:fastapi_app"}
FILE_BYTES = Path(FILE).read_bytes()


# -- routes and websockets through the mount -----------------------------------------------------


@pytest.fixture(scope="module", params=list(APPS))
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("mount") / "hooks.log"
    with Server("uvicorn", APPS[request.param], env={"DIFF_HOOK_LOG": str(log)}) as s:
        yield s


def test_native_and_mounted_routes(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as c:
        assert c.get("/native").text == "native /native"
        r = c.get("/legacy/str")
        assert (r.status_code, r.text) == (200, "héllo wörld €")
        assert c.post("/legacy/echo", content=b"through the mount").content == b"through the mount"
        assert c.get("/legacy/file").content == FILE_BYTES
        r = c.get("/legacy/file-range?start=10&end=20")
        assert (r.status_code, r.content) == (206, FILE_BYTES[10:20])
        assert c.get("/legacy/stream?n=2").text == "ab€cdline 0\nline 1\n"
        assert (c.get("/legacy/error").status_code, c.get("/legacy/nope").status_code) == (500, 404)
        assert c.get("/elsewhere").status_code == 404  # the outer app's own 404


def test_scope_path_below_the_mount(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as c:
        s = c.get("/legacy/scope?a=1&b=%20x").json()
        assert (s["path"], s["query_string"], s["method"]) == ("/scope", "a=1&b=%20x", "GET")
        assert s["server"] == f"127.0.0.1:{server.port}"
        assert c.get("/legacy/caf%C3%A9/scope").json()["path"] == "/café/scope"
        assert c.get("/legacy/legacy/scope").json()["path"] == "/legacy/scope"  # only the mount prefix goes


def test_websockets_through_the_mount(server: Server) -> None:
    with connect(server.ws_url + "/native-ws", open_timeout=10) as ws:
        ws.send("hi")
        assert ws.recv(timeout=5) == "native hi"
    with connect(server.ws_url + "/legacy/ws/echo", open_timeout=10) as ws:
        for message in ("text", b"\x00bytes"):
            ws.send(message)
            assert ws.recv(timeout=5) == message
    with connect(server.ws_url + "/legacy/ws/info?q=1", open_timeout=10) as ws:
        ws.send("first")
        info = json.loads(ws.recv(timeout=5))
    assert (info["proto"], info["path"], info["query_string"]) == ("ws", "/ws/info", "q=1")
    with pytest.raises(InvalidStatus) as denied:
        connect(server.ws_url + "/legacy/ws/reject?status=404", open_timeout=10)
    assert denied.value.response.status_code == 404


# -- the outer lifespan drives the mounted app's hooks --------------------------------------------


def _events(path: Path) -> list[str]:
    try:
        return [line.split()[0] for line in path.read_text().splitlines()]
    except FileNotFoundError:
        return []


def _slow_then_sigterm(server: Server, log: Path) -> Any:
    """An in-flight request to the mounted app when SIGTERM arrives; its response."""
    response = get_during_sigterm(server, server.url + "/legacy/slow?t=1", lambda: "slow-start" in _events(log))
    server.wait(20)
    return response


@pytest.mark.parametrize("name", list(APPS))
def test_outer_lifespan_runs_the_hooks(name: str, tmp_path: Path) -> None:
    log = tmp_path / "hooks.log"
    with Server("uvicorn", APPS[name], env={"DIFF_HOOK_LOG": str(log)}) as server:
        # uvicorn listens only after lifespan startup completed: init already ran, no request yet
        assert "init" in _events(log), server.output()
        assert _slow_then_sigterm(server, log) == (200, "slow done")
    expected = ["init", "slow-start", "slow-end", "del"]
    if name == "fastapi":
        expected = ["outer-startup", *expected, "outer-shutdown"]
    assert _events(log) == expected, server.output()
    assert "Application shutdown complete" in server.output()


def test_unwired_mount_starts_on_first_request(tmp_path: Path) -> None:
    """Without the helper: init on the first request to the mount, del once when the server stops."""
    log = tmp_path / "hooks.log"
    with Server("uvicorn", "tests.test_mount:unwired_app", env={"DIFF_HOOK_LOG": str(log)}) as server:
        assert httpx.get(server.url + "/native", timeout=10).status_code == 200
        time.sleep(0.2)
        assert _events(log) == []  # the outer lifespan does not reach the mounted app
        assert httpx.get(server.url + "/legacy/str", timeout=10).text == "héllo wörld €"
        assert _events(log) == ["init"]
        assert _slow_then_sigterm(server, log) == (200, "slow done")
    assert _events(log) == ["init", "slow-start", "slow-end", "del"], server.output()


def test_lifespan_context_rejects_non_bridges() -> None:
    async def enter() -> None:
        async with rsgi_bridge.lifespan_context(object()):  # type: ignore[arg-type]
            pass

    with pytest.raises(TypeError, match="RSGIBridge"):
        asyncio.run(enter())


def test_failing_init_fails_the_outer_startup() -> None:
    server = Server("uvicorn", "tests.test_mount:failing_app")
    server.start(wait=False)
    try:
        assert server.wait(30) == 3  # uvicorn's exit code for a failed lifespan startup
        out = server.output()
        assert "database unreachable" in out and "Application startup failed" in out
    finally:
        server.__exit__(None, None, None)
