"""The lifecycle of one bridged app: init once, serve, drain, del once.

``Lifecycle`` is a small state machine (:class:`State`). Whatever triggers the end (ASGI lifespan
shutdown, a stop signal without lifespan, the end of the serving loop, interpreter exit), it
drains in-flight work and runs ``__rsgi_del__`` at most once. ``__rsgi_init__`` runs at most once
per process: a failed or timed-out init is final (``FAILED``) and requests are refused.
Calling the hooks is :mod:`.hooks`; signals and exit are :mod:`.process`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Any

from .connection import ASGIReceive, ASGISend, logger
from .hookloop import HookLoop
from .hooks import call_hook, call_hook_stopped, describe
from .process import PROCESS

__all__ = ["FAILED", "NEW", "RUNNING", "STARTING", "STOPPED", "STOPPING", "Lifecycle", "State", "Untracked"]


class State(StrEnum):
    """States of a :class:`Lifecycle` (equal to their lower-case names)."""

    NEW = "new"  # init not tried yet
    STARTING = "starting"  # init running
    RUNNING = "running"  # init succeeded (or there is none): serving
    FAILED = "failed"  # init raised or timed out: never retried in this process, requests refused
    STOPPING = "stopping"  # draining, then del
    STOPPED = "stopped"  # del ran (or was not owed)


NEW, STARTING, RUNNING, FAILED, STOPPING, STOPPED = State

_CANCEL_GRACE = 5.0  # seconds cancelled requests get to unwind


def _what(scope: dict[str, Any] | None) -> str:
    if scope is None:
        return "request"
    if scope.get("type") == "websocket":
        return f"websocket {scope.get('path', '')}"
    return f"{scope.get('method', '')} {scope.get('path', '')}"


class Untracked:
    """The in-flight key of a request run outside any task, or inside another request's task
    (cancelling that task ends both); it cannot be cancelled itself."""

    __slots__ = ()

    def done(self) -> bool:
        return False

    def cancel(self) -> bool:
        return False


class Lifecycle:
    """Runs ``__rsgi_init__``/``__rsgi_del__`` once and tracks in-flight work.

    ``new`` → ``starting`` → ``running`` → ``stopping`` → ``stopped``; ``starting`` →
    ``failed`` when init raises or times out (final: no second init in this process).
    Shutdown drains in-flight work and runs del once, if init succeeded — or if an init
    that timed out finished later in its thread (it is never counted as started, but what
    it opened gets del).
    """

    def __init__(
        self,
        target: Any,
        *,
        startup_timeout: float | None,
        shutdown_timeout: float | None,
        drain_timeout: float | None,
        inner_lifespan: Callable[[dict[str, Any], ASGIReceive, ASGISend], Awaitable[None]] | None = None,
    ) -> None:
        self.init_hook: Callable[[Any], Any] | None = getattr(target, "__rsgi_init__", None)
        self.del_hook: Callable[[Any], Any] | None = getattr(target, "__rsgi_del__", None)
        self.startup_timeout = startup_timeout
        self.shutdown_timeout = shutdown_timeout
        self.drain_timeout = drain_timeout
        self.inner_lifespan = inner_lifespan
        self.state = NEW
        self.failure: str | None = None  # why init failed (state FAILED)
        self.tasks: dict[Any, dict[str, Any] | None] = {}  # task (or Untracked) -> its ASGI scope
        # Open RSGI websocket sessions (filled by the websocket path), closed with 1012 on drain.
        self.websockets: set[Any] = set()
        self.lazy = False  # started by a request, not by ASGI lifespan
        self.lifespan_seen = False
        self.idle: asyncio.Event | None = None  # set when the last in-flight request ends (during drain)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._starter: asyncio.Task[None] | None = None
        self._sentinel: asyncio.Task[None] | None = None
        self._stopper: asyncio.Task[None] | None = None
        self._inner: _InnerLifespan | None = None
        self._init_threads: list[threading.Thread] = []
        self._init_loops: list[HookLoop] = []
        self._late_start = False  # an init that timed out returned later in its thread: del is owed
        self._del_due = False  # shutdown reached del at interpreter exit: shutdown_at_exit runs it here

    # -- in-flight accounting ----------------------------------------------------
    # RSGIBridge.__call__ adds each request's task to ``tasks`` and removes it when the request ends
    # (inline there: it is the hot path), then sets ``idle`` once none is left.

    @property
    def inflight(self) -> int:
        """Requests and websocket sessions in flight."""
        return len(self.tasks)

    # -- startup ---------------------------------------------------------------

    def refusal(self) -> str:
        """Why this app cannot serve (state ``failed``, ``stopping`` or ``stopped``)."""
        if self.state is FAILED:
            return f"__rsgi_init__ failed ({self.failure}); it runs at most once per process"
        return "the app was already shut down: __rsgi_init__ runs at most once per process"

    async def startup(self) -> None:
        """Run init (at most once per process); raise with the reason when it failed, now or before.

        Concurrent callers share one attempt, which runs in a task of its own: a caller being
        cancelled (its client left) does not cancel init.
        """
        if self.state is RUNNING:
            return
        if self.state is not NEW and self.state is not STARTING:
            raise RuntimeError(self.refusal())
        if self._starter is None:
            self.state = STARTING
            self._loop = asyncio.get_running_loop()
            self._starter = self._loop.create_task(self._start())
            # Retrieved here too: every caller may have been cancelled before it ended.
            self._starter.add_done_callback(lambda t: t.cancelled() or t.exception())
        await asyncio.shield(self._starter)

    async def _start(self) -> None:
        assert self._loop is not None
        try:
            await self._run_init(self._loop)
        except BaseException as exc:
            self.state = FAILED
            self.failure = describe(exc)
            self._clean_up_init()
            raise
        self.state = RUNNING
        PROCESS.register(self)
        if self.inner_lifespan is not None:
            self._inner = _InnerLifespan(self.inner_lifespan)
            try:
                await self._inner.startup()
            except BaseException as exc:
                logger.error("wrapped ASGI app's lifespan startup failed: %s", describe(exc))
                with contextlib.suppress(Exception):
                    await self.shutdown()
                raise

    async def _run_init(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.init_hook is None:
            return
        logger.info("__rsgi_init__ starting")
        t0 = time.perf_counter()
        try:
            await call_hook(
                self.init_hook,
                loop,
                self.startup_timeout,
                "init",
                self._init_threads,
                self._init_loops,
                self._init_ended_late,
            )
        except TimeoutError:
            logger.error("__rsgi_init__ timed out after %.3fs", time.perf_counter() - t0)
            raise TimeoutError(f"__rsgi_init__ did not finish within startup_timeout={self.startup_timeout}s") from None
        except BaseException as exc:
            logger.error("__rsgi_init__ failed after %.3fs: %s", time.perf_counter() - t0, describe(exc), exc_info=exc)
            raise
        logger.info("__rsgi_init__ done in %.3fs", time.perf_counter() - t0)

    def _init_ended_late(self, error: BaseException | None) -> None:
        """From the init thread, after its timeout: a returning init opened what del closes."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(self._ended_late, error is None)

    def _ended_late(self, returned: bool) -> None:
        self._clean_up_init()
        if not returned or self.del_hook is None or self.state is not FAILED:
            return
        self._late_start = True
        logger.warning("__rsgi_init__ returned after startup_timeout: not started; __rsgi_del__ runs at shutdown")
        PROCESS.register(self)
        self._stop_without_lifespan()

    def _clean_up_init(self) -> None:
        """Cancel what a failed init left pending on the serving loop (see HookLoop.cancel_started)."""
        n = sum(hook_loop.cancel_started() for hook_loop in self._init_loops)
        if n:
            logger.warning("cancelled %d task(s)/callback(s) the failed __rsgi_init__ left on the serving loop", n)

    def started_without_lifespan(self) -> None:
        """Init ran for a request: run del on a stop signal, at the loop's end, or at exit."""
        if self.state is RUNNING:
            self._stop_without_lifespan()

    def _stop_without_lifespan(self) -> None:
        if self.lifespan_seen:
            return
        self.lazy = True
        PROCESS.trap_signals()
        if self._sentinel is None:
            self._sentinel = asyncio.get_running_loop().create_task(self._sentinel_wait())

    def signal_loop(self) -> asyncio.AbstractEventLoop | None:
        """For :mod:`.process`: the loop to shut down on at a stop signal (started without lifespan)."""
        loop = self._loop
        if self.lazy and self._owes_shutdown() and loop is not None and loop.is_running():
            return loop
        return None

    async def _sentinel_wait(self) -> None:
        try:
            await asyncio.get_running_loop().create_future()
        except asyncio.CancelledError:
            self._sentinel = None
            if self._owes_shutdown():
                logger.info("serving loop is ending without a lifespan shutdown")
            with contextlib.suppress(Exception):
                await self.shutdown()

    # -- shutdown --------------------------------------------------------------

    def _owes_shutdown(self) -> bool:
        return self.state is RUNNING or (self.state is FAILED and self._late_start)

    async def drain(self) -> None:
        """Wait for in-flight requests, up to ``drain_timeout``; then cancel the rest."""
        count = self.inflight
        logger.info("drain started: %d request(s) in flight", count)
        t0 = time.perf_counter()
        if count == 0:
            logger.info("drain finished in 0.000s: 0 ended, 0 abandoned")
            return
        self.idle = idle = asyncio.Event()
        if self.websockets:
            # Long-lived sessions would hold the drain to its timeout: close them as uvicorn does.
            from .websocket import close_websockets

            logger.info("drain: closing %d open websocket(s) with 1012", close_websockets(self.websockets))
        try:
            await asyncio.wait_for(idle.wait(), self.drain_timeout)
            logger.info("drain finished in %.3fs: %d ended, 0 abandoned", time.perf_counter() - t0, count)
            return
        except TimeoutError:
            pass
        left = {t: s for t, s in self.tasks.items() if not t.done()}
        logger.warning(
            "drain_timeout=%ss expired with %d request(s) in flight; cancelling them as abandoned: %s",
            self.drain_timeout,
            self.inflight,
            ", ".join(_what(s) for s in left.values()) or "(untracked)",
        )
        for t in left:
            t.cancel()
        stuck: set[Any] = set()
        waitable = [t for t in left if isinstance(t, asyncio.Future)]
        if waitable:
            _, stuck = await asyncio.wait(waitable, timeout=_CANCEL_GRACE)
        logger.warning(
            "drain finished in %.3fs: %d ended, %d abandoned%s",
            time.perf_counter() - t0,
            max(count - len(left), 0),
            len(left),
            f" ({len(stuck)} ignored cancellation)" if stuck else "",
        )

    async def shutdown(self) -> None:
        """Drain, then run del exactly once if init succeeded; raise if del failed.

        Every caller waits for the same shutdown; it runs in a task of its own so
        that a caller being cancelled does not interrupt del.
        """
        if self._stopper is None:
            if not self._owes_shutdown():  # never started, or already stopped at exit
                return
            self.state = STOPPING
            self._stopper = asyncio.get_running_loop().create_task(self._shutdown())
        await asyncio.shield(self._stopper)

    async def _shutdown(self) -> None:
        sentinel, self._sentinel = self._sentinel, None
        if sentinel is not None:  # no longer needed: let it end
            sentinel.cancel()
        try:
            await self.drain()
            if self._inner is not None:
                try:
                    await self._inner.shutdown()
                except Exception as exc:
                    logger.error("wrapped ASGI app's lifespan shutdown failed: %s", describe(exc))
        finally:
            self.state = STOPPED
            self._clean_up_init()
            if PROCESS.exiting:  # no thread can start now: shutdown_at_exit runs del on its thread
                self._del_due = True
            else:
                try:
                    await self._run_del()
                finally:
                    PROCESS.unregister(self)

    async def _run_del(self) -> None:
        if self.del_hook is None:
            return
        loop = asyncio.get_running_loop()
        logger.info("__rsgi_del__ starting")
        t0 = time.perf_counter()
        try:
            await call_hook(self.del_hook, loop, self.shutdown_timeout, "del")
        except TimeoutError:
            logger.error("__rsgi_del__ timed out after %.3fs", time.perf_counter() - t0)
            raise TimeoutError(
                f"__rsgi_del__ did not finish within shutdown_timeout={self.shutdown_timeout}s"
            ) from None
        except BaseException as exc:
            logger.error("__rsgi_del__ failed after %.3fs: %s", time.perf_counter() - t0, describe(exc), exc_info=exc)
            raise
        logger.info("__rsgi_del__ done in %.3fs", time.perf_counter() - t0)

    def _run_del_here(self, loop: asyncio.AbstractEventLoop) -> None:
        """del on the calling thread with ``loop`` not running (interpreter exit: no new threads)."""
        self._del_due = False
        PROCESS.unregister(self)
        if self.del_hook is None:
            return
        logger.info("__rsgi_del__ starting")
        t0 = time.perf_counter()
        try:
            call_hook_stopped(self.del_hook, loop, self.shutdown_timeout)
        except Exception as exc:
            logger.error("__rsgi_del__ failed after %.3fs: %s", time.perf_counter() - t0, describe(exc), exc_info=exc)
            return
        logger.info("__rsgi_del__ done in %.3fs", time.perf_counter() - t0)

    def shutdown_at_exit(self) -> None:
        """Process exit without lifespan shutdown: drain what can still run, then del.

        Runs entirely on the calling thread (CPython 3.12+ starts no thread at exit): the
        serving loop, if it still exists, runs the drain; del is then called with that loop
        stopped, as the RSGI spec calls it.
        """
        stopper = self._stopper
        if stopper is not None and not stopper.done():  # a shutdown the loop's end interrupted
            stopper_loop = stopper.get_loop()
            if not stopper_loop.is_closed() and not stopper_loop.is_running():
                logger.info("process exiting: finishing the interrupted shutdown")
                with contextlib.suppress(BaseException):
                    stopper_loop.run_until_complete(asyncio.wait([stopper]))
                if self._del_due:
                    self._run_del_here(stopper_loop)
            return
        if not self._owes_shutdown():
            return
        loop = self._loop
        if loop is not None and not loop.is_closed() and loop.is_running():
            logger.error("__rsgi_del__ skipped at exit: the serving loop is still running in another thread")
            return
        logger.info("process exiting without a lifespan shutdown: running __rsgi_del__")
        if loop is not None and not loop.is_closed():
            # The serving loop still exists: the usual drain, run on it; del here, the loop stopped.
            with contextlib.suppress(Exception):
                loop.run_until_complete(self._shutdown_at_exit())
            if self._del_due:
                self._run_del_here(loop)
            return
        self.state = STOPPED
        if self.inflight:
            logger.warning("%d request(s) abandoned: the serving loop is already closed", self.inflight)
        spare = asyncio.new_event_loop()
        try:
            self._run_del_here(spare)
        finally:
            spare.close()

    async def _shutdown_at_exit(self) -> None:
        sentinel = self._sentinel
        try:
            await self.shutdown()
        finally:
            if sentinel is not None:
                await asyncio.wait([sentinel], timeout=_CANCEL_GRACE)

    # -- ASGI lifespan -------------------------------------------------------------

    async def serve(self, scope: dict[str, Any], receive: ASGIReceive, send: ASGISend) -> None:
        """Answer the ASGI lifespan protocol."""
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "lifespan.startup":
                self.lifespan_seen = True
                try:
                    await self.startup()
                except BaseException as exc:
                    await send({"type": "lifespan.startup.failed", "message": describe(exc)})
                    if not isinstance(exc, Exception):
                        raise
                    return
                await send({"type": "lifespan.startup.complete"})
            elif kind == "lifespan.shutdown":
                try:
                    await self.shutdown()
                except Exception as exc:
                    await send({"type": "lifespan.shutdown.failed", "message": describe(exc)})
                    return
                await send({"type": "lifespan.shutdown.complete"})
                return


class _InnerLifespan:
    """Drive the lifespan of a wrapped ASGI app from inside ours."""

    def __init__(self, app: Callable[[dict[str, Any], ASGIReceive, ASGISend], Awaitable[None]]) -> None:
        self._app = app
        self._to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._active = True

    async def _run(self) -> None:
        try:
            await self._app(
                {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}},
                self._to_app.get,
                self._from_app.put,
            )
        except Exception as exc:
            if self._active:
                logger.info("wrapped ASGI app does not support lifespan (%s)", describe(exc))
        finally:
            self._active = False
            await self._from_app.put({"type": "_ended"})

    async def _step(self, message: str) -> None:
        if not self._active:
            return
        await self._to_app.put({"type": message})
        reply = await self._from_app.get()
        if reply["type"].endswith(".failed"):
            self._active = False
            raise RuntimeError(reply.get("message") or f"wrapped ASGI app: {reply['type']}")

    async def startup(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())
        await self._step("lifespan.startup")

    async def shutdown(self) -> None:
        await self._step("lifespan.shutdown")
        if self._task is not None:
            await asyncio.wait([self._task], timeout=_CANCEL_GRACE)
