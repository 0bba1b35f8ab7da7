"""uvicorn: its HTTP protocols (httptools and h11) and its websocket protocols.

Workarounds (always on):

- Its status-line tables stop at 599, and it fails on a higher status only after marking the
  response started (no 500 can follow): the bridge answers 500 before trying.
- Its ``receive()`` answers ``http.disconnect`` once the response is complete, dropping any
  request body the app has not read yet: the bridge takes the body in first.

Accelerators (off with ``accelerate=False`` / ``RSGI_BRIDGE_ACCELERATE=0``):

- Its HTTP request cycles (httptools and h11) keep their socket's transport, whose ``is_closing()``
  is true once a write failed or the connection closed: a stream checks it at each send instead of
  starting a task that watches ``receive()``.
- Its websocket sends raise once the client left, so a session can read ``receive()`` directly,
  with no watcher task noticing the departure.
- :func:`_websocket_sender`: on the websockets-sansio protocol (``--ws websockets-sansio``, and
  ``--ws auto`` where websockets is installed), an accepted websocket's message is framed by the
  connection's own websockets ``ServerProtocol`` and written to the transport, as uvicorn's ``send``
  does for ``websocket.send``, without its coroutine (and its wait on the writable event). Guards,
  once per protocol type: the class is
  ``uvicorn.protocols.websockets.websockets_sansio_impl.WebSocketsSansIOProtocol`` whose own ``send``
  uses only the names this module was written against (uvicorn 0.53-0.54), and whose
  ``connection_lost``, ``pause_writing`` and ``resume_writing`` keep the flags the guards read. Once
  per connection: ``send`` is that class's own bound ``send``. Per message: the handshake is complete
  and no close was sent, nor an HTTP response started instead; the client is connected, writes are
  not paused, and the websockets connection is open (its ``send_*`` does not raise
  ``InvalidState``). Any failed guard: uvicorn's ``send`` takes the message (waits for the drain, or
  raises as it does for a departed client).
- :func:`write_plain`: on the httptools protocol's request cycle, a plain response (bytes, str or
  empty body) goes out in one ``transport.write`` (status line, uvicorn's default headers, the
  app's headers, content-length and body) instead of uvicorn's two, and the cycle is completed as
  uvicorn's own ``send`` completes it, at once: inside the app's ``response_*`` call, as Granian
  sends a response when it is set. The bytes on the wire are the ones uvicorn writes for the
  same two messages (``tests/test_accelerator.py`` compares them).
- :func:`_h11_plain`: the same for a plain response on the h11 protocol's request cycle: the response's
  h11 events are made by the cycle's own ``h11.Connection``, as uvicorn's ``send`` makes them, and
  their bytes go out in one ``transport.write``; the cycle is completed as that ``send`` completes it.
  Same guards, checked against ``uvicorn.protocols.http.h11_impl.RequestResponseCycle``, plus: the
  request carries no ``Connection: close`` (uvicorn's ``send`` adds it to the response). No stream or
  file writers on h11.
- start_stream: on the httptools cycle, a stream's start (status line, headers, and
  ``transfer-encoding: chunked`` unless the app gave a content-length) is written inside
  ``response_stream``, as Granian sends it, with the cycle's framing state set as uvicorn's ``send``
  sets it for ``http.response.start``. No delivery needs scheduling for the app's next suspension.
  A file response's start goes the same way once its file is open. Same guards as write_plain, but
  for the body ones.
- write_chunk: each chunk of a stream (or piece of a file) start_stream started is written straight to the transport,
  framed and counted as uvicorn's ``send`` does, unless writes are paused, the client left, or the
  chunk exceeds the content-length: then uvicorn's ``send`` takes it (and waits for the drain,
  drops it, or raises). The stream's end goes through uvicorn's ``send``.

  Its guards, checked once per cycle type: the class is
  ``uvicorn.protocols.http.httptools_impl.RequestResponseCycle`` whose own ``send`` uses only
  names this module was written against (uvicorn 0.53-0.54), whose ``receive`` takes the body
  from its ``body`` and ``more_body``, and its module has the ``STATUS_LINE`` table and header
  patterns. Checked per call: ``send`` is that class's own bound ``send``; the response has not
  started (nor its framing chosen); the client is connected and the transport open; writes are not
  paused (flow control);
  the access log is off; while the app runs and has not read the body, the bridge reads it from
  the cycle's own ``receive`` (not a middleware's) and the cycle holds none and expects none
  (uvicorn drops an unread body once the response is complete: the generic path takes it in
  first, for the app to read); the connection is kept alive (a
  closing one, after ``Connection: close`` or on HTTP/1.0, goes through uvicorn); the request is
  not HEAD; the status is 200-599 but not 204/304; the headers (the app's and uvicorn's defaults)
  hold no ``connection`` or ``transfer-encoding`` (nor a default ``content-length``); the body
  matches the app's content-length. Any failed guard: the generic path runs.
"""

