"""The RSGI HTTP exchange on top of ASGI ``receive``/``send``.

One :class:`Exchange` per request holds that request's state. The app receives an
:class:`HTTPProtocol`: a facade with the RSGI members only. The app's first ``response_*`` call
commits a :class:`~rsgi_bridge.response.Response` record (later ones are ignored, as Granian).
Delivery moves the committed response to ``send``: inline once the app has returned, or, if the
app is still running at its next suspension, from a task of its own, so a file or a stream's
headers never move inside the app's awaits. Where a server's accelerator accepts it
(``servers/``), a plain response, or a stream's start, is written inside the ``response_*`` call
itself, as Granian sends it (a file's start and all its pieces but the last, once the file is open,
go through the same stream writers). A streamed body is sent by the app's own ``send_bytes``/``send_str``
and ends when the app returned and released the transport. The request ends when the app
returned and the committed response was delivered (or the client left). Nothing the server
raises on ``send`` (or an accelerator's write) reaches the app; every message is a new dict.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from enum import Enum
from typing import Any, BinaryIO

from .connection import ASGIReceive, ASGIScope, ASGISend, contain, log_app_error, logger
from .errors import ProtocolClosed, ProtocolError
from .response import (
    Head,
    Kind,
    Response,
    check_bytes,
    check_path,
    check_range,
    check_status,
    check_str,
    encode_head,
)
from .scope import Scope
from .servers import ChunkWriter, DepartedCheck, quirks_of

__all__ = ["Exchange", "HTTPProtocol", "StreamTransport"]

# Request body the bridge holds for the app when it reads ahead of it (to notice the client
# leaving, or to keep the body readable after the response on servers that drop it then).
_BUFFER_MAX = 1024 * 1024
# A stream yields to the loop once every this many sends (before the 17th, the 33rd, ...: a stream that
# ends sooner has no use for it). Once the socket broke, some servers' sends never suspend
# (hypercorn; uvicorn over TLS, whose transport says it is closing only from a loop callback): the
# task reading ``receive()``, or the server's own departed check, then still sees the client leave,
# and the stream cannot hold the loop for ever.
_YIELD_EVERY = 16
_BODILESS = (204, 304)


class Phase(Enum):
    """Where the response of an exchange stands."""

    OPEN = "no response yet"
    COMMITTED = "committed, not yet sent"
    STARTING = "its start being sent"
    STARTED = "started, body under way"
    DONE = "over"


# The members as module globals: on Python 3.11 ``Phase.OPEN`` is a class-attribute lookup through
# the enum's metaclass that costs ~25 times a global's (timeit), and the hot path reads them often.
OPEN, COMMITTED, STARTING, STARTED, DONE = Phase
PLAIN, FILE, STREAM = Kind


class Exchange:
    """One HTTP request: the app's protocol, the committed response and its delivery."""

    __slots__ = (
        "_accelerate",
        "_delivery",
        "_departed",
        "_inbound",
        "_length",
        "_loop",
        "_no_body",
        "_over",
        "_receive",
        "_released",
        "_response",
        "_running",
        "_scope",
        "_send",
        "_sends",
        "_sent",
        "_started",
        "_stream",
        "_write_chunk",
        "chunk_size",
        "is_head",
        "latin1_headers",
        "phase",
    )

    def __init__(
        self,
        scope: ASGIScope,
        receive: ASGIReceive,
        send: ASGISend,
        task: asyncio.Task[Any] | None = None,
        chunk_size: int = 65536,
        latin1_headers: bool = False,
        accelerate: bool = True,
    ) -> None:
        self._scope = scope
        self._accelerate = accelerate  # the server's accelerators may deliver (servers/)
        self._send = send
        self._receive = receive
        self._loop = task.get_loop() if task is not None else asyncio.get_running_loop()
        self._inbound: Inbound | None = None  # made on first use (see inbound)
        self._no_body = False  # the server told the request has no body (an accelerator, servers/)
        self._over = False  # the request is over (_close ran)
        self.is_head = scope.get("method") == "HEAD"  # no body bytes go out, no file is read
        self.chunk_size = chunk_size
        self.latin1_headers = latin1_headers
        self.phase = OPEN
        self._response: Response | None = None
        self._running = False  # the app's handler is running
        self._delivery: asyncio.Task[None] | None = None  # delivering while the app runs on
        self._stream: weakref.ref[StreamTransport] | None = None  # the app's stream transport
        self._released: asyncio.Event | None = None  # set when that transport is gone
        self._started: asyncio.Event | None = None  # a task waiting for the stream's start (made by that task)
        self._length: int | None = None  # a started stream's content-length
        self._sent = 0  # stream body bytes sent (counted against that content-length)
        self._sends = 0  # stream sends
        self._departed: DepartedCheck | None = None  # the server's own departed-client check (servers/)
        self._write_chunk: ChunkWriter | None = None  # writes a stream's chunks, when an accelerator started it

    @property
    def inbound(self) -> Inbound:
        """The request side: the body and the client leaving. Made on first use: a request whose app never
        reads its body needs none (~2.5k instructions less per GET, benchmarks/instructions.py)."""
        inbound = self._inbound
        if inbound is None:
            inbound = self._inbound = Inbound(self._receive)
            if self._no_body:
                inbound.more = False
            if self._over:
                inbound.close()
        return inbound

    # -- the request -----------------------------------------------------------------------

    async def run(self, app: Callable[[Any, Any], Awaitable[Any]]) -> None:
        """Call the RSGI app, then complete the exchange; app errors are logged, never raised."""
        error: BaseException | None = None
        self._running = True
        try:
            await app(Scope(self._scope, "http", self.latin1_headers), HTTPProtocol(self))  # type: ignore[arg-type]
        except BaseException as exc:  # every app error is contained: a 500, logged
            if not contain(exc):  # the server cancelled the request
                self._running = False
                self._close()
                raise
            error = exc
            log_app_error(self._scope, exc)
        self._running = False
        if self._delivery is not None:
            self.inbound.wake()  # a delivery task keeping the body for the app stops waiting for it
        try:
            phase = self.phase
            if phase is DONE and self._delivery is None:
                pass  # delivered already (by an accelerator, inside the app's response_* call)
            elif phase is COMMITTED and self._response.kind is PLAIN:  # type: ignore[union-attr]
                # One coroutine level less than through _complete and _deliver (benchmarks/instructions.py).
                await self._deliver_plain(self._response)  # type: ignore[arg-type]
            else:
                await self._complete(error)
        finally:
            error = None  # else error -> its traceback -> this frame -> error: a reference cycle
            self._close()

    async def _complete(self, error: BaseException | None) -> None:
        """The app returned (or raised ``error``): deliver what it committed, or answer 500."""
        failed = error is not None
        if self.phase is OPEN:
            if not failed:
                s = self._scope
                logger.error("RSGI app returned without a response for %s %s", s.get("method"), s.get("path"))
            await self._answer_500()
            return
        delivery = self._delivery
        if delivery is not None:
            await delivery  # cancelling the request task cancels it too
        response = self._response
        assert response is not None
        if response.kind is not STREAM:
            if self.phase is COMMITTED:
                await self._deliver()
            return
        if self.phase is COMMITTED and failed:  # failed before its stream's headers left: a clean 500
            await self._answer_500()
            return
        if self.phase is not STARTED:  # the app's sends started it already in the common case
            await self._start_stream()
            if self.phase is not STARTED:
                return
        if error is not None:
            await self._abort(error)
            return
        ref = self._stream
        if ref is not None and ref() is not None:  # the app left its transport to someone else
            await self._stream_released()
        if self.phase is STARTED and (self._inbound is None or not self._inbound.gone):  # (none: nothing saw it leave)
            self.phase = DONE
            try:  # inline, not through _send_body: once per stream (benchmarks/instructions.py)
                await self._send({"type": "http.response.body", "body": b""})
            except Exception as exc:
                self._send_failed(exc, "http.response.body")
        self.phase = DONE

    def _close(self) -> None:
        """The request is over: stop delivery and the reader task, release disconnect waiters."""
        self.phase = DONE  # later response_* calls are ignored, stream sends raise ProtocolClosed
        delivery, self._delivery = self._delivery, None
        if delivery is not None and not delivery.done():
            delivery.cancel()
        self._stream = None  # the weak reference's callback holds self: no cycle left behind
        self._over = True
        if self._inbound is not None:
            self._inbound.close()

    # -- responses, called by the facade -------------------------------------------------

    def commit(self, response: Response) -> None:
        """Make ``response`` the exchange's response; it leaves at the app's next suspension at the latest."""
        self._response = response
        self.phase = COMMITTED
        if self._running:
            self._loop.call_soon(self._on_suspend)

    def commit_plain(self, status: Any, head: Head, body: bytes) -> None:
        """Check and commit a PLAIN response (``response_empty``/``_str``/``_bytes``).

        A content-length must match the body (HEAD, 204, 304 excepted). The checks' common outcome
        is tested inline, and the commit is :meth:`commit`'s body: two calls less per response
        (benchmarks/instructions.py). Where the server has an accelerator whose guards pass, the
        response leaves at once, inside this call (as on Granian), with no delivery to schedule.
        """
        if type(status) is not int or not 200 <= status <= 599:
            status = check_status(status)
        length = head.length
        if length is not None and length != len(body) and status not in _BODILESS and not self.is_head:
            raise ValueError(f"content-length {length} does not match the body's {len(body)} bytes")
        response = self._response = Response(PLAIN, status, head, body)
        self.phase = COMMITTED
        if self._accelerate and not self.is_head and self._accelerated(response):
            return
        if self._running:
            self._loop.call_soon(self._on_suspend)

    def open_stream(self, status: int, head: Head) -> StreamTransport:
        """Commit a STREAM response; its transport. Where the server has an accelerator whose guards
        pass, the stream's start leaves at once, inside this call (as on Granian)."""
        transport = StreamTransport(self)
        self._stream = weakref.ref(transport, self._on_release)
        response = self._response = Response(STREAM, status, head)
        if self._accelerate and not self.is_head and self._accelerated_start(response):
            return transport
        self.commit(response)
        return transport

    def _on_suspend(self) -> None:
        """First loop turn after a commit: if the app is still running, deliver from a task of its own."""
        if self.phase is COMMITTED and self._running:
            self._delivery = self._loop.create_task(self._deliver())

    # -- delivery --------------------------------------------------------------------------

    async def _deliver(self) -> None:
        response = self._response
        assert response is not None
        if response.kind is PLAIN:
            await self._deliver_plain(response)
        elif response.kind is FILE:
            await self._deliver_file(response)
        else:
            await self._start_stream()

    async def _deliver_plain(self, r: Response) -> None:
        if self.phase is not COMMITTED:  # delivered already (from the request task or the delivery task)
            return
        status = r.status
        if not 200 <= status <= 599 and not self._startable(status):
            await self._answer_500()
            return
        if self._accelerate and not self.is_head and self._accelerated(r):
            return
        head = r.head
        headers = list(r.head.headers)
        body = r.body
        is_head = self.is_head
        if status in _BODILESS:  # no body and no length (as Granian)
            body = b""
        elif head.length is None and not head.chunked and (body or not is_head):
            headers.append((b"content-length", str(len(body)).encode()))
        if is_head:
            body = b""
        self.phase = DONE
        send = self._send  # the sends inline, not through _send_start/_send_last: this is the hot path
        try:
            await send({"type": "http.response.start", "status": status, "headers": headers})
        except Exception as exc:
            logger.error("the ASGI server refused the response status %s or its headers: %r", status, exc)
            await self._answer_500()
            return
        if self._running:
            await self._keep_body()  # as _send_last
        try:
            await send({"type": "http.response.body", "body": body})
        except Exception as exc:
            self._send_failed(exc, "http.response.body")

    def _accelerated(self, r: Response) -> bool:
        """Deliver PLAIN ``r`` through the server's accelerator, if it has one and its guards pass.

        Whether it did; if not, nothing was sent and the generic path delivers ``r``. A server error
        while writing ends the exchange as on the generic path (logged, never raised). While the app
        runs, the request body must be read (or, unread, the server must hold none): the generic path
        takes in what is left first (:meth:`_keep_body`).
        """
        write = quirks_of(self._send).plain
        if write is None:
            return False
        inbound = self._inbound
        unread = self._receive if self._running and inbound is None else None
        if self._running and inbound is not None and inbound.more:
            return False
        try:
            if not write(self._send, r, unread):
                return False
        except Exception as exc:
            self._send_failed(exc, "http.response (accelerated)")
            return True
        self.phase = DONE
        if unread is not None:
            self._no_body = True
        return True

    def _accelerated_start(self, r: Response) -> bool:
        """Write the start of ``r`` (a stream's or a file's) through the server's accelerator, if it has one
        and its guards pass; its chunks then go through the accelerator's chunk writer where it can.

        Whether it did; if not, nothing was sent and the generic path starts ``r``. A server error
        while writing ends the exchange (logged, never raised; True): part of the start may be on
        the wire, so no 500 follows.
        """
        quirks = quirks_of(self._send)
        start = quirks.stream_start
        if start is None:
            return False
        try:
            if not start(self._send, r):
                return False
        except Exception as exc:  # the write failed: the exchange is over, stream sends raise ProtocolClosed
            self._send_failed(exc, "http.response.start (accelerated)")
            return True
        self._length = r.head.length
        self._write_chunk = quirks.stream_chunk
        self.phase = STARTED
        return True

    async def _deliver_file(self, r: Response) -> None:
        if self.phase is not COMMITTED:  # delivered already
            return
        loop = self._loop
        self.phase = STARTING
        try:
            f, size = await loop.run_in_executor(None, _open_file, r.path, r.start)
        except OSError as exc:
            logger.info("cannot open file %s: %s", r.path, exc)
            self.phase = DONE
            if await self._send_start(404, [(b"content-length", b"9")]):
                await self._send_body(b"" if self.is_head else b"Not found", False)
            return
        try:
            end = size if r.end is None else min(r.end, size)
            left = max(0, end - r.start)
            if r.head.length is not None and r.head.length != left and not self.is_head:
                logger.error(
                    "file response for %s: content-length %s does not match the %s bytes to send: answering 500",
                    r.path,
                    r.head.length,
                    left,
                )
                await self._answer_500()
                return
            if not self._startable(r.status):
                await self._answer_500()
                return
            bodiless = self.is_head or r.status in _BODILESS  # no body, and the file is not read
            pathsend = r.end is None and "http.response.pathsend" in (self._scope.get("extensions") or ())
            if bodiless or pathsend or not self._accelerate or not self._accelerated_start(r):
                if not await self._send_start(r.status, list(r.head.headers)):
                    return
                self.phase = STARTED
            elif self.phase is not STARTED:  # the accelerated start failed: over
                return
            if bodiless:
                self.phase = DONE
                await self._send_body(b"", False)
                return
            if pathsend:
                self.phase = DONE
                await self._send_message({"type": "http.response.pathsend", "path": os.path.abspath(r.path)})
                return
            self._watch_departure()  # the client leaving stops the transfer
            read = f.read
            chunk = b""  # the last one (none, for an empty file or range)
            while left > 0:
                if self._client_left():
                    await asyncio.sleep(0)  # as write(): the server learns of it first, from a loop callback
                    return
                try:
                    chunk = await loop.run_in_executor(None, read, min(self.chunk_size, left))
                    if not chunk:
                        raise OSError(f"{r.path} ended {left} bytes early (it shrank while being sent)")
                except OSError as exc:  # the client must not take the truncated body for the whole file
                    logger.error("reading the file of a response failed after it started: %r", exc)
                    await self._abort(exc)
                    return
                left -= len(chunk)
                if left <= 0:
                    break
                if not await self._send_chunk(chunk):
                    return
            self.phase = DONE
            await self._send_last(chunk)
        finally:
            self.phase = DONE
            f.close()

    async def _start_stream(self) -> None:
        """Send the stream's start, once, whichever task comes first; the others wait for it."""
        if self.phase is STARTING:
            if self._started is None:
                self._started = asyncio.Event()
            await self._started.wait()
            return
        if self.phase is not COMMITTED:
            return
        r = self._response
        assert r is not None
        self.phase = STARTING
        try:
            if not self._startable(r.status):
                await self._answer_500()
            elif await self._send_start(r.status, list(r.head.headers)):
                self._length = r.head.length
                self.phase = STARTED
        finally:
            if self.phase is STARTING:  # cancelled while the start was on its way: the response is over
                self.phase = DONE
            if self._started is not None:
                self._started.set()

    async def write(self, data: bytes) -> None:
        """One chunk of a streamed response, from the app's transport."""
        sends = self._sends
        if sends and not sends % _YIELD_EVERY:  # before the checks below, which the loop turn may inform
            await asyncio.sleep(0)
        if self.phase is not STARTED:
            await self._start_stream()
            if self.phase is not STARTED:
                gone = self._inbound is not None and self._inbound.gone
                raise ProtocolClosed("the client disconnected" if gone else "the response is over")
        inbound = self._inbound  # (none made yet: nothing has seen the client leave)
        if inbound is not None and inbound.gone:
            raise ProtocolClosed("the client disconnected")
        if not data:
            return
        length = self._length
        if length is not None:
            sent = self._sent = self._sent + len(data)
            if sent > length:
                raise ValueError(f"the stream's body exceeds its content-length of {length} bytes")
        if self.is_head:
            return
        sends = self._sends = self._sends + 1
        departed = self._departed
        if sends == 2:
            # Sends to a departed client are dropped silently: from the second send on, the server's
            # own state tells at each send (an accelerator, servers/), or else a reader task watches
            # for it (a stream of one send, like an echo, ends before it could matter; the task costs
            # ~50k instructions per 1 MiB stream, benchmarks/instructions.py).
            departed = self._watch_departure()
        if departed is not None and departed():
            self.inbound.left()
            # One loop turn first: the server learns of the lost connection from a loop callback
            # (uvicorn's connection_lost); an app returning at once would otherwise be taken for one
            # that left its response unfinished (uvicorn logs an error for it).
            await asyncio.sleep(0)
            raise ProtocolClosed("the client disconnected")
        try:  # the send inline, not through _send_body: once per chunk
            write_chunk = self._write_chunk
            if write_chunk is None or not write_chunk(self._send, data):
                await self._send({"type": "http.response.body", "body": data, "more_body": True})
        except Exception as exc:
            self._send_failed(exc, "http.response.body")
            raise ProtocolClosed("the server gave up on the response") from None

    def _watch_departure(self) -> DepartedCheck | None:
        """From now on, notice the client leaving: by the server's own check (an accelerator, servers/),
        called at each send, or else by a reader task watching ``receive()``. That check, or None."""
        probe = quirks_of(self._send, self._accelerate).departed
        departed = self._departed = probe(self._send) if probe is not None else None
        if departed is None:
            self.inbound.watch()
        return departed

    def _client_left(self) -> bool:
        """Whether the client is known to have left (the reader task saw it, or the server's check tells)."""
        inbound = self._inbound
        if inbound is not None and inbound.gone:
            return True
        departed = self._departed
        if departed is not None and departed():
            self.inbound.left()
            return True
        return False

    async def _send_chunk(self, data: bytes) -> bool:
        """A body chunk, more to come: through the accelerator's chunk writer, else ``send``. Whether it went."""
        try:
            write_chunk = self._write_chunk
            if write_chunk is None or not write_chunk(self._send, data):
                await self._send({"type": "http.response.body", "body": data, "more_body": True})
            return True
        except Exception as exc:
            self._send_failed(exc, "http.response.body")
            return False

    def _on_release(self, ref: object) -> None:
        """The app's stream transport was freed (may run in any thread)."""
        released = self._released
        if released is not None:
            self._loop.call_soon_threadsafe(released.set)

    async def _stream_released(self) -> None:
        """Wait until no one holds the stream transport any more (or the client left)."""
        ref = self._stream
        if ref is None or ref() is None:
            return
        released = self._released = asyncio.Event()
        if ref() is None:
            return
        gone = self.inbound.departed()
        waiters = {self._loop.create_task(released.wait()), self._loop.create_task(gone)}
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()

    async def _abort(self, error: BaseException) -> None:
        """The app failed with ``error`` after its response started: abort the response, where the server can.

        Raising is ASGI's only way to abort: an ``Exception`` is raised again as it is (the server and
        error reporters such as Sentry see the app's own exception, once); any other ``BaseException``
        as a ``ResponseAborted`` from it, so no ``SystemExit`` reaches the server.
        """
        self.phase = DONE
        if self.inbound.gone:
            return
        if quirks_of(self._send).aborts:
            if isinstance(error, Exception):
                raise error
            raise ResponseAborted(
                "the RSGI app failed after its response started: the response is cut short"
            ) from error
        await self._send_body(b"", False)

    # -- sending -----------------------------------------------------------------------------

    def _startable(self, status: int) -> bool:
        """Whether ``status`` can be a final response on this server (else: log, 500)."""
        if status < 200:
            logger.error("response status %s is informational (1xx), not a final response: answering 500", status)
            return False
        limit = quirks_of(self._send).max_status if status > 599 else 999
        if status > limit:
            logger.error("the ASGI server cannot send response status %s (it supports up to %s): answering 500",
                         status, limit)  # fmt: skip
            return False
        return True

    async def _send_start(self, status: int, headers: list[tuple[bytes, bytes]]) -> bool:
        """Send ``http.response.start``; if the server refuses it, answer a clean 500. Whether it went."""
        try:
            await self._send({"type": "http.response.start", "status": status, "headers": headers})
            return True
        except Exception as exc:
            logger.error("the ASGI server refused the response status %s or its headers: %r", status, exc)
        await self._answer_500()
        return False

    async def _send_last(self, body: bytes) -> None:
        """The final body message (see :meth:`_keep_body`)."""
        if self._running:
            await self._keep_body()
        await self._send_body(body, False)

    async def _keep_body(self) -> None:
        """Before the last message of a response while the app runs on: on a server whose ``receive()``
        drops the request body once the response is complete (uvicorn), take the rest of the body in
        first, so the app can still read it (as on Granian). Bounded: until the body is in, 1 MiB of it
        is held, the client left, or the app returned."""
        inbound = self.inbound
        if inbound.more and not quirks_of(self._receive).body_after_response:
            while self._running and inbound.wants_more():
                await inbound.arrival()

    async def _send_body(self, body: bytes, more: bool) -> bool:
        if more:
            return await self._send_message({"type": "http.response.body", "body": body, "more_body": True})
        return await self._send_message({"type": "http.response.body", "body": body})

    async def _send_message(self, message: dict[str, Any]) -> bool:
        """Send ``message``; a server error ends the exchange, logged. Whether it went."""
        try:
            await self._send(message)
            return True
        except Exception as exc:
            self._send_failed(exc, message["type"])
            return False

    def _send_failed(self, exc: Exception, what: str) -> None:
        """The server raised ``exc`` sending a ``what`` message: the exchange is over."""
        logger.warning("the ASGI server failed sending the response (%s): %r", what, exc)
        self.phase = DONE
        self.inbound.left()

    async def _answer_500(self) -> None:
        """An empty 500 in place of a response that could not be sent."""
        self.phase = DONE
        try:
            await self._send({"type": "http.response.start", "status": 500, "headers": [(b"content-length", b"0")]})
            await self._send({"type": "http.response.body", "body": b""})
        except Exception as exc:
            logger.debug("sending the 500 failed too: %r", exc)


