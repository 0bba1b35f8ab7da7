"""A real framework, unchanged: the Emmett55 example app through the bridge answers as under Granian.

``examples/emmett55_app.py`` is served natively (``granian --interface rsgi``) and through the
bridge on uvicorn (``examples.emmett55_app:asgi``), with the ``rsgi-bridge`` command line (which
serves the RSGI app object itself), and on hypercorn over HTTP/2 (Emmett reads
``scope.authority`` there instead of the host header). The same requests go to both sides.
"""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.servers import Server

# Headers the servers set themselves (see tests/test_differential.py for the full reasoning).
IGNORED = {"date", "server", "transfer-encoding", "connection"}
BIG = random.Random(7).randbytes(200 * 1024)


@dataclass(frozen=True)
class Target:
    kind: str
    app: str
    http2: bool = False


TARGETS = {
    "uvicorn": Target("uvicorn", "examples.emmett55_app:asgi"),
    "rsgi-bridge-cli": Target("rsgi-bridge", "examples.emmett55_app:app"),
    "hypercorn-h2c": Target("hypercorn", "examples.emmett55_app:asgi", http2=True),
}

REQUESTS = [
    ("GET", "/", None),
    ("GET", "/query?a=1&b=x%20y&a=2&empty=", None),
    ("POST", "/echo", b"hello body"),
    ("POST", "/echo", BIG),
    ("POST", "/echo", b""),
    ("GET", "/stream", None),
    ("GET", "/aiter", None),
    ("GET", "/missing", None),
    ("GET", "/echo", None),  # wrong method: Emmett's 404
]


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, Server]]:
    with contextlib.ExitStack() as stack:
        out = {"granian": stack.enter_context(Server("granian-rsgi", "examples.emmett55_app:app"))}
        for name, t in TARGETS.items():
            out[name] = stack.enter_context(Server(t.kind, t.app))
        yield out


def fetch(server: Server, http2: bool, method: str, path: str, body: bytes | None) -> tuple[object, ...]:
    options = {"http1": False, "http2": True} if http2 else {}
    with httpx.Client(base_url=server.url, timeout=10, **options) as c:  # type: ignore[arg-type]
        r = c.request(method, path, content=body)
        headers = [(k.lower(), v) for k, v in r.headers.multi_items() if k.lower() not in IGNORED]
        return r.http_version, r.status_code, headers, r.content


@pytest.mark.parametrize(("method", "path", "body"), REQUESTS, ids=[f"{m} {p} {len(b or b'')}" for m, p, b in REQUESTS])
@pytest.mark.parametrize("name", list(TARGETS))
def test_http_same_as_granian(
    servers: dict[str, Server], name: str, method: str, path: str, body: bytes | None
) -> None:
    http2 = TARGETS[name].http2
    ref = fetch(servers["granian"], http2, method, path, body)
    got = fetch(servers[name], http2, method, path, body)
    if http2 and ref[3] == b"":
        # On HTTP/2 Granian leaves out "content-length: 0" (DATA frames carry the length).
        got = (got[0], got[1], [h for h in got[2] if h != ("content-length", "0")], got[3])  # type: ignore[attr-defined]
    assert got == ref


def test_responses_are_what_the_routes_say(servers: dict[str, Server]) -> None:
    """The reference itself is right, so "same as Granian" means "correct"."""
    with httpx.Client(base_url=servers["uvicorn"].url, timeout=10) as c:
        assert c.get("/").text == "Hello from Emmett55"
        assert c.get("/query?a=1&b=x%20y&a=2").json() == {"a": ["1", "2"], "b": "x y"}
        r = c.post("/echo", content=BIG)
        assert (r.content, r.headers["x-body-length"]) == (BIG, str(len(BIG)))
        r = c.get("/stream")
        assert (r.status_code, r.text, r.headers.get("transfer-encoding")) == (
            200,
            "line 0\nline 1\nline 2\n",
            "chunked",
        )
        assert c.get("/aiter").text == "chunk 0;chunk 1;chunk 2;"
        assert c.get("/missing").status_code == 404


@pytest.mark.parametrize("name", ["granian", "uvicorn", "rsgi-bridge-cli"])
def test_websocket_echo_and_unknown_route(servers: dict[str, Server], name: str) -> None:
    server = servers[name]
    # (close_timeout: after the closing handshake Granian keeps the TCP connection open until the
    # client gives up waiting for it to close; the bridge on uvicorn closes it at once)
    with connect(server.ws_url + "/ws", open_timeout=10, close_timeout=1) as ws:
        for message in ("hello", "€", b"\x00\x01binary", "x" * 100_000):
            ws.send(message)
            assert ws.recv(timeout=5) == message
    with pytest.raises(InvalidStatus) as denied:
        connect(server.ws_url + "/no-such-ws", open_timeout=10)
    assert denied.value.response.status_code == 404  # Emmett's close(404) before accepting


def test_http2_authority(servers: dict[str, Server]) -> None:
    """Emmett builds request.host from scope.authority on HTTP/2: the query route works there."""
    with httpx.Client(base_url=servers["hypercorn-h2c"].url, timeout=10, http1=False, http2=True) as c:
        r = c.get("/query?x=1")
        assert (r.http_version, r.status_code, json.loads(r.text)) == ("HTTP/2", 200, {"x": "1"})
