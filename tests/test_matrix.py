"""Per-server facts of the compatibility table: unix sockets, lifespan hooks and drain on SIGTERM.

Each server runs the diff app (``tests/apps/diff_app.py``) through the bridge; Granian serving the
same RSGI app natively is the reference row. What is asserted here is what the README's
compatibility table reports.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import unix_connect

from tests.servers import Server, get_during_sigterm, wait_for


def _app(kind: str, name: str) -> str:
    """The RSGI app itself for Granian's RSGI mode, the bridge-wrapped one for ASGI servers."""
    native = {"app": "app", "hooked": "hooked"}[name]
    wrapped = {"app": "asgi", "hooked": "hooked_asgi"}[name]
    return f"tests.apps.diff_app:{native if kind == 'granian-rsgi' else wrapped}"


# -- unix sockets -------------------------------------------------------------------------------

# kind: (arguments that bind the unix socket, scope.server the app sees)
# hypercorn and daphne give the app no server address on a unix socket (ASGI ``server`` is None).
UDS: dict[str, tuple[list[str], str]] = {
    "granian-rsgi": (["--uds", "{path}"], "{path}"),
    "uvicorn": (["--uds", "{path}"], "{path}"),
    "gunicorn": (["-b", "unix:{path}"], "{path}"),
    "granian-asgi": (["--uds", "{path}"], "{path}"),
    "hypercorn": (["--bind", "unix:{path}"], ""),
    "daphne": (["-u", "{path}"], ""),
}


@pytest.fixture
def sock_dir() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="rsgi-bridge-uds-") as d:
        yield d


def _wait_unix(server: Server, path: str, timeout: float = 30) -> None:
    def ready() -> bool:
        assert server.proc is not None and server.proc.poll() is None, server.output()
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(path)
            return True
        except OSError:
            return False

    assert wait_for(ready, timeout=timeout), f"{server.kind} did not listen on {path}:\n{server.output()}"


@pytest.mark.parametrize("kind", list(UDS))
def test_unix_socket(kind: str, sock_dir: str) -> None:
    path = os.path.join(sock_dir, f"{kind}.sock")
    args, server_addr = UDS[kind]
    server = Server(kind, _app(kind, "app"), [a.format(path=path) for a in args])
    server.start(wait=False)
    try:
        _wait_unix(server, path)
        with httpx.Client(transport=httpx.HTTPTransport(uds=path), base_url="http://localhost", timeout=10) as c:
            scope = c.get("/scope?via=uds").json()
            assert scope["server"] == server_addr.format(path=path)
            assert scope["client"] == ""  # as Granian: a unix-socket peer has no address
            assert scope["query_string"] == "via=uds"
            r = c.get("/str")
            assert (r.status_code, r.text) == (200, "héllo wörld €")
            assert c.post("/echo", content=b"over a unix socket").content == b"over a unix socket"
        with unix_connect(path, uri="ws://localhost/ws/echo", open_timeout=10) as ws:
            ws.send("ping")
            assert ws.recv(timeout=5) == "ping"
            ws.send(b"\x00\x01")
            assert ws.recv(timeout=5) == b"\x00\x01"
    finally:
        server.__exit__(None, None, None)


def test_unix_socket_websocket_scope_on_uvicorn(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "uvicorn-ws.sock")
    server = Server("uvicorn", _app("uvicorn", "app"), ["--uds", path])
    server.start(wait=False)
    try:
        _wait_unix(server, path)
        with unix_connect(path, uri="ws://localhost/ws/info", open_timeout=10) as ws:
            ws.send("hello")
            info = json.loads(ws.recv(timeout=5))
        assert (info["proto"], info["server"], info["client"], info["scheme"]) == ("ws", path, "", "http")
    finally:
        server.__exit__(None, None, None)


# -- lifespan hooks and drain ------------------------------------------------------------------

# kind: does __rsgi_init__ run at server startup (ASGI lifespan, or Granian itself) rather than
# on the first request? daphne has no ASGI lifespan: the bridge starts the app on the first
# request and, on SIGTERM, drains and runs __rsgi_del__ from its own signal handler.
INIT_AT_STARTUP = {
    "granian-rsgi": True,
    "uvicorn": True,
    "hypercorn": True,
    "gunicorn": True,
    "granian-asgi": True,
    "daphne": False,
}


def _events(path: Path) -> list[str]:
    try:
        return [line.split()[0] for line in path.read_text().splitlines()]
    except FileNotFoundError:
        return []


@pytest.mark.parametrize("kind", list(INIT_AT_STARTUP))
def test_hooks_and_drain_on_sigterm(kind: str, tmp_path: Path) -> None:
    """init before serving, an in-flight request completes after SIGTERM, del once after it."""
    log = tmp_path / "hooks.log"
    with Server(kind, _app(kind, "hooked"), env={"DIFF_HOOK_LOG": str(log)}) as server:
        if INIT_AT_STARTUP[kind]:
            assert wait_for(lambda: "init" in _events(log), timeout=15), server.output()
        else:
            time.sleep(0.5)
            assert _events(log) == []
        response = get_during_sigterm(server, server.url + "/slow?t=1.5", lambda: "slow-start" in _events(log))
        assert response == (200, "slow done"), server.output()
        server.wait(20)
    assert _events(log) == ["init", "slow-start", "slow-end", "del"], server.output()
