"""The RSGI websocket protocol on top of ASGI ``websocket`` scopes."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from enum import IntEnum
from typing import Any

from .connection import (
    ASGIReceive,
    ASGIScope,
    ASGISend,
    Connection,
    check_bytes,
    check_str,
    contain,
    logger,
)
from .errors import ProtocolClosed, ProtocolError
from .servers import WebsocketSender, quirks_of

__all__ = [
    "WebsocketMessage",
    "WebsocketMessageType",
    "WebsocketProtocol",
    "WebsocketTransport",
    "close_websockets",
    "deny_websocket",
    "serve_websocket",
]

# Bounds on what the watcher buffers for an app that does not receive; past them it stops
# reading, so the server (and TCP) push back on the client.
_MAX_MESSAGES = 64
_MAX_BYTES = 4 * 1024 * 1024
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
_BYTES = WebsocketMessageType.bytes
_STRING = WebsocketMessageType.string


def _close_code(status: object) -> int:
    """``status`` if an app may send it as a websocket close code, else 1000."""
    if type(status) is int and (1000 <= status <= 1003 or 1007 <= status <= 1014 or 3000 <= status <= 4999):
        return status
    return 1000


def _deny_status(status: object) -> int:
    """The HTTP status a handshake is refused with when the app calls ``close(status)`` before accept.

    As Granian: no status is 403, and 300-599 pass through. A 1xx cannot end a handshake:
    Granian answers those with 500, and so does the bridge for 2xx too (Granian sends a 2xx
    through as if the handshake succeeded; a refusal must not look like success). Anything
    else (websocket close codes such as 1000, on which Granian's worker panics; 600-999, which
    not every server can send; non-ints) is refused with 403.
    """
    if status is None:
        return 403
    if type(status) is int or (isinstance(status, int) and not isinstance(status, bool)):
        status = int(status)
        if 100 <= status <= 299:
            logger.warning("websocket close(%d) before accept cannot refuse a handshake: answering 500", status)
            return 500
        if 300 <= status <= 599:
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
    """The ``protocol`` object an RSGI app receives for one websocket.

    Generically, after ``accept()`` a watcher task owns ASGI ``receive()``: it buffers
    incoming messages (bounded) and notices the client leaving even while the app only
    sends, since most servers drop sends to a departed client silently. On a server whose
    sends raise once the client has left (an accelerator, ``servers/``: uvicorn),
    ``receive()`` reads straight from ASGI ``receive()`` instead. A second task receiving
    concurrently also gets the watcher.
    """

    __slots__ = (
        "__weakref__",
        "_accelerate",
        "_away",
        "_close_error",
        "_close_seen",
        "_close_status",
        "_closer",
        "_gone",
        "_inbox",
        "_inbox_size",
        "_phase",
        "_read_done",
        "_ready",
        "_receiving",
        "_room",
        "_sessions",
        "_state",
        "_watcher",
        "_write_frame",
    )

    proto = "ws"

    def __init__(
        self,
        scope: ASGIScope,
        receive: ASGIReceive,
        send: ASGISend,
        sessions: set[WebsocketProtocol] | None = None,
        accelerate: bool = True,
    ) -> None:
        super().__init__(scope, receive, send)
        self._accelerate = accelerate  # the server's accelerators may apply (servers/)
        # The bridge's set of open sessions (for close_websockets at shutdown).
        self._sessions = sessions
        self._state = 0  # 0: open; 1: a close() is waiting to be sent; 2: sent (or being sent)
        self._phase = _NEW
        self._gone = False  # the client left
        self._away = False  # the server side is going away (close_websockets)
        self._close_seen = False  # receive() returned the close message
        self._close_status: int | None = None
        self._close_error: Exception | None = None  # what the close task's send raised
        self._receiving = False  # a direct receive() is in flight
        self._read_done: asyncio.Future[None] | None = None  # resolved when it returns (the watcher waits)
        # With a watcher only:
        self._inbox: deque[WebsocketMessage] = deque()
        self._inbox_size = 0
        self._ready: asyncio.Event | None = None  # set: inbox not empty, or the end reached
        self._room: asyncio.Event | None = None  # set: inbox under its bounds
        self._watcher: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        self._write_frame: WebsocketSender | None = None  # the server's frame writer, once accepted (servers/)

    async def accept(self) -> WebsocketTransport:
        """Complete the handshake and return the transport."""
        if self._phase != _NEW or self._state:
            raise ProtocolError("accept() called twice or after close()")
        self._phase = _OPEN
        message = await self._receive()
        if message["type"] == "websocket.disconnect":
            self._gone = True
            raise ProtocolClosed("the client disconnected before the handshake completed")
        try:
            await self._send({"type": "websocket.accept"})
        except OSError as exc:  # a server whose sends raise: the client left meanwhile
            self._gone = True
            raise ProtocolClosed("the client disconnected before the handshake completed") from exc
        if self._sessions is not None:
            self._sessions.add(self)
        quirks = quirks_of(self._send, self._accelerate)
        if quirks.websocket_send is not None:
            self._write_frame = quirks.websocket_send(self._send)
        if not quirks.websocket_sends_raise:
            self._start_watch()
        return WebsocketTransport(self)

    def _start_watch(self) -> None:
        """Hand ``receive()`` to a watcher task (see the class docstring)."""
        if self._watcher is not None or self._gone or self._phase != _OPEN:
            return
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        """Own ``receive()``: buffer messages until the client disconnects."""
        receive = self._receive
        inbox = self._inbox
        ready, room = self._ready, self._room
        assert ready is not None and room is not None
        try:
            if self._receiving:  # a direct receive() is in flight: its message is the app's
                self._read_done = asyncio.get_running_loop().create_future()
                await self._read_done
            while not self._gone:
                message = await receive()
                kind = message["type"]
                if kind == "websocket.receive":
                    data = message.get("bytes")
                    if data is not None:
                        inbox.append(WebsocketMessage(_BYTES, data))
                    else:
                        data = message.get("text") or ""
                        inbox.append(WebsocketMessage(_STRING, data))
                    self._inbox_size += len(data)
                    ready.set()
                    if len(inbox) >= _MAX_MESSAGES or self._inbox_size >= _MAX_BYTES:
                        room.clear()
                        await room.wait()
                elif kind == "websocket.disconnect":
                    break
        except Exception as exc:  # the server failed receive(): the client is as good as gone
            logger.debug("websocket receive failed: %r", exc)
        self._gone = True
        ready.set()

    def close(self, status: int | None = None) -> None:
        """Reject the handshake (before accept) or close the socket; idempotent.

        Takes effect at the app's next ``await`` (or at once when called from a task
        other than the one serving the connection). A receive in flight returns the close
        message once the close handshake ends.
        """
        if self._state or self._phase == _CLOSED:
            return
        self._close_status = status
        if self._phase == _OPEN:
            if self._ready is not None:
                self._ready.set()  # a task blocked in receive() gets the close message
            if self._gone:  # nothing to send
                self._phase = _CLOSED
                self._state = 2
                self._stop_watch()
                return
        self._state = 1
        # Sent by a task of its own: at the app's next ``await`` when the app's task called this,
        # at once when another task did (the serving task may be blocked for long).
        self._closer = asyncio.get_running_loop().create_task(self._flush_quietly())

    async def _flush_quietly(self) -> None:
        try:
            await self.flush()
        except Exception as exc:  # finish() hands it to the server (which then closes with 1011 itself)
            logger.debug("closing the websocket failed: %r", exc)
            self._close_error = exc

    async def flush(self) -> None:
        """Send a pending close (or handshake rejection)."""
        if self._state != 1:
            return
        self._state = 2
        status = self._close_status
        if self._phase == _NEW:
            self._phase = _CLOSED
            try:
                await deny_websocket(self._asgi_scope, self._receive, self._send, _deny_status(status))
            except (OSError, RuntimeError) as exc:  # the client left before the rejection
                logger.debug("websocket rejection failed: %r", exc)
            return
        self._phase = _CLOSED
        self._stop_watch()
        if not self._gone:
            code = _close_code(status)
            try:
                await self._send({"type": "websocket.close", "code": code})
            except (OSError, RuntimeError) as exc:
                logger.debug("websocket close failed: %r", exc)
            except Exception:
                # The server refused the code (servers/daphne.py: some accept only 1000 and
                # 3000-4999). For an app error (1011) let the server see the failure (it then
                # closes with 1011 itself), otherwise fall back to 1000.
                if code in (1000, 1011):
                    raise
                logger.debug("the server refused close code %d; closing with 1000", code)
                await self._send({"type": "websocket.close", "code": 1000})

    def _go_away(self, code: int) -> bool:
        """Close from the server side (shutdown): receivers get the close message, sends raise
        ``ProtocolClosed``. Returns whether there was anything to close."""
        if self._phase != _OPEN or self._state or self._gone:
            return False
        self._away = True
        self._close_status = code
        self._state = 1
        if self._ready is not None:
            self._ready.set()
        self._closer = asyncio.get_running_loop().create_task(self._flush_quietly())
        return True

    def _stop_watch(self) -> None:
        if self._sessions is not None:
            self._sessions.discard(self)
        w = self._watcher
        if w is not None:
            self._watcher = None  # no cycle: proto -> task -> its frame -> proto
            if not w.done():
                w.cancel()
        self._inbox.clear()
        room = self._room
        if room is not None:
            room.set()

    def _close_once(self) -> WebsocketMessage:
        if self._close_seen:
            raise ProtocolClosed("the websocket is closed")
        self._close_seen = True
        return _CLOSE_MESSAGE

    async def _receive_message(self) -> WebsocketMessage:
        if self._watcher is not None or self._receiving or self._state or self._phase != _OPEN or self._gone:
            return await self._receive_other()
        # Straight from the server (the common case where sends raise once the client left).
        self._receiving = True
        try:
            while True:
                message = await self._receive()
                kind = message["type"]
                if kind == "websocket.receive":
                    if self._state or self._phase == _CLOSED:  # closed meanwhile
                        return self._close_once()
                    data = message.get("bytes")
                    if data is not None:
                        return WebsocketMessage(_BYTES, data)
                    return WebsocketMessage(_STRING, message.get("text") or "")
                if kind == "websocket.disconnect":
                    break
        except Exception as exc:  # the server failed receive(): the client is as good as gone
            logger.debug("websocket receive failed: %r", exc)
        finally:
            self._receiving = False
            done = self._read_done
            if done is not None and not done.done():
                done.set_result(None)
        self._gone = True
        if self._ready is not None:
            self._ready.set()
        return self._close_once()

    async def _receive_other(self) -> WebsocketMessage:
        """``receive()`` when not straight from the server: misuse, closed, or through the watcher."""
        if self._phase == _NEW:
            raise ProtocolError("receive() before accept()")
        if self._watcher is None:
            if self._state or self._phase == _CLOSED or self._gone:
                return self._close_once()
            self._start_watch()  # a second receiver while one waits: the watcher shares out what arrives
        inbox = self._inbox
        ready = self._ready
        assert ready is not None
        while True:
            if self._state or self._phase == _CLOSED:  # the app closed
                return self._close_once()
            if inbox:
                message = inbox.popleft()
                self._inbox_size -= len(message.data)  # type: ignore[arg-type]
                if len(inbox) < _MAX_MESSAGES and self._inbox_size < _MAX_BYTES:
                    self._room.set()  # type: ignore[union-attr]
                return message
            if self._gone:
                return self._close_once()
            ready.clear()
            await ready.wait()

    async def _send_data(self, data: bytes | str) -> None:
        """Send one message: a binary frame for bytes, a text frame for str (checked by the transport)."""
        if self._phase != _OPEN or self._state:
            if self._phase == _NEW:
                raise ProtocolError("send before accept()")
            if self._gone or self._away:
                raise ProtocolClosed("the connection is closed")
            raise ProtocolError("send after close()")
        if self._gone:
            raise ProtocolClosed("the client disconnected")
        try:
            write = self._write_frame
            if write is None or not write(data):
                if type(data) is bytes:
                    await self._send({"type": "websocket.send", "bytes": data})
                else:
                    await self._send({"type": "websocket.send", "text": data})
        except (OSError, RuntimeError) as exc:  # some servers raise once the socket is gone
            self._gone = True
            if self._ready is not None:
                self._ready.set()
            raise ProtocolClosed("the client disconnected") from exc

    async def finish(self, error: BaseException | None) -> None:
        """After the app returned: reject or close whatever it left open."""
        closer = self._closer
        if closer is not None:
            self._closer = None
            await closer
            failed, self._close_error = self._close_error, None
            if failed is not None:
                raise failed
        if self._state == 1:
            await self.flush()
        elif self._phase == _NEW:
            # Returned or raised before accept: refused with 403 either way, as Granian does.
            self._phase = _CLOSED
            self._state = 2
            await deny_websocket(self._asgi_scope, self._receive, self._send, 403)
        elif self._phase == _OPEN and not self._state:
            self._close_status = 1011 if error else 1000
            self._state = 1
            await self.flush()
        self._stop_watch()


class WebsocketTransport:
    """What ``accept()`` returns: ``receive``, ``send_bytes``, ``send_str``.

    Like Granian's, the sends check their argument's type when called, before awaiting.
    """

    __slots__ = ("_proto",)

    def __init__(self, proto: WebsocketProtocol) -> None:
        self._proto = proto

    def receive(self) -> Coroutine[Any, Any, WebsocketMessage]:
        """Next message; ``kind == 0`` once when the connection closed, then ``ProtocolClosed``."""
        return self._proto._receive_message()

    def send_bytes(self, data: bytes) -> Coroutine[Any, Any, None]:
        """Send a binary frame (bytes, bytearray or memoryview)."""
        if type(data) is not bytes:
            data = check_bytes(data, "send_bytes")
        return self._proto._send_data(data)

    def send_str(self, data: str) -> Coroutine[Any, Any, None]:
        """Send a text frame."""
        if type(data) is not str:
            data = check_str(data, "send_str")
        return self._proto._send_data(data)


def close_websockets(sessions: set[WebsocketProtocol], code: int = 1012) -> int:
    """Close the open websockets in ``sessions`` with ``code`` (1012: service restart).

    For a shutdown that would otherwise wait for long-lived websockets: each app's pending
    ``receive()`` returns the close message and its sends raise ``ProtocolClosed``, so it can
    end. Returns how many connections were closed.
    """
    return sum(1 for proto in list(sessions) if proto._go_away(code))


async def serve_websocket(
    app: Callable[[Any, Any], Awaitable[Any]],
    scope: ASGIScope,
    receive: ASGIReceive,
    send: ASGISend,
    sessions: set[WebsocketProtocol] | None = None,
    accelerate: bool = True,
) -> None:
    """Run one RSGI websocket session over ASGI; ``sessions`` tracks it while open.

    ``accelerate``: the server's accelerators (``servers/``) may apply."""
    proto = WebsocketProtocol(scope, receive, send, sessions, accelerate)
    error: BaseException | None = None
    try:
        await app(proto.scope, proto)
    except Exception as exc:
        error = exc
        if not (isinstance(exc, ProtocolClosed) and proto._gone):
            proto.log_app_error(exc, "Exception")
    except BaseException as exc:
        if not contain(exc):  # the server (or the drain) cancelled this session: let it end so
            proto._stop_watch()
            raise
        error = exc  # SystemExit, KeyboardInterrupt, the app's own CancelledError: the app's failure
        proto.log_app_error(exc, type(exc).__name__)
    try:
        await proto.finish(error)
    except (OSError, RuntimeError) as exc:
        logger.debug("closing the websocket failed: %r", exc)
    finally:
        proto._stop_watch()