from __future__ import annotations

import sys
import types
from dataclasses import replace
from typing import Any

from ..response import Response
from . import (
    ChunkWriter,
    DepartedCheck,
    DepartedProbe,
    PlainAccelerator,
    Quirks,
    StreamStarter,
    WebsocketSender,
    WebsocketSenderProbe,
    owner_of,
)

HTTP_QUIRKS = Quirks(max_status=599, body_after_response=False)
WEBSOCKET_QUIRKS = Quirks(websocket_sends_raise=True)

_SANSIO_MODULE = "uvicorn.protocols.websockets.websockets_sansio_impl"
_SANSIO = "WebSocketsSansIOProtocol"
# Every name the websockets-sansio protocol's ``send`` uses in the uvicorn versions _websocket_sender
# was checked against (0.53.0 and 0.54.0, whose ``send`` is the same).
_REVIEWED_WEBSOCKET_SEND_NAMES = frozenset(
    {
        "ClientDisconnected", "FORBIDDEN", "HTTPStatus", "Headers", "InvalidState", "Response",
        "RuntimeError", "STATUS_PHRASES", "append", "call_later", "close", "close_sent",
        "close_timeout", "close_timer", "conn", "data_to_send", "decode", "default_headers",
        "disconnected", "email", "encode", "formatdate", "get", "get_client_addr",
        "get_path_with_query_string", "handshake_complete", "headers", "info", "initial_response",
        "is_closing", "join", "len", "list", "logger", "loop", "lower", "put_nowait", "queue",
        "read_paused", "reject", "response", "resume_reading", "scope", "send_binary", "send_close",
        "send_response", "send_text", "setdefault", "start_keepalive", "str", "transport", "update",
        "utils", "wait", "writable", "write",
    }
)  # fmt: skip

_HTTPTOOLS_MODULE = "uvicorn.protocols.http.httptools_impl"
_H11_MODULE = "uvicorn.protocols.http.h11_impl"
_CYCLE_MODULES = (_HTTPTOOLS_MODULE, _H11_MODULE)
_CYCLE = "RequestResponseCycle"

# Every name the httptools cycle's ``send`` (with its nested code) uses in the uvicorn versions
# write_plain was checked against (0.53.0 and 0.54.0; pyproject.toml's floor is 0.53.0). A ``send``
# using another name does something this module does not know about: no acceleration on that
# uvicorn. (Before 0.53, for one, ``send`` itself added ``connection: close`` for a request that
# carried it, while the cycle's ``keep_alive`` stayed on.)
_REVIEWED_SEND_NAMES = frozenset(
    {
        "HEADER_RE", "HEADER_VALUE_RE", "RuntimeError", "STATUS_LINE", "access_log", "access_logger",
        "append", "chunked_encoding", "close", "decode", "default_headers", "disconnected", "drain",
        "expected_content_length", "extend", "flow", "get", "get_client_addr",
        "get_path_with_query_string", "info", "int", "join", "keep_alive", "len", "list", "lower",
        "message_event", "on_response", "response_complete", "response_started", "scope", "search",
        "set", "split", "strip", "transport", "waiting_for_100_continue", "write", "write_paused",
    }
)  # fmt: skip
# Every name the h11 cycle's ``send`` uses in the uvicorn versions _h11_plain was checked against (0.53.0
# and 0.54.0, whose ``send`` is the same).
_REVIEWED_H11_SEND_NAMES = frozenset(
    {
        "CLOSE_HEADER", "ConnectionClosed", "Data", "EndOfMessage", "MUST_CLOSE", "Response", "RuntimeError",
        "STATUS_PHRASES", "access_log", "access_logger", "close", "conn", "default_headers", "disconnected",
        "drain", "flow", "get", "get_client_addr", "get_path_with_query_string", "h11", "info", "keep_alive",
        "list", "message_event", "on_response", "our_state", "response_complete", "response_started", "scope",
        "send", "set", "transport", "waiting_for_100_continue", "write", "write_paused",
    }
)  # fmt: skip
# Header names whose presence changes how uvicorn frames or ends the response.
_FRAMING = frozenset({b"connection", b"transfer-encoding", b"content-length"})
_BODILESS = (204, 304)
# Bodies up to this size go out in the head's write; a larger one is written on its own (copying it
# into one buffer would cost more than the write it saves: ~47 us per MiB).
_JOIN_MAX = 64 * 1024

