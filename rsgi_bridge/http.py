"""The RSGI HTTP protocol on top of ASGI ``receive``/``send``."""

from __future__ import annotations

import asyncio
import os
import types
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

from .connection import (
    ASGIReceive,
    ASGIScope,
    ASGISend,
    Connection,
    Drive,
    as_coroutine,
    check_bytes,
    check_status,
    check_str,
    encode_headers,
    logger,
    uvicorn_owner,
)
from .errors import ProtocolClosed, ProtocolError
from .scope import Scope

__all__ = ["HTTPProtocol", "StreamTransport"]

# Response kinds.
_PLAIN, _FILE, _STREAM = 0, 1, 2
_EMPTY_500: dict[str, Any] = {"type": "http.response.start", "status": 500, "headers": [(b"content-length", b"0")]}
_NOT_FOUND_HEADERS = [(b"content-length", b"9")]
_END: dict[str, Any] = {"type": "http.response.body", "body": b"", "more_body": False}
_DONE: Any = object()
_COROUTINE = types.CoroutineType
# content-length headers by length, for the common small sizes
_LENGTHS: dict[int, tuple[bytes, bytes]] = {}


def _length_header(n: int) -> tuple[bytes, bytes]:
    header = _LENGTHS.get(n)
    if header is None:
        header = (b"content-length", str(n).encode())
        if len(_LENGTHS) < 4096:
            _LENGTHS[n] = header
    return header


class _Watch:
    """What noticing a departed client takes, made on first need: the task owning ``receive()``,
    the body it buffers meanwhile, and the events that connect it to the app."""

    __slots__ = ("buffer", "data", "drained", "gone", "read_done", "task")

    def __init__(self) -> None:
        self.task: asyncio.Task[None] | None = None  # the watcher; ``buffer`` is set while it owns receive()
        self.buffer: deque[bytes] | None = None
        self.data: asyncio.Event | None = None
        self.drained: asyncio.Event | None = None
        self.gone: asyncio.Event | None = None
        self.read_done: asyncio.Future[None] | None = None


