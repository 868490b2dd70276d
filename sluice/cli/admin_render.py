"""Renders what `sluice.admin` gathered as rich tables for people (`admin_json`: scripts).

Tables fit an 80-column terminal by stacking related values in one cell rather than
adding columns. Piped (stdout not a terminal) nothing is wrapped or padded, and rich
prints no colour codes (nor under `NO_COLOR`). Every value from Redis goes into a
`Text`, never into markup: a track named `[bold]` must print as itself.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterable
from typing import Any

from rich import box
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from sluice.cli.admin import AdapterInfo, CloseOutcome, CloseResult
from sluice.cli.admin_fleet import SessionInfo, WorkersReport
from sluice.state.records import COUNTER_NAMES, AdapterState
from sluice.state.sfu_nodes import NodeInfo

_STATE_STYLES = {
    AdapterState.CONNECTING: "yellow",
    AdapterState.ACTIVE: "green",
    AdapterState.RECONNECTING: "yellow",
    AdapterState.CLOSED: "dim",
}


# Wide enough that no table of ours wraps: piped output is read by programs (grep, awk)
# and by pagers that scroll sideways.
_PIPED_WIDTH = 1000


def emit(*renderables: RenderableType) -> None:
    """Prints to stdout, looked up now (tests capture it): as wide as the terminal, or
    when piped, lines as long as their content, without trailing spaces."""
    out = Console(highlight=False)
    if out.is_terminal:
        out.print(*renderables)
        return
    piped = Console(highlight=False, width=_PIPED_WIDTH, file=io.StringIO(), color_system=None)
    with piped.capture() as captured:
        piped.print(*renderables)
    sys.stdout.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))


# --- numbers ------------------------------------------------------------------------


def human_bytes(count: int) -> str:
    """`1.2 MB`: decimal units, as network traffic is counted."""
    if count < 1000:
        return f"{count} B"
    value = float(count)
    for unit in ("kB", "MB", "GB", "TB"):
        value /= 1000
        if value < 999.95 or unit == "TB":
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def human_duration(seconds: float) -> str:
    """`42s`, `4m12s`, `3h02m`, `2d04h`: two units at most."""
    total = max(int(seconds), 0)
    if total < 60:
        return f"{total}s"
    if total < 3600:
        return f"{total // 60}m{total % 60:02d}s"
    if total < 86_400:
        return f"{total // 3600}h{total % 3600 // 60:02d}m"
    return f"{total // 86_400}d{total % 86_400 // 3600:02d}h"


def human_deadline(remaining_s: float) -> str:
    """`in 1.2 s` or `overdue by 3.4 s` (whole units past a minute)."""
    span = abs(remaining_s)
    text = f"{span:.1f} s" if span < 60 else human_duration(span)
    return f"in {text}" if remaining_s >= 0 else f"overdue by {text}"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _age(age_s: float | None) -> str:
    return "?" if age_s is None else human_duration(age_s)


# --- tables -------------------------------------------------------------------------


def _table(*headers: str) -> Table:
    table = Table(
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        show_edge=False,
        show_lines=True,  # SIMPLE_HEAD's row separator is blank: it sets rows apart
        collapse_padding=True,
    )
    for header in headers:
        table.add_column(header, overflow="fold")
    return table


def _lines(*parts: tuple[str, str] | str) -> Text:
    """One cell of stacked lines; each part is text or (text, style)."""
    text = Text()
    for i, part in enumerate(parts):
        if i:
            text.append("\n")
        if isinstance(part, tuple):
            text.append(part[0], style=part[1])
        else:
            text.append(part)
    return text


# --- adapters -----------------------------------------------------------------------


def adapters_table(adapters: Iterable[AdapterInfo]) -> Table:
    """One adapter per row, three lines each.

    The adapter and session ids (32 characters each) share the first column, so the
    rest of an 80-column terminal is left to the endpoint.
    """
    table = _table("ADAPTER / SESSION / APP", "TRACK / ENDPOINT / WORKER", "STATE / AGE", "DATA")
    # Fixed and unwrapped columns keep their width; only the endpoint's column gives way.
    table.columns[0].width = 32  # ids are copied from here: never fold one
    table.columns[2].max_width = 15  # a long close reason folds rather than crowd DATA
    table.columns[3].justify = "right"
    table.columns[3].no_wrap = True
    for info in adapters:
        state: list[tuple[str, str] | str] = [
            (info.state.value, _STATE_STYLES[info.state]),
            _age(info.age_s),
        ]
        if info.close_reason:
            state.append((info.close_reason, "dim"))
        table.add_row(
            _lines(
                info.adapter_id,
                (info.session_id or "(no session yet)", "dim"),
                (f"{info.app_id} {info.direction.value}", "dim"),
            ),
            _lines(info.track_name, info.endpoint, (info.worker or "(unclaimed)", "dim")),
            _lines(*state),
            _lines(
                human_bytes(info.counters["bytes"]),
                (f"{info.counters['packets']} pkt", "dim"),
            ),
        )
    return table


def print_adapters(adapters: list[AdapterInfo], *, include_closed: bool) -> None:
    if not adapters:
        emit("no adapters" if include_closed else "no live adapters")
        return
    live = sum(1 for info in adapters if info.state is not AdapterState.CLOSED)
    emit(adapters_table(adapters), f"{_count(len(adapters), 'adapter')}, {live} live")


def _label_grid() -> Table:
    """Label, then value(s): the layout of `adapters show`, whose parts align."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True, min_width=len("max_loop_lag_ms"))
    return grid