# Encoded header blocks of the app's header sets (tuples of bytes, immutable): None for a set
# with a connection or transfer-encoding header. Bounded.
_BLOCKS: dict[tuple[tuple[bytes, bytes], ...], bytes | None] = {(): b""}
_BLOCKS_MAX = 256
_UNKNOWN = b"not in _BLOCKS"  # a bytes object of its own, told apart by identity


def _code_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def _own_names(owner: type, method: str) -> frozenset[str] | None:
    """Every name ``owner``'s own ``method`` (not an inherited one) uses, nested code included; None if it has
    no such method."""
    code = getattr(owner.__dict__.get(method), "__code__", None)
    return frozenset(_code_names(code)) if isinstance(code, types.CodeType) else None


def _reviewed_cycle(owner: type, module_name: str, send_names: frozenset[str]) -> types.ModuleType | None:
    """The module of ``owner`` if it is the request cycle of ``module_name`` an accelerator was written against:
    its own ``send`` uses exactly ``send_names``, its ``receive`` takes the body from ``body`` and
    ``more_body``. Else None."""
    if owner.__module__ != module_name or owner.__name__ != _CYCLE or _own_names(owner, "send") != send_names:
        return None
    receive = _own_names(owner, "receive")
    if receive is None or not {"body", "more_body"} <= receive:
        return None  # the request body is not where the accelerator looks for it
    return sys.modules.get(module_name)


def _reviewed(owner: type) -> bool:
    """Whether ``owner`` is the httptools request cycle write_plain was written against."""
    module = _reviewed_cycle(owner, _HTTPTOOLS_MODULE, _REVIEWED_SEND_NAMES)
    if module is None:
        return False
    table = getattr(module, "STATUS_LINE", None)
    names, values = getattr(module, "HEADER_RE", None), getattr(module, "HEADER_VALUE_RE", None)
    if not isinstance(table, dict) or not all(type(table.get(s)) is bytes for s in range(200, 600)):
        return False
    return hasattr(names, "search") and hasattr(values, "search")


