"""Process-wide shutdown without ASGI lifespan: SIGTERM/SIGINT and interpreter exit.

One :data:`PROCESS` per interpreter keeps the lifecycles still running and finishes them when a
stop signal arrives (drain, then ``__rsgi_del__``, then the server's own handler) or, failing
that, at interpreter exit. Everything run at exit runs on the calling thread: CPython 3.12+
refuses to start threads inside ``atexit`` handlers.
"""

from __future__ import annotations

import asyncio
import atexit
import signal
import threading
import weakref
from typing import Any, Protocol

from .connection import logger

__all__ = ["PROCESS", "Stoppable"]


class Stoppable(Protocol):
    """What the process needs from a lifecycle (``lifecycle.Lifecycle``)."""

    def signal_loop(self) -> asyncio.AbstractEventLoop | None:
        """The running loop to shut down on when a stop signal arrives, or None to leave it alone."""

    async def shutdown(self) -> None:
        """Drain and run del (once)."""

    def shutdown_at_exit(self) -> None:
        """Finish at interpreter exit, on the calling thread."""


def _pass_on(handler: Any, signum: int, frame: Any) -> None:
    """Hand a signal to the handler that was installed before ours."""
    if callable(handler):
        handler(signum, frame)
    elif handler == signal.SIG_DFL:
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)


class _Process:
    """Process-wide: lifecycles still running, finished on a stop signal or at interpreter exit."""

    def __init__(self) -> None:
        self._live: weakref.WeakSet[Any] = weakref.WeakSet()
        self._atexit = False
        self._prev: dict[int, Any] = {}
        self._stopping = False  # a signal-driven drain is in progress
        self._stop_task: asyncio.Task[None] | None = None
        # True once the interpreter runs its atexit handlers: no thread can be started any more.
        self.exiting = False

    def register(self, lc: Stoppable) -> None:
        self._live.add(lc)
        if not self._atexit:
            self._atexit = True
            atexit.register(self.run_at_exit)

    def unregister(self, lc: Stoppable) -> None:
        self._live.discard(lc)

    def run_at_exit(self) -> None:
        self.exiting = True
        for lc in list(self._live):
            lc.shutdown_at_exit()

    # -- SIGTERM/SIGINT without lifespan ------------------------------------------

    def trap_signals(self) -> None:
        """Put ``_on_signal`` in front of the server's SIGTERM/SIGINT handlers (main thread only).

        Left alone: signals handled by native code or through
        ``loop.add_signal_handler`` (no Python handler to chain), and ignored ones.
        """
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGINT):
            current = signal.getsignal(sig)
            if current is None or current == signal.SIG_IGN or current == self._on_signal:
                continue
            if getattr(current, "__name__", "") == "_sighandler_noop":
                continue
            self._prev[sig] = current
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        prev = self._prev.get(signum, signal.SIG_DFL)
        targets = [(lc, loop) for lc in self._live if (loop := lc.signal_loop()) is not None]
        if self._stopping or not targets:
            _pass_on(prev, signum, frame)
            return
        self._stopping = True
        loop = targets[0][1]
        stopping = [lc for lc, lc_loop in targets if lc_loop is loop]
        loop.call_soon_threadsafe(self._start_stop, loop, stopping, prev, signum)

    def _start_stop(self, loop: asyncio.AbstractEventLoop, targets: list[Stoppable], prev: Any, signum: int) -> None:
        self._stop_task = loop.create_task(self._stop_then_pass_on(loop, targets, prev, signum))

    async def _stop_then_pass_on(
        self, loop: asyncio.AbstractEventLoop, targets: list[Stoppable], prev: Any, signum: int
    ) -> None:
        logger.info(
            "%s without an ASGI lifespan: draining and running __rsgi_del__ before the server stops",
            signal.Signals(signum).name,
        )
        waits = [lc.shutdown() for lc in targets]
        try:
            await asyncio.gather(*waits, return_exceptions=True)
        finally:
            self._stopping = False
            loop.call_soon(_pass_on, prev, signum, None)


PROCESS = _Process()