class ResponseAborted(RuntimeError):
    """Raised to the ASGI server to cut short a response whose app failed after it started."""


class Inbound:
    """The request side of an exchange: the body from ``receive()``, and the client leaving.

    The app reads the body straight from ``receive()`` until something else needs it: noticing
    the client leave (``client_disconnect()``, a file or stream response under way where the server
    cannot tell, ``Exchange._watch_departure``) or keeping
    the body for the app past the response. Then a reader task owns ``receive()``, holds up to
    ``_BUFFER_MAX`` bytes of body for the app, and sees the ``http.disconnect``.
    """

    __slots__ = (
        "_arrived",
        "_buffer",
        "_buffered",
        "_closed",
        "_departed",
        "_read_done",
        "_reader",
        "_reading",
        "_receive",
        "_room",
        "gone",
        "more",
        "taken",
    )

    def __init__(self, receive: ASGIReceive) -> None:
        self._receive = receive
        self.more = True  # more body to come from the server
        self.gone = False  # the client left (or the server gave up on the connection)
        self.taken = False  # the app took the body (it can, once)
        self._closed = False  # the request is over
        self._reading = False  # the app's own receive() is in flight
        self._read_done: asyncio.Future[None] | None = None  # resolved when it returns
        self._reader: asyncio.Task[None] | None = None
        self._buffer: deque[bytes] | None = None  # the body the reader took in, for the app (made by watch())
        self._buffered = 0
        self._arrived: asyncio.Event | None = None  # set when the reader got something
        self._room: asyncio.Event | None = None  # set when the app took from a full buffer
        self._departed: asyncio.Event | None = None

    async def read_all(self) -> bytes:
        """The whole body (``await protocol()``)."""
        if self.taken:
            raise ProtocolError("the request body can be read only once")
        self.taken = True
        chunk = await self.next_chunk()
        if chunk is None:
            return b""
        if not self.more and not self._buffer:
            return chunk
        parts = [chunk]
        while (chunk := await self.next_chunk()) is not None:
            parts.append(chunk)
        return b"".join(parts)

    async def next_chunk(self) -> bytes | None:
        """The next piece of the body, ``None`` at its end; ``ProtocolClosed`` if the client left."""
        buffer = self._buffer
        if self._reader is None and not buffer:
            if not self.more:
                return None
            if self.gone or self._closed:
                raise ProtocolClosed("the client disconnected" if self.gone else "the request is over")
            self._reading = True
            try:
                message = await self._receive()
            finally:
                self._reading = False
                read_done, self._read_done = self._read_done, None
                if read_done is not None and not read_done.done():  # the reader may be cancelled already
                    read_done.set_result(None)
            if message["type"] == "http.request":
                self.more = message.get("more_body", False)
                return message.get("body", b"")  # type: ignore[no-any-return]
            self.left()
            raise ProtocolClosed("the client disconnected")
        while not (buffer := self._buffer):
            if not self.more:
                return None
            if self.gone or self._reader is None:
                raise ProtocolClosed("the client disconnected" if self.gone else "the request is over")
            arrived = self._arrived
            assert arrived is not None
            arrived.clear()
            await arrived.wait()
        chunk = buffer.popleft()
        self._buffered -= len(chunk)
        if self._room is not None:
            self._room.set()
        return chunk

    def watch(self) -> None:
        """Start the reader task, if it is not running and there is anything to notice."""
        if self._reader is None and not self.gone and not self._closed:
            if self._buffer is None:
                self._buffer = deque()
            self._arrived = asyncio.Event()
            self._room = asyncio.Event()
            self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        try:
            if self._reading:  # the app's receive() is in flight: it takes that message
                self._read_done = asyncio.get_running_loop().create_future()
                await self._read_done
            arrived, room, buffer = self._arrived, self._room, self._buffer
            assert arrived is not None and room is not None and buffer is not None
            while not self.gone:
                if self.more and self._buffered >= _BUFFER_MAX:
                    room.clear()
                    await room.wait()  # backpressure: the server and TCP hold the rest
                    continue
                message = await self._receive()
                if message["type"] == "http.request":
                    if self.more:
                        body = message.get("body", b"")
                        if body:
                            buffer.append(body)
                            self._buffered += len(body)
                        self.more = message.get("more_body", False)
                    arrived.set()
                elif message["type"] == "http.disconnect":
                    self.left()
        finally:
            self._reader = None  # else task -> its exception -> this frame -> self -> task: a cycle
            if self._arrived is not None:
                self._arrived.set()

    def wants_more(self) -> bool:
        """Whether body is still to come and there is room to hold it; starts the reader task if so."""
        if not self.more or self.gone or self._closed or self._buffered >= _BUFFER_MAX:
            return False
        self.watch()
        return self._reader is not None

    async def arrival(self) -> None:
        """Wait until the reader task took something in, the client left, or :meth:`wake` was called."""
        arrived = self._arrived
        assert arrived is not None
        arrived.clear()
        await arrived.wait()

    def wake(self) -> None:
        """Wake the waiters of :meth:`arrival` to look again."""
        if self._arrived is not None:
            self._arrived.set()

    def left(self) -> None:
        """The client is gone."""
        self.gone = True
        if self._departed is not None:
            self._departed.set()
        if self._arrived is not None:
            self._arrived.set()

    async def departed(self) -> None:
        """Resolve when the client leaves, or at once when the request is over."""
        if self.gone or self._closed:
            return
        departed = self._departed
        if departed is None:
            departed = self._departed = asyncio.Event()
        self.watch()
        await departed.wait()

    def close(self) -> None:
        """The request is over: stop the reader task, release disconnect waiters."""
        self._closed = True
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
        if self._departed is not None:
            self._departed.set()
        if self._arrived is not None:
            self._arrived.set()


