#!/usr/bin/env python
"""Instructions per request, counted by callgrind: native ASGI vs bridged RSGI (and --compare copies).

Wall-clock timings on a shared machine move with its load; instruction counts do not, so this is
the tool for choosing between two variants of the bridge. Each app serves ``N`` and ``2N``
requests of a workload in-process (uvicorn's own request cycle on a null transport, on uvloop,
back to the loop between requests), each count under ``valgrind --tool=callgrind``; the
difference divided by ``N`` is the cost of one request, start-up excluded.

    python benchmarks/instructions.py -w plain,echo --compare /tmp/before/rb_before

Needs valgrind. One count takes some seconds (python runs ~50x slower under callgrind).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
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


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-w", "--workloads", default="plain,echo", help="subset of micro.py's workloads")
    p.add_argument("-n", "--number", type=int, default=2000, help="requests in the shorter run (default 2000)")
    p.add_argument("--compare", action="append", default=[], metavar="DIR", help="another copy of rsgi_bridge")
    p.add_argument("--no-native", action="store_true", help="count the bridge (and --compare copies) only")
    p.add_argument("--serve", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        serve(args.serve, args.workloads, args.number)
        return 0
    variants = [("native", ""), ("bridged", "")] + [(Path(c).name, str(c)) for c in args.compare]
    if args.no_native:
        variants = variants[1:]
    print(f"{'workload':<14}" + "".join(f"{name:>16}" for name, _ in variants) + "   (instructions per request)")
    for workload in args.workloads.split(","):
        row = []
        for name, where in variants:
            app_name = name if not where else "compare"
            n = args.number
            row.append((count(app_name, workload, 2 * n, where) - count(app_name, workload, n, where)) / n)
        print(f"{workload:<14}" + "".join(f"{v:>16,.0f}" for v in row))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
