"""What the bridge must know about particular ASGI servers: the one place that names one.

The core speaks ASGI. Where a server departs from what ASGI lets an app expect, its module here
says how (:class:`Quirks`), and the core asks :func:`quirks_of` for the ``send`` it was given,
once per type of its owner (cached). Any ``send`` this does not recognise, a middleware's
wrapper included, gets :data:`GENERIC`: plain ASGI.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["GENERIC", "Quirks", "quirks_of"]


@dataclass(frozen=True)
class Quirks:
    """How the server behind one ``send`` differs from plain ASGI."""

    max_status: int = 999  # the highest response status it can send
    aborts: bool = True  # an exception from the app after the response started aborts that response
    body_after_response: bool = True  # receive() still gives the request body once the response is complete


GENERIC = Quirks()

_KNOWN: dict[type, Quirks] = {}
_KNOWN_MAX = 64


def _owner(send: Any) -> Any:
    """The object ``send`` (or ``receive``) is a bound method of (also through a ``functools.partial``), else None."""
    owner = getattr(send, "__self__", None)
    if owner is None:
        owner = getattr(getattr(send, "func", None), "__self__", None)
    return owner


def quirks_of(send: Any) -> Quirks:
    """The :class:`Quirks` of the server behind ``send`` (or ``receive``)."""
    key = type(_owner(send))
    found = _KNOWN.get(key)
    if found is None:
        from . import daphne, uvicorn

        module = key.__module__
        found = GENERIC
        for server in (uvicorn, daphne):
            if server.owns(module):
                found = server.QUIRKS
        if len(_KNOWN) < _KNOWN_MAX:
            _KNOWN[key] = found
    return found
