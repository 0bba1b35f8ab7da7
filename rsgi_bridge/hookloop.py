"""The loop handed to ``__rsgi_init__``/``__rsgi_del__`` under ASGI: :class:`HookLoop`.

The RSGI spec calls both hooks with an event loop that is **not running**; under ASGI the serving
loop already runs, so a synchronous hook runs in a helper thread (see :mod:`.hooks`) with a
``HookLoop``: its ``run_until_complete`` runs the coroutine on the serving loop, every other loop
method called from the hook thread is carried out on the serving loop, and what the hook started
there is remembered, so that what a failed or timed-out init left running can be cancelled.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import threading
from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar

__all__ = ["HookLoop"]

_T = TypeVar("_T")

_THREAD_SAFE = frozenset({"call_soon_threadsafe", "is_closed", "get_debug", "time", "run_until_complete", "is_running"})
# Loop methods whose result is a task or future the hook started on the serving loop: remembered,
# so that what a failed or timed-out init left running can be cancelled (HookLoop.cancel_started).
_STARTS = frozenset({"create_task", "create_future", "call_soon", "call_later", "call_at"})
_OWN = frozenset(
    {"_loop", "_hook_thread", "_started", "run_until_complete", "is_running", "cancel_started", "run_hook"}
    | {"forget_started"}
)


async def as_coroutine(awaitable: Awaitable[Any]) -> Any:
    """``awaitable`` as a coroutine (for ``run_coroutine_threadsafe`` and ``wait_for``)."""
    return await awaitable


class HookLoop(asyncio.AbstractEventLoop):
    """The loop handed to ``__rsgi_init__``/``__rsgi_del__`` under ASGI.

    The hooks run in a helper thread while the serving loop stays free, so
    ``run_until_complete(coro)`` runs ``coro`` on the serving loop and returns
    its result, as the RSGI spec's examples expect. Any other loop method called
    from the hook thread is carried out on the serving loop; once the hook has
    returned, a stored ``HookLoop`` behaves as the serving loop itself.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        object.__setattr__(self, "_loop", loop)
        object.__setattr__(self, "_hook_thread", None)
        # What the hook started on the serving loop from its thread (tasks, handles, coroutines
        # run by run_until_complete): see cancel_started().
        object.__setattr__(self, "_started", [])

    def __getattribute__(self, name: str) -> Any:
        if name in _OWN or name in ("__class__", "__dict__"):
            return object.__getattribute__(self, name)
        if name.startswith("__") and name not in ("__repr__",):
            return object.__getattribute__(self, name)
        loop = object.__getattribute__(self, "_loop")
        attr = getattr(loop, name)
        if (
            name not in _THREAD_SAFE
            and callable(attr)
            and threading.get_ident() == object.__getattribute__(self, "_hook_thread")
        ):
            started = object.__getattribute__(self, "_started") if name in _STARTS else None
            return _on_loop(loop, attr, started)
        return attr

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(object.__getattribute__(self, "_loop"), name, value)

    def __repr__(self) -> str:
        return f"<HookLoop of {object.__getattribute__(self, '_loop')!r}>"

    def is_running(self) -> bool:
        """False inside the hook (the RSGI view); the serving loop's answer afterwards."""
        if threading.get_ident() == object.__getattribute__(self, "_hook_thread"):
            return False
        return object.__getattribute__(self, "_loop").is_running()  # type: ignore[no-any-return]

    def run_until_complete(self, future: Generator[Any, None, _T] | Awaitable[_T]) -> _T:
        """Run ``future`` on the serving loop and return its result."""
        loop = object.__getattribute__(self, "_loop")
        if threading.get_ident() != object.__getattribute__(self, "_hook_thread"):
            return loop.run_until_complete(future)  # type: ignore[no-any-return]
        coro = future if inspect.iscoroutine(future) else as_coroutine(future)  # type: ignore[arg-type]
        running = asyncio.run_coroutine_threadsafe(coro, loop)
        started = object.__getattribute__(self, "_started")
        started.append(running)
        try:
            return running.result()  # type: ignore[no-any-return]
        finally:
            started.remove(running)

    def run_hook(self, hook: Callable[[Any], _T]) -> _T:
        """Call ``hook(self)`` on this (the hook's helper) thread, with this loop as the thread's loop."""
        object.__setattr__(self, "_hook_thread", threading.get_ident())
        asyncio.set_event_loop(self)
        try:
            return hook(self)
        finally:
            object.__setattr__(self, "_hook_thread", None)
            asyncio.set_event_loop(None)

    def forget_started(self) -> None:
        """The hook succeeded: what it started is the app's to keep, nothing to cancel."""
        object.__getattribute__(self, "_started").clear()

    def cancel_started(self) -> int:
        """Cancel what the hook started on the serving loop and is still pending; call on that loop.

        Covers tasks, futures and callbacks it scheduled through this loop from its thread, and
        the coroutine its ``run_until_complete`` is waiting for. Work those start in turn (tasks
        made with ``asyncio.create_task`` inside them) is beyond reach. Returns how many.
        """
        started = object.__getattribute__(self, "_started")
        n = 0
        for item in list(started):
            cancel = getattr(item, "cancel", None)
            cancelled = getattr(item, "cancelled", None)
            done = getattr(item, "done", None)
            if cancel is None or (done is not None and done()) or (cancelled is not None and cancelled()):
                continue
            cancel()
            n += 1
        started.clear()
        return n


def _on_loop(
    loop: asyncio.AbstractEventLoop, method: Callable[..., Any], started: list[Any] | None
) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        done: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> None:
            try:
                value = method(*args, **kwargs)
            except BaseException as exc:  # handed back to the hook thread
                done.set_exception(exc)
                return
            if started is not None:
                started.append(value)
            done.set_result(value)

        loop.call_soon_threadsafe(run)
        return done.result()

    return call
