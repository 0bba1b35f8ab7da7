"""Load and soak: many requests and many websockets through the bridge on uvicorn.

    python benchmarks/soak.py                       # 100,000 requests at concurrency 64, 1,000 websockets
    python benchmarks/soak.py --requests 5000 --ws 200 --json out.json   # a reduced run

HTTP: ``GET /hello`` of ``tests/apps/fault_app.py`` (``wrap``-ed, served by uvicorn) with ``wrk``
when it is installed, else with an asyncio keep-alive client (``--client python`` forces it).
After a warm-up the load runs in segments; the server's RSS is sampled after each one. It
passes with zero errors (socket errors, non-2xx, short reads), a server-side request count
that covers the client's, and RSS growth after warm-up below ``--max-rss-growth-mib``.

Websockets: ``--ws`` connections to ``/ws/echo`` are all opened and held at once, each echoes
``--ws-messages`` messages, then all close; the bridge's in-flight count must come back to 0.

Prints a report; ``--json`` also writes the figures. Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import httpx  # noqa: E402
import psutil  # noqa: E402

from tests.servers import Server  # noqa: E402

APP = "tests.apps.fault_app:asgi"
MiB = 1 << 20


def rss_mib(server: Server) -> float:
    proc = psutil.Process(server.pid())
    return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]) / MiB


def stats(server: Server) -> dict[str, Any]:
    return httpx.get(server.url + "/_stats", timeout=10).json()  # type: ignore[no-any-return]


# -- HTTP clients ------------------------------------------------------------------------------------


def wrk_segment(url: str, connections: int, seconds: int, threads: int = 2) -> dict[str, Any]:
    """One ``wrk`` run; its counts parsed from the report."""
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s", url],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    done = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    if done is None:
        raise RuntimeError(f"cannot read wrk's report:\n{out}")
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    p50 = re.search(r"\s50%\s+([\d.]+\w+)", out)
    p99 = re.search(r"\s99%\s+([\d.]+\w+)", out)
    return {
        "requests": int(done.group(1)),
        "errors": (sum(int(g) for g in sock.groups()) if sock else 0) + (int(non2xx.group(1)) if non2xx else 0),
        "p50": p50.group(1) if p50 else None,
        "p99": p99.group(1) if p99 else None,
    }


async def _python_worker(port: int, count: int, result: dict[str, int]) -> None:
    """One keep-alive connection sending ``count`` requests in sequence, checking each response."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = b"GET /hello HTTP/1.1\r\nHost: soak\r\n\r\n"
    try:
        for _ in range(count):
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length)
            if head.startswith(b"HTTP/1.1 200") and body == b"hello, world":
                result["requests"] += 1
            else:
                result["errors"] += 1
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        result["errors"] += 1
    finally:
        writer.close()


def python_segment(port: int, connections: int, requests: int) -> dict[str, Any]:
    result = {"requests": 0, "errors": 0}

    async def run() -> None:
        per, extra = divmod(requests, connections)
        await asyncio.gather(*(_python_worker(port, per + (i < extra), result) for i in range(connections)))

    asyncio.run(run())
    return {**result, "p50": None, "p99": None}


