"""``rsgi-bridge mod:app``: serve an RSGI app through the bridge on uvicorn or hypercorn."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from .imports import TargetError, load_target

__all__ = ["TargetError", "load_target", "main"]

ENV_TARGET = "RSGI_BRIDGE_APP"
ENV_OPTIONS = "RSGI_BRIDGE_OPTIONS"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rsgi-bridge", description="Serve an RSGI application on an ASGI server through rsgi-bridge."
    )
    p.add_argument("app", help="the RSGI application, as module:attribute")
    p.add_argument("--server", choices=("uvicorn", "hypercorn"), default="uvicorn", help="ASGI server (uvicorn)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="bind port (8000)")
    p.add_argument("--uds", default=None, help="bind to a unix domain socket")
    p.add_argument("--workers", type=int, default=1, help="worker processes (1)")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug", "trace"))
    p.add_argument("--root-path", default="", help="ASGI root_path: the prefix the app is mounted under")
    p.add_argument("--reload", action="store_true", help="restart on code changes (uvicorn only)")
    p.add_argument("--no-access-log", action="store_true", help="disable the access log")
    p.add_argument("--drain-timeout", type=float, default=30.0, help="seconds to drain requests on shutdown (30)")
    p.add_argument("--startup-timeout", type=float, default=60.0, help="bound on __rsgi_init__ (60)")
    p.add_argument("--shutdown-timeout", type=float, default=30.0, help="bound on __rsgi_del__ (30)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rsgi-bridge`` command."""
    args = _parser().parse_args(argv)
    try:
        load_target(args.app)
    except TargetError as exc:
        print(f"rsgi-bridge: error: {exc}", file=sys.stderr)
        return 2
    if args.workers < 1:
        print("rsgi-bridge: error: --workers must be at least 1", file=sys.stderr)
        return 2
    os.environ[ENV_TARGET] = args.app
    os.environ[ENV_OPTIONS] = repr(
        {
            "drain_timeout": args.drain_timeout,
            "startup_timeout": args.startup_timeout,
            "shutdown_timeout": args.shutdown_timeout,
        }
    )
    target = "rsgi_bridge._target:app"
    if args.server == "uvicorn":
        try:
            import uvicorn
        except ImportError:
            print("rsgi-bridge: error: uvicorn is not installed (pip install 'rsgi-bridge[server]')", file=sys.stderr)
            return 2
        # uvicorn re-raises a captured SIGTERM once its graceful shutdown is done, which would
        # end this process "killed by signal"; the command exits 0 after a clean shutdown instead.
        signal.signal(signal.SIGTERM, _exit_cleanly)
        uvicorn.run(
            target,
            host=args.host,
            port=args.port,
            uds=args.uds,
            workers=args.workers if not args.reload else None,
            log_level=args.log_level,
            root_path=args.root_path,
            reload=args.reload,
            access_log=not args.no_access_log,
            lifespan="on",
            log_config=_uvicorn_log_config(uvicorn, args.log_level),
        )
        return 0
    return _run_hypercorn(args, target)


def _uvicorn_log_config(uvicorn: Any, level: str) -> dict[str, Any]:
    """uvicorn's logging config plus the ``rsgi_bridge`` logger on the same handler."""
    import copy

    config: dict[str, Any] = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["loggers"]["rsgi_bridge"] = {
        "handlers": ["default"],
        "level": "DEBUG" if level == "trace" else level.upper(),
        "propagate": False,
    }
    return config


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _run_hypercorn(args: argparse.Namespace, target: str) -> int:
    try:
        from hypercorn.config import Config
        from hypercorn.run import run
    except ImportError:
        print("rsgi-bridge: error: hypercorn is not installed (pip install hypercorn)", file=sys.stderr)
        return 2
    if args.reload:
        print("rsgi-bridge: error: --reload is only supported with --server uvicorn", file=sys.stderr)
        return 2
    config = Config()
    config.application_path = target
    config.bind = [f"unix:{args.uds}"] if args.uds else [f"{args.host}:{args.port}"]
    config.workers = args.workers
    config.loglevel = args.log_level.upper() if args.log_level != "trace" else "DEBUG"
    config.root_path = args.root_path
    config.accesslog = None if args.no_access_log else "-"
    config.errorlog = "-"
    config.logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"bridge": {"format": "[%(levelname)s] %(name)s: %(message)s"}},
        "handlers": {"bridge": {"class": "logging.StreamHandler", "formatter": "bridge", "stream": "ext://sys.stderr"}},
        "loggers": {"rsgi_bridge": {"handlers": ["bridge"], "level": config.loglevel, "propagate": False}},
    }
    return int(run(config) or 0)
