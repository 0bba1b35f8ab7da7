"""Plain responses of many shapes, for comparing uvicorn's bytes with and without the accelerator.

``/r/<name>`` answers the response ``RESPONSES[name]`` describes; ``POST /echo`` echoes the body;
``/hold?PATH`` answers at once, then blocks its thread (the event loop) until the file ``PATH``
exists (at most 5 s), as an app doing synchronous work after responding; ``/read-after`` answers, then reads the request body, which ``/_last-read`` then answers;
``/_accelerated`` answers how many responses so far went out through the plain-response
accelerator of ``rsgi_bridge/servers/uvicorn.py`` (counted here, around the bridge's own writer,
so a test can tell the accelerated path actually ran). ``RSGI_BRIDGE_ACCELERATE=0`` in the
environment turns the accelerator off.
"""

from __future__ import annotations

import os
import time
from typing import Any

import rsgi_bridge.servers.uvicorn as uvicorn_seam
from rsgi_bridge import wrap

COUNT = [0]
LAST_READ: list[str] = []
_make_writer = uvicorn_seam._plain_writer


def _counting_writer(owner: type) -> Any:
    write = _make_writer(owner)
    if write is None:
        return None

    def counted(*args: Any) -> bool:
        done = write(*args)
        COUNT[0] += done
        return done

    return counted


uvicorn_seam._plain_writer = _counting_writer  # type: ignore[assignment]

BIG = bytes(range(256)) * 4096  # 1 MiB

# name: (kind, status, headers, body); kind is the response_* method.
RESPONSES: dict[str, tuple[str, int, list[tuple[str, str]], Any]] = {
    "hello": ("str", 200, [("content-type", "text/plain")], "Hello, world!"),
    "empty": ("empty", 200, [], None),
    "utf8": (
        "str",
        201,
        [("x-a", "1"), ("X-Mixed-Case", "Ünïcode"), ("content-type", "text/plain; charset=utf-8")],
        "héllo",
    ),
    "bytes": ("bytes", 200, [("content-type", "application/octet-stream")], b"\x00\x01\xff" * 100),
    "big": ("bytes", 200, [("content-type", "application/octet-stream")], BIG),
    "own-length": ("bytes", 200, [("content-length", "5"), ("x-b", "2")], b"abcde"),
    "cookies": ("str", 200, [("set-cookie", "a=1"), ("set-cookie", "b=2; Path=/"), ("x-empty", "")], "c"),
    "server-header": ("str", 200, [("server", "app"), ("date", "yesterday")], "own server and date headers"),
    "not-found": ("str", 404, [], "nope"),
    "teapot": ("str", 418, [], "short and stout"),
    "redirect": ("empty", 302, [("location", "/r/hello")], None),
    "error": ("str", 500, [], "app says 500"),
    "599": ("str", 599, [], "no phrase"),
    "no-content": ("empty", 204, [], None),
    "not-modified": ("empty", 304, [("etag", '"x"')], None),
    "connection-close": ("str", 200, [("connection", "close")], "bye"),
    "connection-keep": ("str", 200, [("connection", "keep-alive")], "stay"),
    "chunked": ("str", 200, [("transfer-encoding", "chunked")], "chunked body"),
}


async def app(scope: Any, proto: Any) -> None:
    path = scope.path
    if path == "/_accelerated":
        proto.response_str(200, [("content-type", "text/plain")], str(COUNT[0]))
        return
    if path == "/hold":
        proto.response_str(200, [("content-type", "text/plain")], "held")
        deadline = time.monotonic() + 5
        while not os.path.exists(scope.query_string) and time.monotonic() < deadline:
            time.sleep(0.01)  # blocking on purpose: no await until the test lets go
        return
    if path == "/read-after":  # responds, then reads the body (Granian gives it, b"" for none)
        proto.response_str(200, [], "answered first")
        try:
            LAST_READ[:] = [repr(await proto())]
        except Exception as exc:
            LAST_READ[:] = [repr(exc)]
        return
    if path == "/_last-read":
        proto.response_str(200, [], LAST_READ[0] if LAST_READ else "nothing read")
        return
    if path == "/echo":
        body = await proto()
        proto.response_bytes(200, [("content-type", "application/octet-stream")], body)
        return
    kind, status, headers, body = RESPONSES[path.removeprefix("/r/")]
    if kind == "empty":
        proto.response_empty(status, headers)
    elif kind == "str":
        proto.response_str(status, headers, body)
    else:
        proto.response_bytes(status, headers, body)


asgi = wrap(app)
asgi_off = wrap(app, accelerate=False)  # the option, whatever the environment says
