"""Run mounted bridges' RSGI hooks from the lifespan of the app they are mounted in.

Starlette and FastAPI do not pass ASGI lifespan events to mounted apps, so a bridge under
``Mount`` would start its app on the first request and stop it when the loop ends.
:func:`lifespan_context` ties ``__rsgi_init__``/``__rsgi_del__`` to the outer app's lifespan.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from .bridge import RSGIBridge
from .connection import logger

__all__ = ["lifespan_context"]


@contextlib.asynccontextmanager
async def lifespan_context(*bridges: RSGIBridge) -> AsyncIterator[None]:
    """Start the bridges' apps on entry (``__rsgi_init__``); drain and stop them on exit (``__rsgi_del__``).

    ``Starlette(routes=[Mount("/legacy", app=bridge)], lifespan=lambda app: lifespan_context(bridge))``,
    or ``async with lifespan_context(bridge):`` inside an existing lifespan. Apps start in the
    order given and stop in reverse order; a failed init stops the ones already started and
    raises, so the server reports the startup as failed.
    """
    for bridge in bridges:
        if not isinstance(bridge, RSGIBridge):
            raise TypeError(f"lifespan_context takes RSGIBridge objects (from rsgi_bridge.wrap), not {bridge!r}")
    started: list[RSGIBridge] = []
    try:
        for bridge in bridges:
            life = bridge.lifecycle
            life.lifespan_seen = True  # del belongs to this lifespan, not to the no-lifespan fallbacks
            await life.startup()
            started.append(bridge)
        yield
    finally:
        error: BaseException | None = None
        for bridge in reversed(started):
            try:
                await bridge.lifecycle.shutdown()
            except Exception as exc:
                logger.error("stopping the mounted RSGI app %r failed: %s", bridge.app, exc)
                error = error or exc
        if error is not None:
            raise error
