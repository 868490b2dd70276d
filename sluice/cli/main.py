"""`sluice`: one command for every process (`api`, `worker`, `sfu`) and for `dev`.

The operator's commands (`adapters`, `workers`, `sessions`) read the services' Redis.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from sluice import __version__
from sluice.cli.webhooks import add_webhooks_command
from sluice.state.records import AdapterState, redact_endpoint  # stdlib only: cheap to import

if TYPE_CHECKING:
    from sluice.config import Settings


def _serve(app_factory: str, process: str, host: str, port: int) -> int:
    import uvicorn

    from sluice.config import get_settings
    from sluice.log import configure_logging

    settings = get_settings()
    configure_logging(settings.log_format, settings.log_level, process=process)
    _warn_if_dev(settings.dev)
    uvicorn.run(
        app_factory,
        factory=True,
        host=host,
        port=port,
        log_level="warning",
        proxy_headers=True,
        loop=settings.event_loop,
    )
    return 0


def _api(args: argparse.Namespace) -> int:
    from sluice.config import get_settings

    settings = get_settings()
    return _serve(
        "sluice.cli.apps:create_api_app",
        "api",
        args.host or settings.api_host,
        args.port or settings.api_port,
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
    from sluice.cli.sfu_supervisor import node_count, node_ports, supervise
    from sluice.config import get_settings

    settings = get_settings()
    host, port = args.host or settings.sfu_host, args.port or settings.sfu_port
    count = node_count(settings, args.nodes)
    if count > 1:
        avoid = (settings.worker_health_port, settings.api_port)
        return supervise(host, node_ports(port, count, avoid))
    # The node registers the address it serves at: its settings must say where that is.
    os.environ.update(SLUICE_SFU_HOST=host, SLUICE_SFU_PORT=str(port))
    get_settings.cache_clear()
    return _serve("sfu.app:create_app", "sfu", host, port)


def _sfu_nodes(args: argparse.Namespace) -> int:
    from sluice.cli import admin, admin_fleet, admin_json, admin_render

    def command(settings: Settings) -> int:
        nodes = admin.run_async(settings, admin_fleet.list_sfu_nodes)
        if args.json:
            admin_json.print_json([admin_json.sfu_node_json(node) for node in nodes])
        else:
            admin_render.print_sfu_nodes(nodes)
        return 0

    return _run_admin(command)


def _dev(args: argparse.Namespace) -> int:
    from sluice.cli.devserver import run_dev

    return run_dev(procfile=args.procfile)


def _run_admin(command: Callable[[Settings], int]) -> int:
    """Runs an admin command; Redis errors become one line on stderr and exit code 2."""
    from redis.exceptions import ConnectionError, RedisError, TimeoutError

    from sluice.cli.admin import admin_settings

    settings = admin_settings()
    where = redact_endpoint(settings.redis_url)  # a password in the URL stays unprinted
    try:
        return command(settings)
    except (ConnectionError, TimeoutError) as exc:
        print(f"sluice: cannot reach Redis at {where}: {exc}", file=sys.stderr)
    except RedisError as exc:
        print(f"sluice: Redis at {where} failed: {exc}", file=sys.stderr)
    return 2


def _adapters_ls(args: argparse.Namespace) -> int:
    from sluice.cli import admin, admin_json, admin_render

    state = AdapterState(args.state) if args.state else None

    def command(settings: Settings) -> int:
        adapters = admin.run_async(
            settings,
            lambda redis: admin.list_adapters(
                redis, app_id=args.app, state=state, include_closed=args.all
            ),
        )
        if args.json:
            admin_json.print_json([admin_json.adapter_json(info) for info in adapters])
        else:
            admin_render.print_adapters(adapters, include_closed=args.all or state is not None)
        return 0

    return _run_admin(command)


def _adapters_show(args: argparse.Namespace) -> int:
    from sluice.cli import admin, admin_json, admin_render

    def command(settings: Settings) -> int:
        info = admin.run_async(settings, lambda redis: admin.show_adapter(redis, args.id))
        if info is None:
            print(f"sluice: no adapter {args.id}", file=sys.stderr)
            return 1
        if args.json:
            admin_json.print_json(admin_json.adapter_json(info))
        else:
            admin_render.print_adapter(info)
        return 0

    return _run_admin(command)


def _adapters_close(args: argparse.Namespace) -> int:
    import structlog

    from sluice.cli import admin, admin_json, admin_render
    from sluice.log import configure_logging
    from sluice.state.connection import sync_client

    def command(settings: Settings) -> int:
        # The close path logs as the API does (a forced close warns): to stderr.
        configure_logging(settings.log_format, settings.log_level, process="admin")
        rq_redis = sync_client(settings)  # the service's queue; a close does not use it
        try:
            result = admin.run_async(
                settings, lambda redis: admin.close_adapter(settings, redis, rq_redis, args.id)
            )
        finally:
            rq_redis.close()
        if args.json:
            admin_json.print_json(admin_json.close_json(result, args.id))
        if result.outcome is admin.CloseOutcome.NOT_FOUND:
            print(f"sluice: no adapter {args.id}", file=sys.stderr)
            return 1
        if result.outcome is admin.CloseOutcome.CLOSED:
            structlog.get_logger("sluice.admin").info(
                "adapter_closed_by_operator",
                adapter_id=args.id,
                reason=result.adapter.close_reason if result.adapter else None,
                note=args.reason,
            )
        if not args.json:
            admin_render.print_close(result, args.id)
        return 0

    return _run_admin(command)


def _workers(args: argparse.Namespace) -> int:
    from sluice.cli import admin_fleet, admin_json, admin_render
    from sluice.state.connection import sync_client

    def command(settings: Settings) -> int:
        rq_redis = sync_client(settings)
        try:
            report = admin_fleet.list_workers(rq_redis, settings.queue_name)
        finally:
            rq_redis.close()
        if args.json:
            admin_json.print_json(admin_json.workers_json(report))
        else:
            admin_render.print_workers(report)
        return 0

    return _run_admin(command)


def _sessions_ls(args: argparse.Namespace) -> int:
    from sluice.cli import admin, admin_fleet, admin_json, admin_render

    def command(settings: Settings) -> int:
        sessions = admin.run_async(
            settings, lambda redis: admin_fleet.list_sessions(redis, app_id=args.app)
        )
        if args.json:
            admin_json.print_json([admin_json.session_json(session) for session in sessions])
        else:
            admin_render.print_sessions(sessions)
        return 0

    return _run_admin(command)


def _warn_if_dev(dev: bool) -> None:
    if dev:
        print(
            "WARNING: development mode — app 'demo' with secret 'demo' is enabled, loopback "
            "and private endpoints are allowed. Never expose this to a network.",
            file=sys.stderr,
        )


def _help(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """`sluice` or a group without a subcommand: its help, not an error."""

    def show(_: argparse.Namespace) -> int:
        parser.print_help()
        return 0

    return show


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sluice", description=__doc__)
    parser.add_argument("--version", action="version", version=f"sluice {__version__}")
    sub = parser.add_subparsers(dest="command")
    parser.set_defaults(func=_help(parser))

    api = sub.add_parser("api", help="the control plane (adapters API)")
    api.add_argument("--host")
    api.add_argument("--port", type=int)
    api.set_defaults(func=_api)

    worker = sub.add_parser("worker", help="a worker host: a pool of adapter processes")
    worker.add_argument("--processes", type=int, help="pool size (SLUICE_WORKER_PROCESSES)")
    worker.set_defaults(func=_worker)

    sfu = sub.add_parser("sfu", help="the embedded SFU's nodes (sessions API); `nodes` lists them")
    sfu.add_argument("--host")
    sfu.add_argument("--port", type=int, help="the first node's port (SLUICE_SFU_PORT)")
    sfu.add_argument("--nodes", type=int, help="node processes (SLUICE_SFU_NODES; 0: one per core)")
    sfu.set_defaults(func=_sfu)
    sfu_sub = sfu.add_subparsers(dest="sfu_command")
    sfu_nodes = sfu_sub.add_parser("nodes", help="the SFU nodes in Redis: address and load")
    sfu_nodes.add_argument("--json", action="store_true", help="JSON instead of a table")
    sfu_nodes.set_defaults(func=_sfu_nodes)

    dev = sub.add_parser("dev", help="everything on this machine, in development mode")
    dev.add_argument("--procfile", default="Procfile")
    dev.set_defaults(func=_dev)

    adapters = sub.add_parser("adapters", help="list, inspect and close adapters")
    adapters_sub = adapters.add_subparsers(dest="adapters_command")
    adapters.set_defaults(func=_help(adapters))

    ls = adapters_sub.add_parser("ls", help="adapters, newest first (by default the live ones)")
    ls.add_argument("--app", help="only this app's adapters")
    ls.add_argument(
        "--state",
        choices=[state.value for state in AdapterState],
        help="only adapters in this state",
    )
    ls.add_argument("--all", action="store_true", help="also closed adapters still retained")
    ls.add_argument("--json", action="store_true", help="JSON instead of a table")
    ls.set_defaults(func=_adapters_ls)

    show = adapters_sub.add_parser("show", help="every field of one adapter")
    show.add_argument("id", help="adapter id")
    show.add_argument("--json", action="store_true", help="JSON instead of a list")
    show.set_defaults(func=_adapters_show)

    close = adapters_sub.add_parser(
        "close", help="close one adapter as the API does (reason api_close)"
    )
    close.add_argument("id", help="adapter id")
    close.add_argument(
        "--reason",
        metavar="NOTE",
        help="a note for this command's log line (the record's close reason is api_close)",
    )
    close.add_argument("--json", action="store_true", help="JSON, as the API's close answers")
    close.set_defaults(func=_adapters_close)

    workers = sub.add_parser("workers", help="the RQ worker processes of the adapters queue")
    workers.add_argument("--json", action="store_true", help="JSON instead of a table")
    workers.set_defaults(func=_workers)

    sessions = sub.add_parser("sessions", help="SFU sessions, as the SFUs' registry holds them")
    sessions_sub = sessions.add_subparsers(dest="sessions_command")
    sessions.set_defaults(func=_help(sessions))
    sessions_ls = sessions_sub.add_parser("ls", help="sessions, newest first")
    sessions_ls.add_argument("--app", help="only this app's sessions")
    sessions_ls.add_argument("--json", action="store_true", help="JSON instead of a table")
    sessions_ls.set_defaults(func=_sessions_ls)
    add_webhooks_command(sub, _run_admin, _help)
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