def soak_http(args: argparse.Namespace) -> dict[str, Any]:
    client = args.client
    if client == "auto":
        client = "wrk" if shutil.which("wrk") else "python"
    report: dict[str, Any] = {"client": client, "target_requests": args.requests, "concurrency": args.concurrency}
    with Server(args.server, APP) as server:
        url = server.url + "/hello"
        warm = min(10_000, max(1000, args.requests // 10))
        if client == "wrk":
            wrk_segment(url, args.concurrency, 2)
        else:
            python_segment(server.port, args.concurrency, warm)
        httpx.get(server.url + "/_stats?reset=1", timeout=10)
        base = rss_mib(server)
        segments: list[dict[str, Any]] = []
        total = errors = 0
        t0 = time.perf_counter()
        while total < args.requests:
            left = args.requests - total
            if client == "wrk":
                rate = total / (time.perf_counter() - t0) if total else 5000.0
                seconds = max(1, min(args.segment_seconds, round(left / rate + 0.5)))
                seg = wrk_segment(url, args.concurrency, seconds)
            else:
                seg = python_segment(server.port, args.concurrency, min(left, args.segment_requests))
            seg["rss_mib"] = round(rss_mib(server), 1)
            segments.append(seg)
            total += seg["requests"]
            errors += seg["errors"]
        elapsed = time.perf_counter() - t0
        served = stats(server)["counts"].get("hello", 0)
        rss = [s["rss_mib"] for s in segments]
        report.update(
            requests=total,
            errors=errors,
            server_counted=served,
            seconds=round(elapsed, 1),
            requests_per_second=round(total / elapsed),
            rss_after_warmup_mib=round(base, 1),
            rss_per_segment_mib=rss,
            rss_growth_mib=round(max(rss) - base, 1),
            rss_last_minus_first_segment_mib=round(rss[-1] - rss[0], 1),
            latency_p50_p99=[(s["p50"], s["p99"]) for s in segments] if client == "wrk" else None,
            inflight_after=stats(server)["inflight"],
        )
    report["ok"] = (
        errors == 0
        and total >= args.requests
        and served >= total  # the server saw every request the client counted
        and report["rss_growth_mib"] < args.max_rss_growth_mib
        and report["inflight_after"] == 0
    )
    return report


# -- websockets ------------------------------------------------------------------------------------


async def _ws_soak(url: str, n: int, messages: int, open_concurrency: int = 100) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    sem = asyncio.Semaphore(open_concurrency)
    conns: list[Any] = []
    errors: list[str] = []

    async def open_one() -> None:
        async with sem:
            try:
                conns.append(await asyncio.wait_for(connect(url, max_queue=messages + 4), 30))
            except Exception as exc:
                errors.append(f"open: {exc!r}")

    t0 = time.perf_counter()
    await asyncio.gather(*(open_one() for _ in range(n)))
    opened = time.perf_counter() - t0

    async def echo(i: int, ws: Any) -> int:
        ok = 0
        try:
            for j in range(messages):
                msg = f"{i}:{j}" if j % 2 else f"{i}:{j}".encode()
                await ws.send(msg)
                if await asyncio.wait_for(ws.recv(), 30) == msg:
                    ok += 1
                else:
                    errors.append(f"echo mismatch on {i}")
        except Exception as exc:
            errors.append(f"echo: {exc!r}")
        return ok

    t1 = time.perf_counter()
    echoed = sum(await asyncio.gather(*(echo(i, ws) for i, ws in enumerate(conns))))
    echo_time = time.perf_counter() - t1
    return {
        "opened": len(conns),
        "open_seconds": round(opened, 2),
        "echoed": echoed,
        "echo_seconds": round(echo_time, 2),
        "errors": errors[:10],
        "error_count": len(errors),
        "_conns": conns,
    }


def soak_ws(args: argparse.Namespace) -> dict[str, Any]:
    with Server(args.server, APP) as server:
        base = rss_mib(server)

        async def run() -> dict[str, Any]:
            result = await _ws_soak(server.ws_url + "/ws/echo", args.ws, args.ws_messages)
            conns = result.pop("_conns")
            loop = asyncio.get_running_loop()
            result["inflight_while_open"] = (await loop.run_in_executor(None, stats, server))["inflight"]
            result["rss_with_all_open_mib"] = round(rss_mib(server), 1)
            await asyncio.gather(*(ws.close() for ws in conns), return_exceptions=True)
            return result

        report = asyncio.run(run())
        deadline = time.monotonic() + 30
        while stats(server)["inflight"] and time.monotonic() < deadline:
            time.sleep(0.2)
        after = stats(server)
        report.update(
            connections=args.ws,
            messages_each=args.ws_messages,
            rss_before_mib=round(base, 1),
            rss_after_close_mib=round(rss_mib(server), 1),
            inflight_after_close=after["inflight"],
            bridge_tasks_after_close=after["bridge_tasks"],
        )
    report["ok"] = (
        report["error_count"] == 0
        and report["opened"] == args.ws
        and report["echoed"] == args.ws * args.ws_messages
        and report["inflight_while_open"] == args.ws
        and report["inflight_after_close"] == 0
    )
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=100_000)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--client", choices=["auto", "wrk", "python"], default="auto")
    p.add_argument("--segment-seconds", type=int, default=1, help="wrk: length of one RSS-sampling segment")
    p.add_argument("--segment-requests", type=int, default=10_000, help="python client: requests per segment")
    p.add_argument("--max-rss-growth-mib", type=float, default=8.0)
    p.add_argument("--ws", type=int, default=1000, help="concurrent websocket connections (0: skip)")
    p.add_argument("--ws-messages", type=int, default=10)
    p.add_argument("--server", default="uvicorn")
    p.add_argument("--json", help="also write the report here")
    args = p.parse_args(argv)

    report: dict[str, Any] = {"load_average_at_start": os.getloadavg()}
    if args.requests:
        report["http"] = soak_http(args)
    if args.ws:
        report["websocket"] = soak_ws(args)
    report["ok"] = all(part["ok"] for key, part in report.items() if isinstance(part, dict))
    text = json.dumps(report, indent=2)
    sys.stdout.write(text + "\n")
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