class HTTPProtocol:
    """The ``protocol`` object an RSGI app receives for one HTTP request: the RSGI members only."""

    __slots__ = ("_exchange",)

    def __init__(self, exchange: Exchange) -> None:
        self._exchange = exchange

    def __call__(self) -> Coroutine[Any, Any, bytes]:
        """Read the whole request body."""
        return self._exchange.inbound.read_all()

    def __aiter__(self) -> AsyncIterator[bytes]:
        """The request body in chunks."""
        inbound = self._exchange.inbound
        if inbound.taken:
            raise ProtocolError("the request body can be read only once")
        inbound.taken = True
        return _BodyChunks(inbound)

    def client_disconnect(self) -> Coroutine[Any, Any, None]:
        """Resolve when the client disconnects (safe to cancel); at once after the request ended."""
        return self._exchange.inbound.departed()

    def response_empty(self, status: int = 200, headers: Any = ()) -> None:
        """Respond with no body."""
        x = self._exchange
        if x.phase is OPEN:
            x.commit_plain(status, encode_head(headers), b"")

    def response_str(self, status: int = 200, headers: Any = (), body: str = "") -> None:
        """Respond with a str body, UTF-8 encoded."""
        x = self._exchange
        if x.phase is OPEN:
            x.commit_plain(status, encode_head(headers), check_str(body, "response_str").encode())

    def response_bytes(self, status: int = 200, headers: Any = (), body: Any = b"") -> None:
        """Respond with a bytes-like body."""
        x = self._exchange
        if x.phase is OPEN:
            data = body if type(body) is bytes else check_bytes(body, "response_bytes")
            x.commit_plain(status, encode_head(headers), data)


    def response_file(self, status: int, headers: Any, file: str | os.PathLike[str]) -> None:
        """Respond with a whole file; a file that cannot be opened gives a 404."""
        x = self._exchange
        if x.phase is OPEN:
            x.commit(Response(FILE, check_status(status), encode_head(headers), path=check_path(file)))

    def response_file_range(
        self, status: int, headers: Any, file: str | os.PathLike[str], start: int, end: int
    ) -> None:
        """Respond with bytes ``start`` (inclusive) to ``end`` (exclusive) of a file."""
        x = self._exchange
        if x.phase is OPEN:
            first, last = check_range(start, end)
            head = encode_head(headers)
            x.commit(Response(FILE, check_status(status), head, path=check_path(file), start=first, end=last))

    def response_stream(self, status: int = 200, headers: Any = ()) -> StreamTransport:
        """Start a streamed response; it ends when the app returned and released the transport."""
        x = self._exchange
        if x.phase is not OPEN:
            raise ProtocolError("response_stream called after a response was already set")
        return x.open_stream(check_status(status), encode_head(headers))


