#!/usr/bin/env python
"""In-process cost of the bridge per request, in microseconds: native ASGI vs bridged RSGI.

Calls the ASGI callables of ``benchmarks/apps.py`` directly -- ``asgi_app`` and
``rsgi_bridge.wrap(rsgi_app)`` -- with the scope uvicorn builds for a request and
trivial ``receive``/``send`` callables: no sockets, no server. The difference is what
the bridge adds to each request.

Each trial times ``--batches`` batches of ``--number`` requests and keeps the median
per-request time; the report gives the minimum of those medians over ``--trials``
trials (the least disturbed estimate on a busy machine). Native and bridged trials
alternate.

    python benchmarks/micro.py                 # all workloads
    python benchmarks/micro.py -w plain --profile   # cProfile of the bridged GET
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import datetime as dt
import gc
import json
import platform
import pstats
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))  # the rsgi_bridge of this checkout, not an installed one

import apps  # noqa: E402

Receive = Callable[[], Awaitable[dict[str, Any]]]


def make_scope(method: str, path: str, body: int) -> dict[str, Any]:
    """What uvicorn (httptools) hands the app for a request from wrk."""
    headers = [(b"host", b"127.0.0.1:8000")]
    if body:
        headers += [(b"content-length", str(body).encode()), (b"content-type", b"application/octet-stream")]
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 51234),
        "scheme": "http",
        "method": method,
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers,
        "state": {},
    }


WORKLOADS: dict[str, tuple[str, str, int, str]] = {
    "plain": ("GET", "/plain", 0, "GET 13 B"),
    "10k": ("GET", "/10k", 0, "GET 10 KiB"),
    "echo": ("POST", "/echo", 10 * 1024, "POST 10 KiB echo (await protocol())"),
    "echo-stream": ("POST", "/echo-stream", 10 * 1024, "POST 10 KiB echo (async for, streamed)"),
    "stream": ("GET", "/stream", 0, "GET 1 MiB streamed (16 chunks)"),
}


class Receive1:
    """``receive`` of one request: the body once, then (like a server) wait until the client leaves."""

    __slots__ = ("message",)

    def __init__(self, message: dict[str, Any]) -> None:
        self.message: dict[str, Any] | None = message

    async def __call__(self) -> dict[str, Any]:
        message = self.message
        if message is not None:
            self.message = None
            return message
        await asyncio.get_running_loop().create_future()  # never resolves: cancelled by its owner
        return {"type": "http.disconnect"}


async def null_send(message: dict[str, Any]) -> None:
    return None


class NullTransport(asyncio.Transport):
    """A socket that swallows what is written (or keeps it, to compare answers)."""

    def __init__(self) -> None:
        super().__init__()
        self.out: list[bytes] | None = None

    def write(self, data: Any) -> None:
        if self.out is not None:
            self.out.append(bytes(data))

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


Exchange = Callable[[dict[str, Any]], tuple[Any, Any]]


def make_exchange(kind: str, body: int) -> tuple[Exchange, Callable[[], bytes]]:
    """A factory of per-request ``(receive, send)``, and a function giving what the last requests wrote.

    ``uvicorn``: uvicorn's own request cycle (httptools) on a null transport -- the ``receive``/``send``
    an app gets from uvicorn, minus the socket. ``null``: trivial callables (``send`` drops everything).
    """
    payload = b"x" * body
    if kind == "null":
        message = {"type": "http.request", "body": payload, "more_body": False}
        sent: list[dict[str, Any]] = []

        async def keep(msg: dict[str, Any]) -> None:
            sent.append(msg)

        def written() -> bytes:
            data = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
            status = next(m["status"] for m in sent if m["type"] == "http.response.start")
            sent.clear()
            return b"%d " % status + data

        recording = [False]

        def new_null(scope: dict[str, Any]) -> tuple[Any, Any]:
            return Receive1(message), keep if recording[0] else null_send

        new_null.recording = recording  # type: ignore[attr-defined]
        return new_null, written

    import logging

    from uvicorn.protocols.http.flow_control import FlowControl
    from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

    transport = NullTransport()
    flow = FlowControl(transport)
    error_log, access_log = logging.getLogger("uvicorn.error"), logging.getLogger("uvicorn.access")
    default_headers = [(b"server", b"uvicorn")]

    def done() -> None:
        pass

    def new_uvicorn(scope: dict[str, Any]) -> tuple[Any, Any]:
        event = asyncio.Event()
        event.set()
        cycle = RequestResponseCycle(
            scope, transport, flow, error_log, access_log, False, default_headers, event, False, True, done
        )
        cycle.body = bytearray(payload)
        cycle.more_body = False
        return cycle.receive, cycle.send

    def written_uvicorn() -> bytes:
        data = b"".join(transport.out or ())
        transport.out = []
        return data

    transport.out = None
    new_uvicorn.transport = transport  # type: ignore[attr-defined]
    return new_uvicorn, written_uvicorn


async def record(app: Any, scope: dict[str, Any], new: Exchange, written: Callable[[], bytes]) -> bytes:
    """What one request puts on the wire (to check both apps do the same work)."""
    transport = getattr(new, "transport", None)
    recording = getattr(new, "recording", None)
    if transport is not None:
        transport.out = []
    if recording is not None:
        recording[0] = True
    try:
        s = dict(scope)
        receive, send = new(s)
        await app(s, receive, send)
        return written()
    finally:
        if transport is not None:
            transport.out = None
        if recording is not None:
            recording[0] = False


async def time_batch(app: Any, scope: dict[str, Any], new: Exchange, n: int) -> float:
    """Seconds per request over ``n`` requests."""
    clock = time.perf_counter
    t0 = clock()
    for _ in range(n):
        s = dict(scope)
        receive, send = new(s)
        await app(s, receive, send)
        await asyncio.sleep(0)  # back to the loop between requests, as a server is: callbacks run
    return (clock() - t0) / n


async def measure(
    workload: str, trials: int, batches: int, number: int, extra: dict[str, Any], exchange: str
) -> dict[str, Any]:
    """Time ``workload`` on the native app, the bridged app and any ``extra`` bridged variants."""
    method, path, body, _label = WORKLOADS[workload]
    scope = make_scope(method, path, body)
    receive, written = make_exchange(exchange, body)
    candidates = {"native": apps.asgi_app, "bridged": apps.bridged_app, **extra}
    answers = {k: await record(app, scope, receive, written) for k, app in candidates.items()}
    for k, answer in answers.items():
        if answer != answers["native"]:
            native = answers["native"]
            raise RuntimeError(f"{workload}: native and {k} answers differ: {native[:300]!r} vs {answer[:300]!r}")
    for app in candidates.values():  # warm-up (the bridge also starts its app here)
        await time_batch(app, scope, receive, max(number, 2000))
    medians: dict[str, list[float]] = {k: [] for k in candidates}
    for t in range(trials):
        order = list(candidates) if t % 2 == 0 else list(candidates)[::-1]
        for key in order:
            app = candidates[key]
            per = [await time_batch(app, scope, receive, number) for _ in range(batches)]
            medians[key].append(statistics.median(per))
    native = min(medians["native"]) * 1e6
    bridged = min(medians["bridged"]) * 1e6
    out = {
        "native_us": native,
        "bridged_us": bridged,
        "added_us": bridged - native,
        "ratio": bridged / native,
        "native_medians_us": [m * 1e6 for m in medians["native"]],
        "bridged_medians_us": [m * 1e6 for m in medians["bridged"]],
    }
    for k in extra:
        out[f"{k}_us"] = min(medians[k]) * 1e6
    return out


def load_variants(paths: list[Path]) -> dict[str, Any]:
    """``rsgi_app`` wrapped by other copies of the package (a directory each, imported under its own name)."""
    import importlib

    out = {}
    for path in paths:
        path = path.resolve()
        sys.path.insert(0, str(path.parent))
        mod = importlib.import_module(path.name)
        out[path.name] = mod.wrap(apps.rsgi_app)
    return out


def profile(workload: str, number: int, top: int, exchange: str) -> None:
    method, path, body, _label = WORKLOADS[workload]
    scope = make_scope(method, path, body)
    receive, _written = make_exchange(exchange, body)

    async def run() -> None:
        await time_batch(apps.bridged_app, scope, receive, 2000)
        prof = cProfile.Profile()
        prof.enable()
        await time_batch(apps.bridged_app, scope, receive, number)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(top)

    new_loop()(run())


def new_loop() -> Callable[[Any], Any]:
    try:
        import uvloop

        return lambda coro: uvloop.run(coro)  # type: ignore[no-any-return]
    except ImportError:
        return asyncio.run


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-w", "--workloads", default=",".join(WORKLOADS), help=f"subset of {','.join(WORKLOADS)}")
    p.add_argument("-t", "--trials", type=int, default=15, help="trials per app (default 15)")
    p.add_argument("-b", "--batches", type=int, default=9, help="batches per trial (default 9)")
    p.add_argument("-n", "--number", type=int, default=2000, help="requests per batch (default 2000)")
    p.add_argument("--profile", action="store_true", help="cProfile the bridged app instead of timing")
    p.add_argument("--top", type=int, default=30, help="rows of the profile to print")
    p.add_argument("--compare", type=Path, action="append", default=[], metavar="DIR",
                   help="also time a copy of the rsgi_bridge package in DIR (any name), for A/B tests")  # fmt: skip
    p.add_argument("--exchange", choices=("uvicorn", "null"), default="uvicorn",
                   help="receive/send given to the apps: uvicorn's request cycle on a null transport (default), "
                   "or trivial callables (the bridge's path for servers other than uvicorn)")  # fmt: skip
    p.add_argument("--save", type=Path, default=None, help="write the results as JSON to this file")
    args = p.parse_args(argv)
    wkeys = [w for w in args.workloads.split(",") if w]
    if any(w not in WORKLOADS for w in wkeys):
        p.error(f"workloads are {','.join(WORKLOADS)}")
    if args.profile:
        for w in wkeys:
            print(f"== {WORKLOADS[w][3]} (bridged, {args.number * 10} requests)")
            profile(w, args.number * 10, args.top, args.exchange)
        return 0
    gc.collect()
    extra = load_variants(args.compare)
    results: dict[str, Any] = {}
    import rsgi_bridge

    print(f"rsgi_bridge from {Path(rsgi_bridge.__file__).parent}; receive/send: {args.exchange}")
    cols = "".join(f" {k[:12]:>12s}" for k in extra)
    print(f"{'workload':42s} {'native µs':>10s} {'bridged µs':>11s} {'added µs':>9s} {'ratio':>6s}{cols}")

    async def run_all() -> None:  # one loop for all: the bridge's app lives as long as its loop
        for w in wkeys:
            r = await measure(w, args.trials, args.batches, args.number, extra, args.exchange)
            results[w] = r
            more = "".join(f" {r[k + '_us']:12.2f}" for k in extra)
            print(
                f"{WORKLOADS[w][3]:42s} {r['native_us']:10.2f} {r['bridged_us']:11.2f} {r['added_us']:9.2f} "
                f"{r['ratio']:6.2f}{more}",
                flush=True,
            )

    new_loop()(run_all())
    if args.save:
        doc = {
            "meta": {
                "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                "python": platform.python_version(),
                "rsgi-bridge": metadata.version("rsgi-bridge"),
                "uvloop": metadata.version("uvloop"),
                "uvicorn": metadata.version("uvicorn"),
                "settings": {
                    "trials": args.trials,
                    "batches": args.batches,
                    "number": args.number,
                    "exchange": args.exchange,
                },
                "method": "min over trials of the median per-request time of the batches",
            },
            "results": {w: {"label": WORKLOADS[w][3], **r} for w, r in results.items()},
        }
        args.save.parent.mkdir(parents=True, exist_ok=True)
        args.save.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"saved {args.save}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