def _writers(owner: type) -> tuple[PlainAccelerator, StreamStarter, ChunkWriter] | None:
    """write_plain, start_stream and write_chunk for ``owner``'s instances if its guards accept the type, else None."""
    if not _reviewed(owner):
        return None
    module = sys.modules[owner.__module__]
    send_function = owner.__dict__["send"]
    receive_function = owner.__dict__["receive"]
    status_line: dict[int, bytes] = module.STATUS_LINE
    bad_name, bad_value = module.HEADER_RE, module.HEADER_VALUE_RE
    # uvicorn's default headers (date, server, --header): the list it hands each cycle is replaced
    # when the date changes (once a second); its encoded block is kept for the list it was made of.
    defaults: tuple[Any, bytes] = (None, b"")

    def default_block(headers: list[tuple[bytes, bytes]]) -> bytes | None:
        parts = []
        for name, value in headers:
            if type(name) is not bytes or type(value) is not bytes:
                return None
            if bad_name.search(name) or bad_value.search(value) or name.lower() in _FRAMING:
                return None  # uvicorn would refuse it, or it changes the framing: its own send handles that
            parts.append(b"%s: %s\r\n" % (name.lower(), value))
        nonlocal defaults
        block = b"".join(parts)
        defaults = (headers, block)  # one assignment: the list and its block always go together
        return block

    def head_for(send: Any, response: Response) -> bytes | None:
        """The head of ``response`` (status line, uvicorn's default headers, the app's) as uvicorn's send writes
        it, if the guards common to plain responses and streams pass (the cycle is then ``send.__self__``);
        else None. Changes nothing."""
        cycle = _ready_cycle(send, send_function)
        if cycle is None or cycle.chunked_encoding is not None:
            return None
        status = response.status
        if status in _BODILESS or not 200 <= status <= 599:
            return None
        method = cycle.scope["method"]
        if method == "HEAD" or method == "CONNECT" or response.head.chunked:
            return None
        headers = response.head.headers
        block = _BLOCKS.get(headers, _UNKNOWN)
        if block is _UNKNOWN:
            block = _app_block(headers)
        if block is None:  # a connection or transfer-encoding header: uvicorn's send handles it
            return None
        first = cycle.default_headers
        known, known_block = defaults
        first = known_block if first is known else default_block(first)
        if first is None:
            return None
        return status_line[status] + first + block

    def write_plain(send: Any, response: Response, unread: Any) -> bool:
        """Write ``response`` on ``send``'s cycle in one step as uvicorn would; False (did nothing) if a guard fails."""
        try:
            head = head_for(send, response)
            if head is None:
                return False
            cycle = send.__self__
            if unread is not None and _body_left(cycle, unread, receive_function):
                return False
            body = response.body
            length = response.head.length
            if length is None:
                length_line = b"content-length: %d\r\n" % len(body)
            elif length == len(body):
                length_line = b""
            else:
                return False
        except Exception:  # not the cycle it was written against: nothing was changed, uvicorn's send runs
            return False
        # The cycle's state as uvicorn's send leaves it after the start and the last body message
        # (started before writing, as uvicorn: should the write raise, no 500 follows on the socket).
        cycle.response_started = True
        cycle.waiting_for_100_continue = False
        transport = cycle.transport
        if len(body) <= _JOIN_MAX:
            transport.write(b"".join((head, length_line, b"\r\n", body)))
        else:  # a large body is not copied once more: the head, then the body, as uvicorn writes them
            transport.write(b"".join((head, length_line, b"\r\n")))
            transport.write(body)
        cycle.chunked_encoding = False
        cycle.expected_content_length = 0
        cycle.response_complete = True
        cycle.message_event.set()
        cycle.on_response()
        return True

    def start_stream(send: Any, response: Response) -> bool:
        """Write the start of stream ``response`` on ``send``'s cycle as uvicorn would; False (did nothing) if a
        guard fails. The cycle's framing is then set up as uvicorn's send sets it: the chunks go through
        write_chunk (or uvicorn's send), the end through uvicorn's send."""
        try:
            head = head_for(send, response)
        except Exception:  # not the cycle it was written against: nothing was changed, uvicorn's send runs
            return False
        if head is None:
            return False
        cycle = send.__self__
        length = response.head.length
        cycle.response_started = True
        cycle.waiting_for_100_continue = False
        if length is None:  # chunked, as uvicorn frames a body of unknown length
            cycle.transport.write(head + b"transfer-encoding: chunked\r\n\r\n")
            cycle.chunked_encoding = True
            cycle.expected_content_length = 0
        else:
            cycle.transport.write(head + b"\r\n")
            cycle.chunked_encoding = False
            cycle.expected_content_length = length
        return True

    def write_chunk(send: Any, data: bytes) -> bool:
        """Write a body chunk (more to come) of a stream start_stream started, as uvicorn's send would; False
        (did nothing) when uvicorn's own send must handle it: writes paused (it waits for the drain), the
        client gone (it drops the chunk), the response over, or more than the content-length (it raises)."""
        cycle = send.__self__
        if cycle.flow.write_paused or cycle.disconnected or cycle.response_complete:
            return False
        if cycle.chunked_encoding:
            cycle.transport.write(b"%x\r\n%b\r\n" % (len(data), data))
            return True
        size = len(data)
        if size > cycle.expected_content_length:
            return False
        cycle.expected_content_length -= size
        cycle.transport.write(data)
        return True

    return write_plain, start_stream, write_chunk


def _ready_cycle(send: Any, send_function: Any) -> Any:
    """The request cycle behind ``send`` if ``send`` is ``send_function`` bound to it (not a partial, nor a
    subclass overriding it) and the cycle can take a whole response now: not started, the client connected,
    the access log off (uvicorn logs from its send), the connection kept alive, writes not paused, the
    transport open. Else None. Changes nothing."""
    if getattr(send, "__func__", None) is not send_function:
        return None
    cycle = send.__self__
    if (
        cycle.response_started
        or cycle.disconnected
        or cycle.access_log
        or not cycle.keep_alive
        or cycle.flow.write_paused
        or cycle.transport.is_closing()
    ):
        return None
    return cycle


