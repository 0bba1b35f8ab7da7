"""Calling ``__rsgi_init__``/``__rsgi_del__`` under ASGI, bounded by a timeout.

The RSGI spec calls both hooks with an event loop that is **not running**; under ASGI the serving
loop already runs. A synchronous hook therefore runs in a helper thread with a
:class:`~.hookloop.HookLoop` (its ``run_until_complete`` runs the coroutine on the serving loop),
except at interpreter exit, where CPython 3.12+ refuses new threads: there :func:`call_hook_stopped`
calls it on the calling thread with the real loop, stopped, exactly as the spec describes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import threading
from collections.abc import Callable
from typing import Any

from .connection import logger
from .hookloop import HookLoop, as_coroutine

__all__ = ["call_hook", "call_hook_stopped", "describe"]


def describe(exc: BaseException) -> str:
    """``"TypeName: message"`` (or just the type name) for logs and lifespan failure messages."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def call_hook(
    hook: Callable[[Any], Any],
    loop: asyncio.AbstractEventLoop,
    timeout: float | None,
    name: str,
    threads: list[threading.Thread] | None = None,
    loops: list[HookLoop] | None = None,
    late: Callable[[BaseException | None], None] | None = None,
) -> None:
    """Call a sync or async RSGI hook on the running ``loop``, bounded by ``timeout``.

    A sync hook runs in a helper thread (appended to ``threads``) with a
    :class:`HookLoop` (appended to ``loops``); an ``async def`` hook is awaited
    with the loop itself. On timeout the hook's thread cannot be stopped: it
    runs on, and whatever it ends with is logged and handed to ``late`` (None
    when it returned), from its thread.
    """
    if inspect.iscoroutinefunction(hook):
        await asyncio.wait_for(hook(loop), timeout)
        return
    hook_loop = HookLoop(loop)  # type: ignore[abstract]  # every method is forwarded to ``loop``
    if loops is not None:
        loops.append(hook_loop)
    result: concurrent.futures.Future[Any] = concurrent.futures.Future()

    def run() -> None:
        value: Any = None
        error: BaseException | None = None
        try:
            value = hook_loop.run_hook(hook)
        except BaseException as exc:
            error = exc
        try:
            if error is None:
                result.set_result(value)
            else:
                result.set_exception(error)
        except concurrent.futures.InvalidStateError:  # cancelled: the hook outlived its timeout
            logger.warning(
                "__rsgi_%s__ ended (%s) after its timeout had expired; its outcome is ignored",
                name,
                "failed: " + describe(error) if error is not None else "returned",
            )
            if late is not None:
                late(error)

    thread = threading.Thread(target=run, name=f"rsgi-bridge-{name}", daemon=True)
    if threads is not None:
        threads.append(thread)
    t0 = loop.time()
    thread.start()
    value = await asyncio.wait_for(asyncio.wrap_future(result), timeout)
    if inspect.isawaitable(value):
        left = None if timeout is None else max(timeout - (loop.time() - t0), 0.001)
        await asyncio.wait_for(as_coroutine(value), left)
    hook_loop.forget_started()  # it succeeded: nothing to clean up


def call_hook_stopped(hook: Callable[[Any], Any], loop: asyncio.AbstractEventLoop, timeout: float | None) -> None:
    """Call a hook the RSGI way, on the calling thread, with ``loop`` not running.

    Used at interpreter exit, where no thread may be started (CPython 3.12+). A sync hook
    cannot be interrupted on the calling thread: ``timeout`` bounds only an awaitable it
    returns (or an ``async def`` hook).
    """
    value = hook(loop)
    if inspect.isawaitable(value):
        loop.run_until_complete(asyncio.wait_for(as_coroutine(value), timeout))