def adapter_details(info: AdapterInfo) -> Table:
    """Every field of one adapter, one per line."""
    grid = _label_grid()
    grid.add_column(overflow="fold")
    rows: list[tuple[str, Text | str]] = [
        ("adapter", info.adapter_id),
        ("app", info.app_id),
        ("direction", info.direction.value),
        ("state", Text(info.state.value, style=_STATE_STYLES[info.state])),
        ("session", info.session_id or "-"),
        ("track", info.track_name),
        ("codec", info.codec),
        ("endpoint", info.endpoint),
        ("worker", info.worker or "(unclaimed)"),
        ("created", f"{info.created_at} ({_age(info.age_s)} ago)"),
    ]
    if info.closed_at or info.close_reason:
        rows.append(("closed", f"{info.closed_at or '?'} ({info.close_reason or '?'})"))
    if info.heartbeat_in_s is not None:
        rows.append(("heartbeat", human_deadline(info.heartbeat_in_s)))
    if info.claim_in_s is not None:
        rows.append(("claim", f"withdrawn {human_deadline(info.claim_in_s)}"))
    if info.close_requested:
        rows.append(("close", "requested"))
    if info.settings:
        rows.append(("settings", _settings(info.settings)))
    for name in COUNTER_NAMES:
        count = info.counters[name]
        rows.append((name, f"{count} ({human_bytes(count)})" if name == "bytes" else str(count)))
    rows += list(info.other_fields.items())
    for name, value in rows:
        grid.add_row(name, value if isinstance(value, Text) else Text(value))
    return grid


def _settings(settings: dict[str, Any]) -> str:
    """`sampleRate 16000`, one setting a line, as the API names them (JSON values)."""
    return "\n".join(f"{name} {json.dumps(value)}" for name, value in settings.items())


def print_adapter(info: AdapterInfo) -> None:
    emit(adapter_details(info), "", settings_in_effect(info), "", loop_lag_histogram(info))


# --- adapters show: the settings in effect and the loop-lag histogram ---------------

_BAR_WIDTH = 30
_EIGHTHS = " ▏▎▍▌▋▊▉"  # a bar's last cell, in eighths of a cell


def settings_in_effect(info: AdapterInfo) -> Table:
    """The extension settings the adapter runs with, defaults included, as the API names
    them (`settings` in its answer); a record from before extensions has none."""
    grid = _label_grid()
    grid.add_column(overflow="fold")
    if not info.settings:
        grid.add_row("settings", Text("(none)", style="dim"))
    for i, (name, value) in enumerate(sorted(info.settings.items())):
        shown = value if isinstance(value, str) else json.dumps(value, separators=(", ", ": "))
        grid.add_row("settings" if i == 0 else "", Text(f"{name} {shown}"))
    return grid