def _body_left(cycle: Any, unread: Any, receive_function: Any) -> bool:
    """Whether the app may still read a request body, which uvicorn would drop once the response is complete:
    ``unread`` (the receive the bridge reads the body from) is not the cycle's own (``receive_function``
    bound to ``cycle``), or the cycle holds or awaits one."""
    if getattr(unread, "__func__", None) is not receive_function or unread.__self__ is not cycle:
        return True  # a middleware's receive (one that replays a body it read, say): the cycle cannot tell
    return bool(cycle.more_body or cycle.body)


def _h11_plain(owner: type) -> PlainAccelerator | None:
    """write_plain for the request cycles of uvicorn's h11 protocol if its guards accept the type, else None.

    The response's three h11 events (``Response``, ``Data``, ``EndOfMessage``) are made by the cycle's
    own ``h11.Connection``, as uvicorn's ``send`` makes them, and their bytes go out in one
    ``transport.write`` instead of two; the cycle is then completed as uvicorn's ``send`` completes it."""
    module = _reviewed_cycle(owner, _H11_MODULE, _REVIEWED_H11_SEND_NAMES)
    if module is None:
        return None
    send_function, receive_function = owner.__dict__["send"], owner.__dict__["receive"]
    h11: Any = getattr(module, "h11", None)
    phrases, close_header = getattr(module, "STATUS_PHRASES", None), getattr(module, "CLOSE_HEADER", None)
    if not isinstance(phrases, dict) or not isinstance(close_header, tuple):
        return None
    try:
        make_response, make_data, end, closed, must_close = (
            h11.Response, h11.Data, h11.EndOfMessage, h11.ConnectionClosed, h11.MUST_CLOSE
        )  # fmt: skip
    except AttributeError:
        return None

    def write_plain_h11(send: Any, response: Response, unread: Any) -> bool:
        """Write ``response`` on ``send``'s cycle in one write as uvicorn would; False (did nothing) if a guard
        fails."""
        try:
            cycle = _ready_cycle(send, send_function)
            if cycle is None:
                return False
            status = response.status
            if status in _BODILESS or not 200 <= status <= 599:
                return False
            scope = cycle.scope
            method = scope["method"]
            if method == "HEAD" or method == "CONNECT" or response.head.chunked or close_header in scope["headers"]:
                # (a request's Connection: close: uvicorn's send adds it to the response; a CONNECT's 2xx
                # switches h11's protocol at the head, after which it refuses the body)
                return False
            if unread is not None and _body_left(cycle, unread, receive_function):
                return False
            defaults = cycle.default_headers
            for name, _ in defaults:
                if type(name) is not bytes or name.lower() in _FRAMING:
                    return False  # not what uvicorn's send expects, or it frames the response: its send handles it
            for name, _ in response.head.headers:  # (checked by the bridge: lower-case bytes)
                if name == b"connection" or name == b"transfer-encoding":
                    return False
            headers = defaults + list(response.head.headers)
            body = response.body
            length = response.head.length
            if length is None:
                headers.append((b"content-length", b"%d" % len(body)))
            elif length != len(body):
                return False
            # h11 checks the head here, changing nothing yet
            event = make_response(status_code=status, headers=headers, reason=phrases[status])
        except Exception:  # not the cycle it was written against, or h11 refuses the head: uvicorn's send runs
            return False
        # The cycle's state as uvicorn's send leaves it after the start and the last body message.
        conn = cycle.conn
        cycle.response_started = True
        cycle.waiting_for_100_continue = False
        head = conn.send(event)
        data = conn.send(make_data(data=body))
        tail = conn.send(end())
        # Complete only once written: should the write raise, uvicorn's run_asgi closes the connection of a
        # response left incomplete, as after its own send's failed write.
        cycle.transport.write(b"".join((head, data, tail)))
        cycle.response_complete = True
        cycle.message_event.set()
        if conn.our_state is must_close:  # (a cycle not kept alive never got here: _ready_cycle)
            conn.send(closed())
            cycle.transport.close()
        cycle.on_response()
        return True

    return write_plain_h11