class HTTPProtocol(Connection):
    """The ``protocol`` object an RSGI app receives for one HTTP request."""

    __slots__ = (
        "_body_taken",
        "_chunk_size",
        "_disconnected",
        "_error",
        "_more_body",
        "_reading",
        "_response",
        "_state",
        "_stream",
        "_task",
        "_w",
    )

    def __init__(
        self,
        scope: ASGIScope,
        receive: ASGIReceive,
        send: ASGISend,
        chunk_size: int = 65536,
        task: asyncio.Task[Any] | None = None,
    ) -> None:
        # Connection.__init__ inlined: this runs once per request.
        self._asgi_scope = scope
        self._receive = receive
        self._send = send
        self._rsgi_scope = None
        self._stepping = False
        # 0: no response yet; 1: set, not sent; 2: sending or sent; 3: complete.
        self._state = 0
        self._response: tuple[Any, ...] | None = None
        self._stream: StreamTransport | None = None  # the open (or ended) streamed response
        self._body_taken = False
        self._more_body = True
        self._disconnected = False
        self._error: Exception | None = None  # what the app raised
        self._reading = False  # a direct receive() for the body is in flight
        self._w: _Watch | None = None
        self._chunk_size = chunk_size
        self._task = task

    # -- request body ---------------------------------------------------------

    async def __call__(self) -> bytes:
        """Read the whole request body."""
        if self._body_taken:
            raise ProtocolError("the request body can be read only once")
        self._body_taken = True
        chunk = await self._next_chunk()
        if chunk is None:
            return b""
        if not self._more_body and self._w is None:
            return chunk
        parts = [chunk]
        while (chunk := await self._next_chunk()) is not None:
            parts.append(chunk)
        return b"".join(parts)

    def __aiter__(self) -> AsyncIterator[bytes]:
        if self._body_taken:
            raise ProtocolError("the request body can be read only once")
        self._body_taken = True
        return _BodyIterator(self)

    async def _next_chunk(self) -> bytes | None:
        """Next piece of the body, ``None`` at its end; ``ProtocolClosed`` if the client left."""
        w = self._w
        if w is None or w.buffer is None:  # no watcher: read straight from the server
            if not self._more_body:
                return None
            if self._disconnected:
                raise ProtocolClosed("the client disconnected")
            self._reading = True
            try:
                msg = await self._receive()
            finally:
                self._read_over()
            return self._took(msg)
        # a watcher owns receive(): take what it buffered
        buf, data, drained = w.buffer, w.data, w.drained
        assert data is not None and drained is not None
        while not buf:
            if not self._more_body:
                return None
            if self._disconnected:
                raise ProtocolClosed("the client disconnected")
            data.clear()
            await data.wait()
        chunk = buf.popleft()
        if not buf:
            drained.set()
        return chunk

    def _read_over(self) -> None:
        """A direct ``receive()`` for the body returned: a watcher waiting for it may start."""
        self._reading = False
        w = self._w
        if w is not None and w.read_done is not None and not w.read_done.done():
            w.read_done.set_result(None)

    def _took(self, msg: dict[str, Any]) -> bytes:
        """The body in a message of a direct ``receive()``; ``ProtocolClosed`` if it says the client left."""
        if msg["type"] == "http.request":
            self._more_body = more = msg.get("more_body", False)
            if not more and self._stream is not None and self._stream._open:
                self._stream._watch()
            return msg.get("body", b"")  # type: ignore[no-any-return]
        self._on_disconnect()
        raise ProtocolClosed("the client disconnected")

    def _on_disconnect(self) -> None:
        self._disconnected = True
        w = self._w
        if w is not None:
            if w.gone is not None:
                w.gone.set()
            if w.data is not None:
                w.data.set()

    def _watch(self) -> None:
        """Start the task that owns ``receive()`` to notice the client leaving."""
        w = self._w
        if w is None:
            w = self._w = _Watch()
        if w.task is None and not self._disconnected and self._state != 3:
            w.buffer = deque()
            w.data = asyncio.Event()
            w.drained = asyncio.Event()
            w.drained.set()
            w.task = asyncio.get_running_loop().create_task(self._watch_loop(w))

    async def _watch_loop(self, w: _Watch) -> None:
        try:
            if self._reading:  # a direct body read is in flight: let it finish first
                w.read_done = asyncio.get_running_loop().create_future()
                await w.read_done
            buf, data, drained = w.buffer, w.data, w.drained
            assert buf is not None and data is not None and drained is not None
            receive = self._receive
            while not self._disconnected:
                if self._more_body:
                    await drained.wait()  # backpressure: hold until the app took the last chunk
                msg = await receive()
                if msg["type"] == "http.request":
                    body = msg.get("body", b"")
                    if self._more_body:
                        if body:
                            buf.append(body)
                            drained.clear()
                        self._more_body = msg.get("more_body", False)
                    data.set()
                elif msg["type"] == "http.disconnect":
                    self._on_disconnect()
                    return
        finally:
            w.task = None  # else task -> its exception -> this frame -> w -> task: a cycle left to the GC

    async def client_disconnect(self) -> None:
        """Resolve when the client disconnects (safe to cancel)."""
        if self._disconnected:
            return
        w = self._w
        if w is None:
            w = self._w = _Watch()
        gone = w.gone
        if gone is None:
            gone = w.gone = asyncio.Event()
        self._watch()
        await gone.wait()

    # -- responses -------------------------------------------------------------

    def _set(self, response: tuple[Any, ...]) -> None:
        self._response = response
        self._state = 1
        if not self._stepping and self._task is not None:
            # Set outside a step of the app (from another task): the request task may be blocked, send it now.
            asyncio.get_running_loop().create_task(self.flush())

    def response_empty(self, status: int = 200, headers: Any = ()) -> None:
        """Send a response with no body."""
        if self._state:
            return
        self._set((_PLAIN, check_status(status), *encode_headers(headers), b""))

    def response_str(self, status: int = 200, headers: Any = (), body: str = "") -> None:
        """Send a str body, UTF-8 encoded."""
        if self._state:
            return
        self._set((_PLAIN, check_status(status), *encode_headers(headers), check_str(body, "response_str").encode()))

    def response_bytes(self, status: int = 200, headers: Any = (), body: Any = b"") -> None:
        """Send a bytes-like body."""
        if self._state:
            return
        if type(status) is not int or not 100 <= status <= 999:
            status = check_status(status)
        if type(body) is not bytes:
            body = check_bytes(body, "response_bytes")
        wire, has_length = encode_headers(headers)
        self._response = (_PLAIN, status, wire, has_length, body)  # as _set, inline
        self._state = 1
        if not self._stepping and self._task is not None:
            asyncio.get_running_loop().create_task(self.flush())

    def response_file(self, status: int, headers: Any, file: str | os.PathLike[str]) -> None:
        """Send a whole file; a file that cannot be opened gives a 404."""
        if self._state:
            return
        self._set((_FILE, check_status(status), *encode_headers(headers), _check_path(file), 0, None))

    def response_file_range(
        self, status: int, headers: Any, file: str | os.PathLike[str], start: int, end: int
    ) -> None:
        """Send bytes ``start`` (inclusive) to ``end`` (exclusive) of a file."""
        if self._state:
            return
        for name, v in (("start", start), ("end", end)):
            if type(v) is not int:
                raise TypeError(f"response_file_range {name} must be an int, not {type(v).__name__}")
        if start < 0:
            raise ValueError(f"response_file_range start {start} is negative")
        if start >= end:
            raise ValueError(f"response_file_range start {start} must be lower than end {end}")
        self._set((_FILE, check_status(status), *encode_headers(headers), _check_path(file), start, end))

    def response_stream(self, status: int = 200, headers: Any = ()) -> StreamTransport:
        """Start a streamed response; it ends when the app returns."""
        if self._state:
            raise ProtocolError("response_stream called after a response was already set")
        response = (_STREAM, check_status(status), *encode_headers(headers))
        transport = self._stream = StreamTransport(self)
        self._set(response)
        return transport

    def plain_start(self) -> dict[str, Any] | None:
        """The ``http.response.start`` message of a pending plain response the server takes as is, else None.

        The caller sends it, sets ``_state = 3``, sends the body (``_response[4]``) and hands an
        exception from either send to :meth:`plain_failed`. Other responses go through :meth:`flush`.
        """
        if self._state != 1 or self._stream is not None:
            return None
        response = self._response
        assert response is not None
        status = response[1]
        if response[0] != _PLAIN or not 200 <= status <= 599 or status == 204 or status == 304:
            return None
        self._state = 2
        headers = response[2]
        if not response[3]:  # no content-length from the app
            n = len(response[4])
            headers.append(_LENGTHS.get(n) or _length_header(n))
        return {"type": "http.response.start", "status": status, "headers": headers}

    async def plain_failed(self, exc: Exception) -> None:
        """A send of :meth:`plain_start`'s response raised ``exc``."""
        if self._state == 2:  # the start: the server refused the status or the headers
            await self._refused(self._response[1], exc)  # type: ignore[index]
        elif isinstance(exc, (OSError, RuntimeError)):  # the body: the server gave up on the connection
            logger.debug("send failed: %r", exc)
            self._on_disconnect()
        else:
            raise exc
        self._state = 3

    async def flush(self) -> None:
        """Hand the response that was set to the server."""
        start = self.plain_start()
        if start is not None:
            try:  # as RSGIBridge.__call__, which inlines this for the response set when the app returns
                await self._send(start)
                self._state = 3
                await self._send({"type": "http.response.body", "body": self._response[4]})  # type: ignore[index]
            except Exception as exc:
                await self.plain_failed(exc)
            return
        if self._state != 1:
            return
        self._state = 2
        response = self._response
        assert response is not None
        kind = response[0]
        status = response[1]
        headers = response[2]
        if kind == _PLAIN:  # a bodiless status, or one _start refuses
            body = response[4]
            if status == 204 or status == 304:  # bodiless statuses: no body, no length (as Granian)
                body = b""
            elif not response[3]:  # no content-length from the app
                headers.append(_LENGTHS.get(len(body)) or _length_header(len(body)))
            if await self._start(status, headers):
                try:
                    await self._send({"type": "http.response.body", "body": body})
                except (OSError, RuntimeError) as exc:  # the server gave up on the connection
                    logger.debug("send failed: %r", exc)
                    self._on_disconnect()
            self._state = 3
        elif kind == _STREAM:
            if await self._start(status, headers) and self._stream is not None:
                self._stream._watch()  # sends to a departed client are dropped silently: watch for it
        else:
            try:
                await self._send_file(status, headers, *response[4:])
            except (OSError, RuntimeError) as exc:
                logger.debug("sending the file failed: %r", exc)
                self._on_disconnect()
            self._state = 3

    async def _start(self, status: int, headers: list[tuple[bytes, bytes]]) -> bool:
        """Send ``http.response.start``; if the server refuses it, answer a clean 500 instead."""
        if status > 599 and uvicorn_owner(self._send, "http") is not None:
            # uvicorn's status tables stop at 599 and it fails *after* marking the response started.
            logger.error("uvicorn cannot send response status %s (it supports 100-599): answering 500", status)
        elif status < 200:
            # 1xx are interim statuses, never a final response: Granian answers 500 too.
            logger.error("response status %s is informational (1xx), not a final response: answering 500", status)
        else:
            try:
                await self._send({"type": "http.response.start", "status": status, "headers": headers})
                return True
            except Exception as exc:
                return await self._refused(status, exc)
        return await self._answer_500()

    async def _refused(self, status: int, exc: Exception) -> bool:
        """The server raised ``exc`` on ``http.response.start``: log it, answer a 500; always False."""
        logger.error("the ASGI server refused the response status %s or its headers: %r", status, exc)
        return await self._answer_500()

    async def _answer_500(self) -> bool:
        """Answer an empty 500 in place of a response that could not start; always False."""
        self._end_stream()
        try:
            await self._send(_EMPTY_500)
            await self._send(_END)
        except Exception as exc:
            logger.debug("sending the 500 failed too: %r", exc)
            self._on_disconnect()
        return False

    async def _send_file(
        self, status: int, headers: list[tuple[bytes, bytes]], path: str, start: int, end: int | None
    ) -> None:
        loop = asyncio.get_running_loop()
        send = self._send
        pathsend = end is None and "http.response.pathsend" in (self._asgi_scope.get("extensions") or ())
        try:
            if pathsend:
                f = None
                path = await loop.run_in_executor(None, _check_file, path)
            else:
                f = await loop.run_in_executor(None, _open_file, path, start)
        except OSError as exc:
            logger.info("cannot open file %s: %s", path, exc)
            await send({"type": "http.response.start", "status": 404, "headers": list(_NOT_FOUND_HEADERS)})
            await send({"type": "http.response.body", "body": b"Not found"})
            return
        if f is None:
            if await self._start(status, headers):
                await send({"type": "http.response.pathsend", "path": path})
            return
        try:
            if not await self._start(status, headers):
                return
            left = None if end is None else end - start
            size = self._chunk_size
            read = f.read
            while not self._disconnected:
                n = size if left is None else min(size, left)
                chunk = await loop.run_in_executor(None, read, n) if n else b""
                if left is not None:
                    left -= len(chunk)
                if not chunk or left == 0:
                    await send({"type": "http.response.body", "body": chunk})
                    return
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        finally:
            f.close()

    def _end_stream(self) -> None:
        """The stream (if any) takes no more data and is no longer the response."""
        stream = self._stream
        if stream is not None:
            stream._open = False
            self._stream = None

    def begin(self, app: Callable[[Any, Any], Awaitable[Any]]) -> Drive | None:
        """Call the RSGI app and run its first step here; what is left of it, if anything, to await.

        An app that answers without awaiting thus needs no :class:`Drive`.
        """
        scope = self._rsgi_scope = Scope(self._asgi_scope, "http")  # type: ignore[arg-type]
        coro = app(scope, self)
        if type(coro) is not _COROUTINE:
            coro = as_coroutine(coro)
        self._stepping = True
        try:
            first = coro.send(None)
        except StopIteration:
            return None
        finally:
            self._stepping = False
        return Drive(coro, self, first)

    def failed(self, exc: Exception) -> None:
        """The app raised ``exc``: log it; :meth:`finish` answers accordingly."""
        self._error = exc
        self.log_app_error(exc, "Exception")

    async def finish(self) -> None:
        """Complete the exchange after the app returned or raised."""
        exc = self._error
        state = self._state
        if state == 1:
            if exc is not None and self._stream is not None:
                # The app failed before its stream's headers left: a clean 500 instead.
                self._end_stream()
                state = self._state = 0
            else:
                await self.flush()
                state = self._state
        stream = self._stream
        if stream is not None:
            stream._open = False
            if exc is not None and not _is_daphne(self._send):
                raise exc  # abort: the client must not see a clean end of body
            # daphne cannot abort a started response (re-raising breaks its application checker
            # for the rest of the process): there the body ends, as under Granian.
            if not self._disconnected:
                await self._send(_END)
        elif state == 0:
            if exc is None:
                logger.error(
                    "RSGI app returned without a response for %s %s",
                    self._asgi_scope.get("method"),
                    self._asgi_scope.get("path"),
                )
            await self._send(_EMPTY_500)
            await self._send(_END)
        self._state = 3

    def close(self) -> None:
        """Release what the request held: the watcher task, disconnect waiters, the stream.

        Also breaks the reference cycles these make (transport <-> protocol, watcher task -> its
        frame -> watcher state -> task), so the request's objects go when it ends, not at the next
        garbage collection.
        """
        w = self._w
        if w is not None:  # kept: a later client_disconnect() finds ``gone`` set
            task, w.task = w.task, None  # the task's frame holds w: no way back to the task
            if task is not None and not task.done():
                task.cancel()
            if w.gone is not None:
                w.gone.set()
        stream = self._stream
        if stream is not None:
            stream._open = False
            self._stream = None