class _BodyChunks:
    """``async for chunk in protocol``: the non-empty body chunks; ends early if the client left (as Granian)."""

    __slots__ = ("_inbound",)

    def __init__(self, inbound: Inbound) -> None:
        self._inbound = inbound

    def __aiter__(self) -> _BodyChunks:
        return self

    async def __anext__(self) -> bytes:
        while True:
            try:
                chunk = await self._inbound.next_chunk()
            except ProtocolClosed:
                raise StopAsyncIteration from None
            if chunk is None:
                raise StopAsyncIteration
            if chunk:
                return chunk


class StreamTransport:
    """The transport ``response_stream`` returns. Like Granian's, its sends check their argument when called."""

    __slots__ = ("__weakref__", "_exchange")

    def __init__(self, exchange: Exchange) -> None:
        self._exchange = exchange

    def send_bytes(self, data: Any) -> Coroutine[Any, Any, None]:
        """Send a bytes-like chunk."""
        return self._exchange.write(data if type(data) is bytes else check_bytes(data, "send_bytes"))

    def send_str(self, data: str) -> Coroutine[Any, Any, None]:
        """Send a str chunk, UTF-8 encoded."""
        return self._exchange.write(check_str(data, "send_str").encode())


def _open_file(path: str, start: int) -> tuple[BinaryIO, int]:
    """Open ``path`` for a file response at ``start``; with its size. A directory raises here (IsADirectoryError)."""
    f = open(path, "rb")  # noqa: SIM115 - closed by the caller
    try:
        size = os.fstat(f.fileno()).st_size
        if start:
            f.seek(start)
    except BaseException:
        f.close()
        raise
    return f, size