def _app_block(headers: tuple[tuple[bytes, bytes], ...]) -> bytes | None:
    """The app's encoded headers (names lower-case, checked by the bridge) as uvicorn writes them."""
    parts = []
    for name, value in headers:
        if name == b"connection" or name == b"transfer-encoding":
            block = None
            break
        parts.append(b"%s: %s\r\n" % (name, value))
    else:
        block = b"".join(parts)
    if len(_BLOCKS) < _BLOCKS_MAX:
        _BLOCKS[headers] = block
    return block


def _departed(send: Any) -> DepartedCheck | None:
    """The departed-client check of the request cycle behind ``send``, made once per stream: its socket's
    ``is_closing``. That is true from the moment a write failed or the connection closed (uvicorn's
    ``send`` then drops every message); the cycle's own ``disconnected`` flag is set only later, from a
    loop callback. Over TLS the transport's own flag, too, is set from a loop callback: the stream's
    yield to the loop once every 16 sends lets it run. A C method on uvloop, so each send's check calls no
    Python function."""
    is_closing = getattr(getattr(owner_of(send), "transport", None), "is_closing", None)
    return is_closing if callable(is_closing) else None


def _probe_for(owner: type) -> DepartedProbe | None:
    """_departed for the request cycles of uvicorn's httptools and h11 protocols, else None."""
    if owner.__name__ != _CYCLE or owner.__module__ not in _CYCLE_MODULES:
        return None
    init = getattr(owner.__dict__.get("__init__"), "__code__", None)
    if not isinstance(init, types.CodeType) or "transport" not in init.co_names:
        return None  # a cycle that does not keep the transport this relies on: the reader task watches instead
    return _departed


def _websocket_sender(owner: type) -> WebsocketSenderProbe | None:
    """For ``owner``'s instances, if it is the websockets-sansio protocol this was written against: the
    probe that makes a connection's frame writer. Else None."""
    if owner.__module__ != _SANSIO_MODULE or owner.__name__ != _SANSIO:
        return None
    if _own_names(owner, "send") != _REVIEWED_WEBSOCKET_SEND_NAMES:
        return None
    # The guards' flags are kept by the protocol's callbacks: the connection lost sets ``disconnected``
    # (and ``writable``), flow control clears and sets ``writable``.
    for method, names in (
        ("connection_lost", {"disconnected", "writable"}),
        ("pause_writing", {"writable"}),
        ("resume_writing", {"writable"}),
    ):
        used = _own_names(owner, method)
        if used is None or not names <= used:
            return None
    send_function = owner.__dict__["send"]
    try:
        from websockets.exceptions import InvalidState
    except ImportError:
        return None

    def writer_for(send: Any) -> WebsocketSender | None:
        """The frame writer of ``send``'s connection (once it is accepted), if ``send`` is that class's own."""
        if getattr(send, "__func__", None) is not send_function:  # a partial, or a subclass overriding send
            return None
        ws = send.__self__
        conn, writable, transport = ws.conn, ws.writable, ws.transport  # the connection's for its lifetime

        def send_frame(data: bytes | str) -> bool:
            """Frame and write ``data`` as uvicorn's send would; False (did nothing) if a guard fails."""
            if (
                not ws.handshake_complete
                or ws.close_sent
                or ws.disconnected
                or ws.initial_response is not None
                or not writable.is_set()
            ):
                return False
            try:
                if type(data) is bytes:
                    conn.send_binary(data)
                else:  # a str that cannot be encoded raises here, as in uvicorn's send, before anything changed
                    conn.send_text(data.encode())  # type: ignore[union-attr]
            except InvalidState:  # not open any more (closing): raised before any change; uvicorn's send raises
                return False
            transport.write(b"".join(conn.data_to_send()))
            return True

        return send_frame

    return writer_for


def quirks_for(owner: type) -> Quirks | None:
    """uvicorn's quirks for a ``send``/``receive`` bound to an ``owner`` object, or None if not uvicorn's."""
    module = owner.__module__
    if module.startswith("uvicorn.protocols.http."):
        writers = _writers(owner)
        plain, start, chunk = writers if writers is not None else (_h11_plain(owner), None, None)
        return replace(HTTP_QUIRKS, plain=plain, stream_start=start, stream_chunk=chunk, departed=_probe_for(owner))
    if module.startswith("uvicorn.protocols.websockets."):
        return replace(WEBSOCKET_QUIRKS, websocket_send=_websocket_sender(owner))
    return None