class _BodyIterator:
    """``async for chunk in protocol``: the non-empty body chunks.

    A class, not an async generator: the loop's async-generator hooks cost a WeakSet entry per request.
    """

    __slots__ = ("_proto",)

    def __init__(self, proto: HTTPProtocol) -> None:
        self._proto = proto

    def __aiter__(self) -> _BodyIterator:
        return self

    async def __anext__(self) -> bytes:
        proto = self._proto
        while True:
            if proto._w is None:  # no watcher: read straight from the server, as _next_chunk (inline: hot path)
                if not proto._more_body or proto._disconnected:
                    raise StopAsyncIteration
                proto._reading = True
                try:
                    msg = await proto._receive()
                finally:
                    proto._read_over()
                try:
                    chunk = proto._took(msg)
                except ProtocolClosed:  # as Granian: iteration ends with what arrived; ``await protocol()`` raises
                    raise StopAsyncIteration from None
            else:
                try:
                    chunk = await proto._next_chunk()  # type: ignore[assignment]
                except ProtocolClosed:
                    raise StopAsyncIteration from None
                if chunk is None:
                    raise StopAsyncIteration
            if chunk:
                return chunk


class StreamTransport:
    """The transport ``response_stream`` returns."""

    __slots__ = ("_closing", "_open", "_proto", "_sends")

    def __init__(self, proto: HTTPProtocol) -> None:
        self._proto = proto
        self._open = True  # False once the app returned (or the stream gave way to a 500)
        self._closing: Any = None  # see _watch
        self._sends = 0

    # Like Granian's, the sends check their argument when called, before awaiting.

    def send_bytes(self, data: Any) -> Coroutine[Any, Any, None]:
        """Send a bytes-like chunk."""
        return self._write(data if type(data) is bytes else check_bytes(data, "send_bytes"))

    def send_str(self, data: str) -> Coroutine[Any, Any, None]:
        """Send a str chunk, UTF-8 encoded."""
        return self._write(check_str(data, "send_str").encode())

    def _watch(self) -> None:
        """Notice the client leaving while the stream is open.

        On uvicorn the socket says it (its transport's ``is_closing()``, true as soon as a write
        failed or the client closed): each send checks it, no task needed. Other servers only say
        it through ``receive()``: start the watcher.
        """
        closing = self._closing
        if closing is None:
            closing = self._closing = _closing_check(self._proto._send)
        if closing is False:
            self._proto._watch()

    async def _write(self, data: bytes) -> None:
        if not self._open:
            raise ProtocolError("the stream is over: the app already returned")
        proto = self._proto
        if proto._state == 1:  # the first chunk: the headers leave first
            response = proto._response
            assert response is not None
            status = response[1]
            if response[0] == _STREAM and 200 <= status <= 599:  # as flush(), inline: one coroutine less
                proto._state = 2
                try:
                    await proto._send({"type": "http.response.start", "status": status, "headers": response[2]})
                except Exception as exc:
                    await proto._refused(status, exc)
                else:
                    self._watch()
            else:
                await proto.flush()
        closing = self._closing
        if proto._disconnected or (closing and closing()):
            proto._on_disconnect()
            raise ProtocolClosed("the client disconnected")
        if data:
            await proto._send({"type": "http.response.body", "body": data, "more_body": True})
            if closing is False:
                self._sends += 1
                if not self._sends & 15:
                    # Once the socket broke, hypercorn's sends return without suspending: yield now
                    # and then so the watcher can see the client leave, else the app spins and
                    # starves the whole server.
                    await asyncio.sleep(0)


def _closing_check(send: Any) -> Any:
    """``is_closing`` of the socket behind uvicorn's ``send``, else False."""
    closing = getattr(getattr(uvicorn_owner(send, "http"), "transport", None), "is_closing", None)
    return closing if callable(closing) else False


def _is_daphne(send: Any) -> bool:
    owner = getattr(getattr(send, "func", None), "__self__", None)  # daphne: partial(server.handle_reply, ...)
    return owner is not None and type(owner).__module__.startswith("daphne.")


def _check_path(file: object) -> str:
    if isinstance(file, str):
        return file
    if isinstance(file, os.PathLike):
        path = os.fspath(file)
        if isinstance(path, str):
            return path
    raise TypeError(f"file path must be str or os.PathLike, not {type(file).__name__}")


def _check_file(path: str) -> str:
    path = os.path.abspath(path)
    with open(path, "rb"):  # same errors as a real open (missing, directory, permissions)
        pass
    return path


def _open_file(path: str, start: int) -> Any:
    f = open(path, "rb")  # noqa: SIM115 - closed by the caller (a directory raises here)
    if start:
        f.seek(start)
    return f
