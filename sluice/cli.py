"""`sluice`: one command for every process (`api`, `worker`, `sfu`) and for `dev`."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence


def _serve(app_factory: str, process: str, host: str, port: int) -> int:
    import uvicorn

    from sluice.config import get_settings
    from sluice.log import configure_logging

    settings = get_settings()
    configure_logging(settings.log_format, settings.log_level, process=process)
    _warn_if_dev(settings.dev)
    uvicorn.run(
        app_factory, factory=True, host=host, port=port, log_level="warning", proxy_headers=True
    )
    return 0


def _api(args: argparse.Namespace) -> int:
    from sluice.config import get_settings

    settings = get_settings()
    return _serve(
        "api.main:create_app", "api", args.host or settings.api_host, args.port or settings.api_port
    )


def _worker(args: argparse.Namespace) -> int:
    from sluice.config import get_settings
    from worker.pool import run_pool

    settings = get_settings()
    if args.processes:
        settings = settings.model_copy(update={"worker_processes": args.processes})
    run_pool(settings)
    return 0


def _sfu(args: argparse.Namespace) -> int:
    from sluice.config import get_settings

    settings = get_settings()
    return _serve(
        "sfu.app:create_app", "sfu", args.host or settings.sfu_host, args.port or settings.sfu_port
    )


def _dev(args: argparse.Namespace) -> int:
    from sluice.devserver import run_dev

    return run_dev(procfile=args.procfile)


def _warn_if_dev(dev: bool) -> None:
    if dev:
        print(
            "WARNING: development mode — app 'demo' with secret 'demo' is enabled, loopback "
            "and private endpoints are allowed. Never expose this to a network.",
            file=sys.stderr,
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sluice", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    api = sub.add_parser("api", help="the control plane (adapters API)")
    api.add_argument("--host")
    api.add_argument("--port", type=int)
    api.set_defaults(func=_api)

    worker = sub.add_parser("worker", help="a worker host: a pool of adapter processes")
    worker.add_argument("--processes", type=int, help="pool size (SLUICE_WORKER_PROCESSES)")
    worker.set_defaults(func=_worker)

    sfu = sub.add_parser("sfu", help="the embedded SFU (sessions API)")
    sfu.add_argument("--host")
    sfu.add_argument("--port", type=int)
    sfu.set_defaults(func=_sfu)

    dev = sub.add_parser("dev", help="everything on this machine, in development mode")
    dev.add_argument("--procfile", default="Procfile")
    dev.set_defaults(func=_dev)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except ValueError as exc:  # settings that do not validate
        print(f"sluice: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
