"""Websocket messages of many shapes, for comparing uvicorn's bytes with and without the websocket
accelerator (``rsgi_bridge/servers/uvicorn.py``, ``_websocket_sender``).

- ``/ws/script``: accept, read one text message naming a script of ``SCRIPTS``, send its messages,
  return (the bridge then closes with 1000).
- ``/ws/flood``: send 64 MiB in 64 KiB binary frames, counting the bytes sent, until the client
  leaves; what the last send raised is kept.
- ``/ws/push``: send "tick" at every loop turn (at most 100,000 times) until a send raises; what the
  last send raised is kept.
- ``/_frames``, ``/_sent`` and ``/_last``: how many frames went out through the accelerator so far
  (counted here, around the bridge's own writer, so a test can tell the accelerated path ran), the
  flood's bytes sent, and the name of what ended the flood.

``RSGI_BRIDGE_ACCELERATE=0`` in the environment turns the accelerators off."""

from __future__ import annotations

import asyncio
from typing import Any

import rsgi_bridge.servers.uvicorn as uvicorn_seam
from rsgi_bridge import wrap

FRAMES = [0]  # frames written by the accelerator
SENT = [0]  # bytes the flood sent
LAST: list[str] = []
_make_sender = uvicorn_seam._websocket_sender


def _counting_sender(owner: type) -> Any:
    probe = _make_sender(owner)
    if probe is None:
        return None

    def writer_for(send: Any) -> Any:
        writer = probe(send)
        if writer is None:
            return None

        def send_frame(data: Any) -> bool:
            done = writer(data)
            FRAMES[0] += done
            return done

        return send_frame

    return writer_for


uvicorn_seam._websocket_sender = _counting_sender  # type: ignore[assignment]

# name: the messages the app sends, in order (str: a text frame, bytes: a binary one). The payload
# sizes cover each length encoding of a frame (7 bits, 16 bits, 64 bits) and their edges.
SCRIPTS: dict[str, list[str | bytes]] = {
    "shapes": [
        "hello",
        "",
        "héllo ✓ 🎉",
        "x" * 125,
        "y" * 126,
        b"",
        b"\x00\xff" * 62 + b"\x00",  # 125 bytes
        bytes(126),
        bytes(range(256)) * 255 + bytes(255),  # 65535 bytes
        bytes(range(256)) * 256,  # 65536
        bytes(range(256)) * 4096,  # 1 MiB, last: the writes may pause after it
    ],
    "text": ["a", "b" * 1000, "c" * 70000],
}
FLOOD_FRAME = bytes(64 * 1024)
FLOOD_FRAMES = 1024  # 64 MiB


async def app(scope: Any, protocol: Any) -> None:
    if scope.proto == "http":
        answers = {"/_frames": str(FRAMES[0]), "/_sent": str(SENT[0]), "/_last": LAST[-1] if LAST else ""}
        if scope.path in answers:
            protocol.response_str(200, [("content-type", "text/plain")], answers[scope.path])
        else:
            protocol.response_empty(404, [])
        return
    transport = await protocol.accept()
    if scope.path == "/ws/script":
        message = await transport.receive()
        for item in SCRIPTS[message.data]:
            if isinstance(item, str):
                await transport.send_str(item)
            else:
                await transport.send_bytes(item)
        if message.data == "text":  # a str that cannot be UTF-8 encoded: what the app sees, then on
            try:
                await transport.send_str("\ud800")
                seen = "sent"
            except Exception as exc:
                seen = type(exc).__name__
            await transport.send_str(seen)
    elif scope.path == "/ws/flood":
        SENT[0] = 0
        try:
            for _ in range(FLOOD_FRAMES):
                await transport.send_bytes(FLOOD_FRAME)
                SENT[0] += len(FLOOD_FRAME)
            LAST.append("finished")
        except Exception as exc:
            LAST.append(type(exc).__name__)
            raise
    elif scope.path == "/ws/push":
        try:
            for _ in range(100_000):
                await transport.send_str("tick")
                await asyncio.sleep(0)
            LAST.append("finished")
        except Exception as exc:
            LAST.append(type(exc).__name__)
            raise


asgi = wrap(app)
