#!/usr/bin/env python
"""Instructions per request, counted by callgrind: native ASGI vs bridged RSGI (and --compare copies).

Wall-clock timings on a shared machine move with its load; instruction counts do not, so this is
the tool for choosing between two variants of the bridge. Each app serves ``N`` and ``2N``
requests of a workload in-process (uvicorn's own request cycle on a null transport, on uvloop,
back to the loop between requests), each count under ``valgrind --tool=callgrind``; the
difference divided by ``N`` is the cost of one request, start-up excluded.

    python benchmarks/instructions.py -w plain,echo --compare /tmp/before/rb_before

``--socket`` counts a real server instead: uvicorn (httptools, or ``--http h11``; uvloop, no access log) runs under
callgrind as a subprocess on 127.0.0.1 and a client in this process sends ``N`` (then ``2N``)
requests over real sockets, keep-alive, spread over ``--connections``; the count covers the whole
server (parsing, the socket writes, the event loop's turns) but not the kernel. It also knows the
``file`` and ``ws`` workloads (one websocket message echoed per "request"), and ``--generic`` adds
the bridge with its accelerators off (``RSGI_BRIDGE_ACCELERATE=0``):

    python benchmarks/instructions.py --socket -w plain,file,ws --generic -n 1000

Needs valgrind. One count takes some seconds (python runs ~50x slower under callgrind).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))  # the rsgi_bridge of this checkout, not an installed one


def serve(app_name: str, workload: str, n: int) -> None:
    """Serve ``n`` requests of ``workload`` with ``app_name`` (run inside callgrind)."""
    import apps
    import micro
    import uvloop

    method, path, body, _ = micro.WORKLOADS[workload]
    scope = micro.make_scope(method, path, body)
    new, _written = micro.make_exchange("uvicorn", body)
    app: Any = {"native": apps.asgi_app, "bridged": apps.bridged_app}.get(app_name) or apps.compare_app

    async def run() -> None:
        for _ in range(n):
            s = dict(scope)
            receive, send = new(s)
            await app(s, receive, send)
            await asyncio.sleep(0)

    uvloop.run(run())


def count(app_name: str, workload: str, n: int, compare: str = "") -> int:
    """Instructions callgrind counts for a whole run serving ``n`` requests."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        env = {**os.environ, "RSGI_BENCH_COMPARE": compare} if compare else dict(os.environ)
        env["PYTHONHASHSEED"] = "0"  # the same dict layouts in every run: counts repeat to a few instructions
        argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, __file__]
        argv += ["--serve", app_name, "-w", workload, "-n", str(n)]
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        found = re.search(r"Collected\s*:\s*(\d+)", proc.stderr)
        if proc.returncode or not found:
            raise RuntimeError(f"callgrind failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
        return int(found.group(1))


# --socket: (method, path, request body bytes); "WS" is one websocket message echoed.
SOCKET_WORKLOADS: dict[str, tuple[str, str, int]] = {
    "plain": ("GET", "/plain", 0),
    "10k": ("GET", "/10k", 0),
    "echo": ("POST", "/echo", 10 * 1024),
    "echo-stream": ("POST", "/echo-stream", 10 * 1024),
    "stream": ("GET", "/stream", 0),
    "file": ("GET", "/file", 0),
    "ws": ("WS", "/ws", 0),
}


async def _http_client(port: int, method: str, path: str, body: int, n: int, connections: int) -> None:
    """``n`` requests over ``connections`` kept-alive connections, each response read whole."""
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    request = (head + f"Content-Length: {body}\r\n\r\n").encode() + b"x" * body if body else (head + "\r\n").encode()

    async def one(k: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for _ in range(k):
                writer.write(request)
                response_head = (await reader.readuntil(b"\r\n\r\n")).lower()
                if not response_head.startswith(b"http/1.1 200 "):
                    raise RuntimeError(f"unexpected response: {response_head[:200]!r}")
                length = re.search(rb"\r\ncontent-length: *(\d+)", response_head)
                if length is not None:
                    await reader.readexactly(int(length.group(1)))
                    continue
                while size := int((await reader.readuntil(b"\r\n"))[:-2], 16):  # chunked
                    await reader.readexactly(size + 2)
                await reader.readexactly(2)
        finally:
            writer.close()

    await asyncio.wait_for(asyncio.gather(*(one(n // connections) for _ in range(connections))), 600)


async def _ws_client(port: int, path: str, n: int, connections: int) -> None:
    """``n`` websocket messages echoed over ``connections`` connections."""
    from websockets.asyncio.client import connect

    async def one(k: int) -> None:
        async with connect(f"ws://127.0.0.1:{port}{path}", compression=None) as ws:
            for _ in range(k):
                await ws.send("Hello, world!")
                await ws.recv()

    await asyncio.wait_for(asyncio.gather(*(one(n // connections) for _ in range(connections))), 600)


def count_socket(
    app_name: str,
    workload: str,
    n: int,
    compare: str,
    connections: int,
    env_extra: dict[str, str],
    http: str = "httptools",
) -> int:
    """Instructions callgrind counts for a uvicorn process serving ``n`` requests of ``workload`` over sockets."""
    target = {"native": "apps:asgi_app", "bridged": "apps:bridged_app"}.get(app_name, "apps:compare_app")
    from run import free_port  # run.py, next to this file

    method, path, body = SOCKET_WORKLOADS[workload]
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        out, log = os.path.join(tmp, "cg.out"), os.path.join(tmp, "valgrind.log")
        env = {**os.environ, "PYTHONHASHSEED": "0", **env_extra}
        env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(HERE.parent), env.get("PYTHONPATH", "")])
        if compare:
            env["RSGI_BENCH_COMPARE"] = compare
        argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", f"--log-file={log}", sys.executable]
        argv += ["-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port), "--http", http]
        argv += ["--loop", "uvloop", "--no-access-log", "--log-level", "warning"]
        proc = subprocess.Popen(argv, cwd=HERE, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), 0.5).close()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"uvicorn under callgrind did not start ({proc.poll()})") from None
                    time.sleep(0.2)
            if method == "WS":
                asyncio.run(_ws_client(port, path, n, connections))
            else:
                asyncio.run(_http_client(port, method, path, body, n, connections))
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        found = re.search(r"Collected\s*:\s*(\d+)", Path(log).read_text())
        if not found:
            raise RuntimeError(f"callgrind failed:\n{Path(log).read_text()[-2000:]}")
        return int(found.group(1))


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-w", "--workloads", default="plain,echo", help="subset of micro.py's workloads")
    p.add_argument("-n", "--number", type=int, default=2000, help="requests in the shorter run (default 2000)")
    p.add_argument("--compare", action="append", default=[], metavar="DIR", help="another copy of rsgi_bridge")
    p.add_argument("--no-native", action="store_true", help="count the bridge (and --compare copies) only")
    p.add_argument("--socket", action="store_true", help="count a real uvicorn server over real sockets")
    p.add_argument("--connections", type=int, default=8, help="--socket: client connections (default 8)")
    p.add_argument("--generic", action="store_true", help="--socket: also the bridge with its accelerators off")
    p.add_argument("--http", default="httptools", choices=("httptools", "h11"), help="--socket: uvicorn's protocol")
    p.add_argument("--serve", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        serve(args.serve, args.workloads, args.number)
        return 0
    # (column, app, --compare directory, extra environment)
    variants = [("native", "native", "", {}), ("bridged", "bridged", "", {})]
    if args.socket and args.generic:
        variants.append(("generic", "bridged", "", {"RSGI_BRIDGE_ACCELERATE": "0"}))
    variants += [(Path(c).name, "compare", str(c), {}) for c in args.compare]
    if args.no_native:
        variants = variants[1:]
    print(f"{'workload':<14}" + "".join(f"{v[0]:>16}" for v in variants) + "   (instructions per request)")
    for workload in args.workloads.split(","):
        row = []
        n = args.number
        for _column, app_name, where, env in variants:
            if args.socket:
                a, b = (
                    count_socket(app_name, workload, k, where, args.connections, env, args.http) for k in (n, 2 * n)
                )
            else:
                a, b = count(app_name, workload, n, where), count(app_name, workload, 2 * n, where)
            row.append((b - a) / n)
        print(f"{workload:<14}" + "".join(f"{v:>16,.0f}" for v in row))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