def bar(count: int, most: int, width: int = _BAR_WIDTH) -> str:
    """`count` as a bar of `width` cells at `most`; any non-zero count shows."""
    if count <= 0 or most <= 0:
        return ""
    eighths = max(1, round(count / most * width * 8))
    return "█" * (eighths // 8) + _EIGHTHS[eighths % 8].strip()


def _bound(bound_ms: float | None, previous_ms: float | None) -> str:
    if bound_ms is None:
        return f"> {_ms(previous_ms or 0)}"
    return f"≤ {_ms(bound_ms)}"


def _ms(value_ms: float) -> str:
    return f"{value_ms / 1000:g} s" if value_ms >= 1000 else f"{value_ms:g} ms"


def loop_lag_histogram(info: AdapterInfo) -> Table:
    """How late the pipeline's event loop ran its timers, one bar per bucket: a loop
    that stalls for a 20 ms frame shows up in the buckets past 10 ms."""
    samples = sum(count for _, count in info.loop_lag)
    grid = _label_grid()
    grid.add_column(no_wrap=True)
    grid.add_column(no_wrap=True, min_width=_BAR_WIDTH)
    grid.add_column(justify="right", no_wrap=True)
    grid.add_column(justify="right", no_wrap=True)
    if not samples:
        grid.add_row("loop lag", Text("no samples yet", style="dim"))
        return grid
    most = max(count for _, count in info.loop_lag)
    previous: float | None = None
    for i, (bound_ms, count) in enumerate(info.loop_lag):
        grid.add_row(
            "loop lag" if i == 0 else "",
            _bound(bound_ms, previous),
            Text(bar(count, most), style="cyan"),
            str(count),
            f"{100 * count / samples:.1f} %" if count else "",
        )
        previous = bound_ms
    mean_ms = info.loop_lag_sum_ms / samples
    grid.add_row("", "", Text(f"{samples} samples, mean {mean_ms:.1f} ms", style="dim"))
    return grid


def print_close(result: CloseResult, adapter_id: str) -> None:
    """What the close did; the caller prints an unknown id to stderr itself."""
    info = result.adapter
    if result.outcome is CloseOutcome.ALREADY_CLOSED and info is not None:
        line = f"{adapter_id}: already closed ({info.close_reason or '?'})"
    elif info is None:  # closed while we looked, then failed or was withdrawn
        line = f"{adapter_id}: closed; its record is gone"
    else:
        line = (
            f"{adapter_id}: closed ({info.close_reason or '?'}) in {result.waited_s:.1f} s, "
            f"{human_bytes(info.counters['bytes'])} moved"
        )
    emit(Text(line))


# --- sessions and workers -----------------------------------------------------------


def sessions_table(sessions: Iterable[SessionInfo]) -> Table:
    """One session per row; its SFU node (when it names one) under its id."""
    table = _table("SESSION / NODE", "APP", "AGE", "TRACKS")
    table.columns[0].no_wrap = True
    for session in sessions:
        tracks = [f"{t.track_name} {t.kind}/{t.codec or '?'} {t.status}" for t in session.tracks]
        table.add_row(
            _lines(session.session_id, *([(session.node_id, "dim")] if session.node_id else [])),
            Text(session.app_id),
            human_duration(session.age_s),
            Text("\n".join(tracks) or "-"),
        )
    return table


def sfu_nodes_table(nodes: Iterable[NodeInfo]) -> Table:
    """One SFU node per row: where it answers, and the load its last heartbeat gave."""
    table = _table("NODE / URL", "SESSIONS", "PUBLISHED", "FORWARDED", "CASCADES IN", "CPU")
    table.columns[0].no_wrap = True
    for node in nodes:
        load = node.load
        table.add_row(
            _lines(node.node_id, (node.url, "dim")),
            str(load.sessions),
            str(load.published),
            str(load.forwarded),
            str(load.upstreams),
            f"{load.cpu_pct:.0f} %",
        )
    return table


def print_sfu_nodes(nodes: list[NodeInfo]) -> None:
    if not nodes:
        emit("no SFU node is registered (the API uses SLUICE_SFU_URL)")
        return
    streams = sum(node.load.streams for node in nodes)
    emit(sfu_nodes_table(nodes), f"{_count(len(nodes), 'node')}, {streams} streams")


def print_sessions(sessions: list[SessionInfo]) -> None:
    if not sessions:
        emit("no sessions")
        return
    emit(sessions_table(sessions), _count(len(sessions), "session"))


def workers_table(report: WorkersReport) -> Table:
    """One worker per row; names (RQ's pool makes them uuid4 hex) and adapter ids are
    32 characters each, so each gets a column of its own and the rest is stacked."""
    table = _table("WORKER / HOST:PID", "STATE / ADAPTER", "HEARTBEAT / JOBS")
    table.columns[0].width = table.columns[1].width = 32
    for worker in report.workers:
        state: list[tuple[str, str] | str] = [
            (worker.state, "green" if worker.state == "busy" else "")
        ]
        if running := worker.adapter_id or worker.job_id:
            state.append(running)
        table.add_row(
            _lines(worker.name, (f"{worker.hostname or '?'}:{worker.pid or '?'}", "dim")),
            _lines(*state),
            _lines(
                f"{_age(worker.heartbeat_age_s)} ago",
                (f"{worker.successful_jobs} ok {worker.failed_jobs} err", "dim"),
            ),
        )
    return table


def print_workers(report: WorkersReport) -> None:
    summary = (
        f"{_count(len(report.workers), 'worker')}, {report.busy} busy, "
        f"{report.queue_length} queued on {report.queue_name}"
    )
    emit(*([workers_table(report)] if report.workers else []), summary)
