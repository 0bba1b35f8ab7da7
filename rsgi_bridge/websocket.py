"""The RSGI websocket protocol on top of ASGI ``websocket`` scopes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from enum import IntEnum
from typing import Any

from .connection import (
    ASGIReceive,
    ASGIScope,
    ASGISend,
    Connection,
    Drive,
    check_bytes,
    check_str,
    logger,
)
from .errors import ProtocolClosed, ProtocolError

__all__ = [
    "WebsocketMessage",
    "WebsocketMessageType",
    "WebsocketProtocol",
    "WebsocketTransport",
    "deny_websocket",
    "serve_websocket",
]

_QUEUE_SIZE = 64
# Phases of a websocket connection.
_NEW, _OPEN, _CLOSED = 0, 1, 2


class WebsocketMessageType(IntEnum):
    """``kind`` of a received message; equal to the plain ints apps compare with."""

    close = 0
    bytes = 1
    string = 2


class WebsocketMessage:
    """A received message: ``kind`` and ``data`` (bytes, str, or None on close)."""

    __slots__ = ("data", "kind")

    def __init__(self, kind: WebsocketMessageType, data: bytes | str | None) -> None:
        self.kind = kind
        self.data = data

    def __repr__(self) -> str:
        return f"WebsocketMessage(kind={self.kind!r}, data={self.data!r})"


_CLOSE_MESSAGE = WebsocketMessage(WebsocketMessageType.close, None)


def _close_code(status: object) -> int:
    if type(status) is int and (status in (1000, 1001, 1002, 1003) or 1007 <= status <= 1014 or 3000 <= status <= 4999):
        return status
    return 1000


def _deny_status(status: object) -> int:
    if type(status) is int and 100 <= status <= 599 and status != 101:
        return status
    return 403


async def deny_websocket(scope: ASGIScope, receive: ASGIReceive, send: ASGISend, status: int) -> None:
    """Reject a handshake with ``status`` where the server lets us, else with 403."""
    if "websocket.http.response" in (scope.get("extensions") or ()):
        await send({"type": "websocket.http.response.start", "status": status, "headers": [(b"content-length", b"0")]})
        await send({"type": "websocket.http.response.body", "body": b""})
    else:
        await send({"type": "websocket.close", "code": 1000})


class WebsocketProtocol(Connection):
    """The ``protocol`` object an RSGI app receives for one websocket."""

    __slots__ = ("_close_seen", "_close_status", "_gone", "_phase", "_queue", "_state", "_watcher")

    proto = "ws"

    def __init__(self, scope: ASGIScope, receive: ASGIReceive, send: ASGISend) -> None:
        super().__init__(scope, receive, send)
        self._state = 0  # 1: a close() is waiting to be sent
        self._phase = _NEW
        self._gone = False
        self._close_seen = False
        self._close_status: int | None = None
        self._queue: asyncio.Queue[dict[str, Any]] | None = None
        self._watcher: asyncio.Task[None] | None = None

    async def accept(self) -> WebsocketTransport:
        """Complete the handshake and return the transport."""
        if self._phase != _NEW or self._state:
            raise ProtocolError("accept() called twice or after close()")
        self._phase = _OPEN
        message = await self._receive()
        if message["type"] == "websocket.disconnect":
            self._gone = True
            raise ProtocolClosed("the client disconnected before the handshake completed")
        await self._send({"type": "websocket.accept"})
        self._queue = asyncio.Queue(_QUEUE_SIZE)
        self._watcher = asyncio.get_running_loop().create_task(self._watch())
        return WebsocketTransport(self)

    async def _watch(self) -> None:
        queue = self._queue
        assert queue is not None
        receive = self._receive
        try:
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    self._gone = True
                    await queue.put(message)
                    return
                await queue.put(message)
        except Exception as exc:  # the server failed receive(): the client is as good as gone
            logger.debug("websocket receive failed: %r", exc)
            self._gone = True
            queue.put_nowait({"type": "websocket.disconnect", "code": 1006})

    def close(self, status: int | None = None) -> tuple[int, bool]:
        """Reject the handshake (before accept) or close the socket; idempotent."""
        if self._state or self._phase == _CLOSED:
            return (self._close_status or 0, False)
        self._close_status = status
        if self._gone:
            self._phase = _CLOSED
            return (status or 0, False)
        self._state = 1
        return (status or 0, True)

    async def flush(self) -> None:
        """Send a pending close."""
        if self._state != 1:
            return
        self._state = 2
        status = self._close_status
        if self._phase == _NEW:
            self._phase = _CLOSED
            await deny_websocket(self._asgi_scope, self._receive, self._send, _deny_status(status))
            return
        self._phase = _CLOSED
        if not self._gone:
            try:
                await self._send({"type": "websocket.close", "code": _close_code(status)})
            except (OSError, RuntimeError) as exc:
                logger.debug("websocket close failed: %r", exc)
        self._stop_watch()

    def _stop_watch(self) -> None:
        w = self._watcher
        if w is not None and not w.done():
            w.cancel()

    async def _receive_message(self) -> WebsocketMessage:
        if self._phase == _NEW:
            raise ProtocolError("receive() before accept()")
        queue = self._queue
        if self._close_seen or queue is None or (self._phase == _CLOSED and queue.empty()):
            raise ProtocolClosed("the websocket is closed")
        message = await queue.get()
        if message["type"] == "websocket.receive":
            data = message.get("bytes")
            if data is not None:
                return WebsocketMessage(WebsocketMessageType.bytes, data)
            return WebsocketMessage(WebsocketMessageType.string, message.get("text") or "")
        self._close_seen = True
        return _CLOSE_MESSAGE

    async def _send_message(self, message: dict[str, Any]) -> None:
        if self._phase != _OPEN or self._state:
            if self._phase == _NEW:
                raise ProtocolError("send before accept()")
            raise ProtocolError("send after close()")
        if self._gone:
            raise ProtocolClosed("the client disconnected")
        try:
            await self._send(message)
        except (OSError, RuntimeError) as exc:  # uvicorn raises once the socket is gone
            self._gone = True
            raise ProtocolClosed("the client disconnected") from exc

    async def finish(self, error: BaseException | None) -> None:
        """After the app returned: reject or close whatever it left open."""
        if self._state == 1:
            await self.flush()
        elif self._phase == _NEW:
            self._phase = _CLOSED
            await deny_websocket(self._asgi_scope, self._receive, self._send, 500 if error else 403)
        elif self._phase == _OPEN:
            self._close_status = 1011 if error else 1000
            self._state = 1
            await self.flush()
        self._stop_watch()


class WebsocketTransport:
    """What ``accept()`` returns: ``receive``, ``send_bytes``, ``send_str``."""

    __slots__ = ("_proto",)

    def __init__(self, proto: WebsocketProtocol) -> None:
        self._proto = proto

    async def receive(self) -> WebsocketMessage:
        """Next message; ``kind == 0`` once when the client closed, then ``ProtocolClosed``."""
        return await self._proto._receive_message()

    async def send_bytes(self, data: Any) -> None:
        """Send a binary frame."""
        await self._proto._send_message({"type": "websocket.send", "bytes": check_bytes(data, "send_bytes")})

    async def send_str(self, data: str) -> None:
        """Send a text frame."""
        await self._proto._send_message({"type": "websocket.send", "text": check_str(data, "send_str")})


async def serve_websocket(
    app: Callable[[Any, Any], Awaitable[Any]], scope: ASGIScope, receive: ASGIReceive, send: ASGISend
) -> None:
    """Run one RSGI websocket session over ASGI."""
    proto = WebsocketProtocol(scope, receive, send)
    error: BaseException | None = None
    try:
        await Drive(app(proto.scope, proto), proto)
    except Exception as exc:
        error = exc
        if not (isinstance(exc, ProtocolClosed) and proto._gone):
            proto.log_app_error(exc, "Exception")
    except BaseException:
        proto._stop_watch()
        raise
    try:
        await proto.finish(error)
    except (OSError, RuntimeError) as exc:
        logger.debug("closing the websocket failed: %r", exc)
