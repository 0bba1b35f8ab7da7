"""The RSGI app the middleware recipes wrap: ``myproject.main:app``.

Routes: ``/plain``; ``/stream`` (``STREAM`` in ``CHUNKS`` pieces); ``/file`` (``FILE``);
``/seen`` (JSON: what the app saw: client, scheme, server, headers); ``/boom`` (raises before
answering); ``/stream-boom`` (raises after its first chunk); ``/slow?s=N``; ``/users/<id>``.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
FILE = os.path.join(os.path.dirname(os.path.dirname(HERE)), "data", "file.bin")
CHUNKS = [f"line {i:04d}: {'abcdefghij' * (i % 7 + 1)}\n".encode() for i in range(400)]
STREAM = b"".join(CHUNKS)
PLAIN = "plain " * 200


def boom_handler() -> None:
    raise RuntimeError("boom from the RSGI app")


async def app(scope: Any, proto: Any) -> None:
    path = scope.path
    if path == "/plain":
        proto.response_str(200, [("content-type", "text/plain")], PLAIN)
    elif path == "/stream":
        transport = proto.response_stream(200, [("content-type", "text/plain")])
        for chunk in CHUNKS:
            await transport.send_bytes(chunk)
            await asyncio.sleep(0)
    elif path == "/file":
        proto.response_file(200, [("content-type", "application/octet-stream")], FILE)
    elif path == "/seen":
        seen = {
            "client": scope.client,
            "scheme": scope.scheme,
            "http_version": scope.http_version,
            "server": scope.server,
            "headers": {k: scope.headers.get_all(k) for k in scope.headers.keys()},  # noqa: SIM118
        }
        proto.response_str(200, [("content-type", "application/json")], json.dumps(seen))
    elif path == "/boom":
        boom_handler()
    elif path == "/stream-boom":
        transport = proto.response_stream(200, [("content-type", "text/plain")])
        await transport.send_bytes(b"first chunk\n")
        boom_handler()
    elif path == "/slow":
        await asyncio.sleep(float(scope.query_string.partition("=")[2] or 1))
        proto.response_str(200, [("content-type", "text/plain")], "slow done")
    elif path.startswith("/users/"):
        proto.response_str(200, [("content-type", "text/plain")], f"user {path.rsplit('/', 1)[1]}")
    else:
        proto.response_str(404, [("content-type", "text/plain")], "not found")
