"""What the bridge knows about particular ASGI servers: the one place that names one.

The core speaks ASGI. For the ``send`` (or ``receive``) it was given it asks :func:`quirks_of`,
which looks at the type of the object that callable is bound to, once per type (cached), and
answers with that server's :class:`Quirks`. Any callable this does not recognise, a middleware's
wrapper included, gets :data:`GENERIC`: plain ASGI. Each server has a module here (``uvicorn.py``,
``daphne.py``) saying what it knows.

A :class:`Quirks` holds two kinds of knowledge:

- **workarounds**, which keep behaviour correct on a server that departs from what ASGI lets an
  app expect (uvicorn cannot send a status above 599, drops the request body once the response
  is complete; daphne must not be handed an exception after the response started). They are
  always on: turning one off would make the bridge wrong on that server.
- **accelerators**, optimisations over a generic path that is correct alone: a way to write a
  plain response in one step, a websocket frame written without a coroutine of the server's, a
  stream or a websocket that learns of a departed client without a watcher task. They are off with
  ``wrap(app, accelerate=False)`` or the environment variable ``RSGI_BRIDGE_ACCELERATE=0``, and the
  bridge then behaves the same (the test suite passes either way).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from ..response import Response

__all__ = [
    "ACCELERATE_ENV", "GENERIC", "ChunkWriter", "DepartedCheck", "DepartedProbe", "PlainAccelerator", "Quirks",
    "StreamStarter", "WebsocketSender", "WebsocketSenderProbe", "accelerate_default", "owner_of", "quirks_of",
]  # fmt: skip

# ``RSGI_BRIDGE_ACCELERATE=0`` (or false/no/off) turns every accelerator off, as ``accelerate=False``.
ACCELERATE_ENV = "RSGI_BRIDGE_ACCELERATE"

# Called with ``send``, a committed PLAIN ``Response`` whose status and headers the bridge has
# checked (200-599, no CR/LF), and ``unread``: while the app has not read the request body and may
# still do so, the ``receive`` that body would come from, else None. Writes the response straight to
# the server, as that server's ``send`` would put it on the wire, and completes the server's request
# cycle as its ``send`` would. With ``unread`` it writes only if ``unread`` is that same cycle's own
# ``receive`` and the cycle holds no request body and expects none (the bridge then knows the body
# is empty; a server may drop an unread body once the response is complete). Returns False, having
# done nothing, when one of its guards fails: the generic ``send`` path then delivers the response.
# Never raises for a guard. Synchronous: the bridge may call it inside the app's ``response_*``
# call, so the response leaves at once, as on Granian.
PlainAccelerator = Callable[[Any, Response, Any], bool]

# Called with ``send`` and a STREAM ``Response`` just set, or a FILE one whose file is open (status
# and headers checked; for a file, no HEAD and no 204/304; for a stream, refusing those is the
# starter's guard): writes the response's start straight to the server as
# its ``send`` would for ``http.response.start``, leaving the server's request cycle ready for the
# body: its chunks through the server's ChunkWriter or ``send``, its end through ``send``.
# False, having done nothing, when a guard fails. Synchronous: a stream's is called inside
# ``response_stream``.
StreamStarter = Callable[[Any, Response], bool]

# Called with ``send`` and one non-empty body chunk (more to follow) of a stream whose start a
# StreamStarter wrote: writes it straight to the socket, framed as the server's ``send`` would, and
# keeps the server's accounting as that ``send`` would. False, having done nothing, when it cannot
# (writes paused, the client gone, the response over): the chunk then goes through ``send``.
ChunkWriter = Callable[[Any, bytes], bool]

# Called once per stream with its HTTP ``send``: a check without arguments, called at each of the
# stream's sends, whether the server itself already knows the client left (its ``send`` then drops
# messages silently); or None if it cannot tell for this ``send``. Lets a stream notice a departed
# client at its next send without a task watching ``receive()``. Neither call raises.
DepartedCheck = Callable[[], bool]
DepartedProbe = Callable[[Any], DepartedCheck | None]

# Called once per websocket, when accepted, with its ``send``: a writer for that connection's messages,
# or None if it cannot write for this ``send``. The writer takes one message, bytes (a binary frame)
# or str (a text frame), writes the frame straight to the server's connection as its ``send`` would for
# ``websocket.send``, and returns True; or False, having done nothing, when a guard fails (writes
# paused, the client gone, the connection closing or closed): ``send`` then takes the message (and
# waits for the drain, or raises). It raises only what that ``send`` would raise at the same point: a
# str that cannot be UTF-8 encoded (before anything changed), the transport's write error (after the
# frame left the server's protocol object). Synchronous: called inside the app's ``send_bytes``/``send_str``.
WebsocketSender = Callable[[bytes | str], bool]
WebsocketSenderProbe = Callable[[Any], WebsocketSender | None]


@dataclass(frozen=True)
class Quirks:
    """How the server behind one ``send`` differs from plain ASGI, and what can go faster on it."""

    # Workarounds (always on).
    max_status: int = 999  # the highest response status it can send
    aborts: bool = True  # an exception from the app after the response started aborts that response
    body_after_response: bool = True  # receive() still gives the request body once the response is complete
    # Accelerators (off with accelerate=False / RSGI_BRIDGE_ACCELERATE=0).
    plain: PlainAccelerator | None = None  # writes a whole plain HTTP response in one step
    stream_start: StreamStarter | None = None  # writes a stream's start at once
    stream_chunk: ChunkWriter | None = None  # writes the chunks of a stream stream_start started
    departed: DepartedProbe | None = None  # tells from the server's state that the client left (no reader task)
    websocket_sends_raise: bool = False  # a websocket send raises once the client left: no watcher task needed
    websocket_send: WebsocketSenderProbe | None = None  # writes an accepted websocket's frames in one step

    def without_accelerators(self) -> Quirks:
        """These quirks with every accelerator off (the workarounds stay)."""
        return replace(
            self,
            plain=None,
            stream_start=None,
            stream_chunk=None,
            departed=None,
            websocket_sends_raise=False,
            websocket_send=None,
        )


GENERIC = Quirks()

_KNOWN: dict[tuple[type, bool], Quirks] = {}
_KNOWN_MAX = 64


def accelerate_default() -> bool:
    """Whether accelerators are on by default: unless ``RSGI_BRIDGE_ACCELERATE`` is 0/false/no/off."""
    return os.environ.get(ACCELERATE_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def owner_of(send: Any) -> Any:
    """The object ``send`` (or ``receive``) is a bound method of (also through a ``functools.partial``), else None."""
    owner = getattr(send, "__self__", None)
    if owner is None:
        owner = getattr(getattr(send, "func", None), "__self__", None)
    return owner


def quirks_of(send: Any, accelerate: bool = True) -> Quirks:
    """The :class:`Quirks` of the server behind ``send`` (or ``receive``); with its accelerators if ``accelerate``."""
    key = (type(owner_of(send)), accelerate)
    found = _KNOWN.get(key)
    if found is None:
        from . import daphne, uvicorn

        owner_type = key[0]
        found = GENERIC
        for server in (uvicorn, daphne):
            known = server.quirks_for(owner_type)
            if known is not None:
                found = known
                break
        if not accelerate:
            found = found.without_accelerators()
        if len(_KNOWN) < _KNOWN_MAX:
            _KNOWN[key] = found
    return found
