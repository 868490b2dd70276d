"""What the soak checks at the end (bounds and identities, each with why it holds)."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

import redis.asyncio
from prometheus_client.parser import text_string_to_metric_families

from tests.soak.plan import (
    ADAPTER_GROWTH_BOUND_KIB,
    FD_MARGIN,
    INGEST_ABORT_LOSS_MAX,
    INGEST_ENDS,
    LOST_PER_DROP_MAX,
    SERVICE_GROWTH_BOUND_KIB,
    Plan,
)

# --- Redis and /metrics -----------------------------------------------------------------

# Key families: ids, names and numbers folded, so growth shows as a count per family.
_FAMILIES = [
    (re.compile(r"sluice:adapter:[0-9a-f]+"), "sluice:adapter:{id}"),
    (re.compile(r"sluice:app:[^:]+:creates:\d+"), "sluice:app:{app}:creates:{second}"),
    (re.compile(r"sluice:app:[^:]+:(adapters|live)"), r"sluice:app:{app}:\1"),
    (re.compile(r"sluice:usage:[^:]+:\d+"), "sluice:usage:{app}:{hour}"),
    (re.compile(r"sluice:sfu:session:[^:]+(:tracks)?"), r"sluice:sfu:session:{id}\1"),
    (re.compile(r"rq:(job|workers?|queue|wip|started|finished|failed|canceled|deferred|"
                r"scheduled|clean_registries|execution|executions|results):(.+)"), r"rq:\1:{…}"),
]  # fmt: skip
# What may exist without a TTL once every adapter is closed: bounded singletons, and the
# app index (one member per adapter ever created: see `check_keys`).
UNEXPIRING_AT_REST = {
    "sluice:metrics",
    "sluice:reaper",
    "sluice:app:{app}:adapters",
    "rq:workers",
    "rq:workers:{…}",
    "rq:queues",
}
# Live-only keys: empty zsets and sets vanish, and rq deletes a job that succeeded
# (result_ttl=0); a failed one would stay for an hour (failure_ttl).
ABSENT_AT_REST = {
    "sluice:heartbeats",
    "sluice:pending",
    "sluice:resuming",
    "sluice:app:{app}:live",
    "rq:job:{…}",
    "rq:queue:{…}",
    "rq:wip:{…}",
    "rq:started:{…}",
    "rq:failed:{…}",
}


def key_family(key: str) -> str:
    for pattern, name in _FAMILIES:
        if pattern.fullmatch(key):
            return pattern.sub(name, key)
    return key


async def redis_figures(conn: redis.asyncio.Redis, *, with_keys: bool) -> dict[str, Any]:
    """DBSIZE and keys per family; with `with_keys`, each key's TTL and size too."""
    names = [k async for k in conn.scan_iter(count=1000)]
    found: dict[str, Any] = {
        "dbsize": await conn.dbsize(),
        "families": dict(Counter(key_family(k) for k in names)),
    }
    if with_keys:
        sizes = {"hash": conn.hlen, "zset": conn.zcard, "set": conn.scard, "list": conn.llen}
        keys = {}
        for key in names:
            kind = await conn.type(key)
            size = await sizes[kind](key) if kind in sizes else 1
            keys[key] = {"ttl": await conn.ttl(key), "type": kind, "size": size}
        found["keys"] = keys
    return found


def cluster_counters(text: str) -> dict[str, float]:
    """`sluice_adapter_*_total` of the API's /metrics, as `name{label,...}` → value."""
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("sluice_adapter_") and sample.name.endswith("_total"):
                labels = ",".join(sample.labels[k] for k in sorted(sample.labels))
                values[f"{sample.name}{{{labels}}}"] = sample.value
    return values


# --- checks ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def _sample(report: dict[str, Any], label: str) -> dict[str, Any]:
    return next(s for s in report["samples"] if s["label"] == label)


def _long_lived(name: str) -> bool:
    return not name.startswith(("ingest", "soak", "?"))


def check_memory(report: dict[str, Any]) -> list[Check]:
    """(a) After the warm-up, no long-lived process grows its RSS past the bound."""
    warm, last = _sample(report, "warm"), _sample(report, "last")
    found = []
    for name, end in last["procs"].items():
        start = warm["procs"].get(name)
        if not _long_lived(name) or start is None or start["pid"] != end["pid"]:
            continue
        growth = end["rss_kib"] - start["rss_kib"]
        adapter = name.startswith(("egress", "worker-"))
        bound = ADAPTER_GROWTH_BOUND_KIB if adapter else SERVICE_GROWTH_BOUND_KIB
        detail = (
            f"RSS {start['rss_kib'] / 1024:.1f} → {end['rss_kib'] / 1024:.1f} MiB "
            f"({growth:+d} KiB), PSS {start['pss_kib'] / 1024:.1f} → {end['pss_kib'] / 1024:.1f}"
        )
        found.append(Check(f"memory {name}", growth <= bound, f"{detail}; bound {bound} KiB"))
    return found


def check_processes(report: dict[str, Any], plan: Plan) -> list[Check]:
    """(b) At rest the worker host is its pool again; after the stop nothing is left."""
    base, rest = _sample(report, "baseline")["tree"], _sample(report, "rest")["tree"]
    return [
        Check(
            "no adapter process left at rest",
            not rest["grandchildren"] and not rest["zombies"],
            f"grandchildren {rest['grandchildren']}, zombies {rest['zombies']}",
        ),
        Check(
            "the pool is the one it started with",
            rest["children"] == base["children"]
            and rest["pool"] == base["pool"]
            and len(base["pool"]) == plan.workers,
            f"{len(rest['pool'])} pool workers of {plan.workers}, children "
            f"{len(base['children'])} → {len(rest['children'])} (pool + health server)",
        ),
        Check(
            "no process of the stack survives its stop",
            not report["left_after_stop"],
            f"left: {report['left_after_stop'] or 'none'}",
        ),
    ]


def check_fds(report: dict[str, Any]) -> list[Check]:
    """(c) fds at rest are back to their count after the warm-up; adapters' stay flat.

    The reference is the warm-up, not the first sample: connection pools (the API's to
    Redis, Redis's clients) grow on first concurrent use and keep their connections.
    """
    base, warm, last, rest = (_sample(report, x) for x in ("baseline", "warm", "last", "rest"))
    found = []
    for name, end in rest["procs"].items():
        start = warm["procs"].get(name)
        if _long_lived(name) and start is not None and start["pid"] == end["pid"]:
            first = base["procs"].get(name, {}).get("fds", "-")
            detail = f"{first} at the start, {start['fds']} after the warm-up, {end['fds']} at rest"
            found.append(Check(f"fds {name}", end["fds"] <= start["fds"] + FD_MARGIN, detail))
    for name, end in last["procs"].items():
        start = warm["procs"].get(name)
        if name.startswith("egress") and start is not None:
            detail = f"{start['fds']} after the warm-up, {end['fds']} at the end"
            found.append(Check(f"fds {name}", end["fds"] <= start["fds"] + FD_MARGIN, detail))
    return found


def check_keys(report: dict[str, Any]) -> list[Check]:
    """(d) At rest: live-only keys gone, every other key expires or is a bounded singleton."""
    keys = _sample(report, "rest")["redis"]["keys"]
    created = len(report["egress"]) + len(report["ingest"])
    records = {k: v for k, v in keys.items() if key_family(k) == "sluice:adapter:{id}"}
    live = sorted(k for k in keys if key_family(k) in ABSENT_AT_REST)
    unexpected = sorted(
        k for k, v in keys.items() if v["ttl"] < 0 and key_family(k) not in UNEXPIRING_AT_REST
    )
    unbounded = sorted(
        k
        for k, v in keys.items()
        if v["ttl"] < 0 and v["size"] > 100 and key_family(k) != "sluice:app:{app}:adapters"
    )
    index = [v["size"] for k, v in keys.items() if key_family(k) == "sluice:app:{app}:adapters"]
    return [
        Check(
            "closed adapter records all kept, all expiring",
            len(records) == created and all(v["ttl"] > 0 for v in records.values()),
            f"{len(records)} records for {created} adapters, TTLs "
            f"{min((v['ttl'] for v in records.values()), default=0)}-"
            f"{max((v['ttl'] for v in records.values()), default=0)} s",
        ),
        Check("no live-only key left", not live, f"left: {live or 'none'}"),
        Check(
            "the SFU dropped every session",
            # The node directory stays: the SFU is still running.
            not any(key_family(k).startswith("sluice:sfu:session:") for k in keys),
            f"in {report['sfu_reclaim_s']} s after the last peer left",
        ),
        Check(
            "no unexpected key without a TTL, none unbounded",
            not unexpected and not unbounded,
            f"without TTL: {sorted(k for k, v in keys.items() if v['ttl'] < 0)}",
        ),
        # Never trimmed: one member per adapter ever created, outliving its record.
        Check(
            "app index holds every adapter ever created",
            index == [created],
            f"{index} members for {created} creates (grows without bound)",
        ),
    ]


def check_egress(report: dict[str, Any]) -> list[Check]:
    """(e) Per egress adapter, endpoint and record agree.

    With M the last `sequenceNumber` + 1 the endpoint saw, S and D the record's
    `packets` and `dropped`, U the distinct sequence numbers seen and `drops` the drops
    the endpoint made:
    - every drop is re-dialled once: `reconnects == drops`, and the adapter ends
      `api_close` (an outage shorter than the window never closes it);
    - produced = sent + dropped: stamps are given at production, every Packet then
      leaves the backlog once, sent (counted after `send` returns) or dropped, and the
      final close is 1000 after the sender stopped, so M - 1 <= S + D <= M (the one
      Packet in the sender's hand at the close may arrive uncounted);
    - lost in flight L = M - U - D, sent while a connection was being cut: 0 <= L <=
      LOST_PER_DROP_MAX per drop; a negative L would be a Packet counted dropped that
      arrived;
    - at-least-once: the Packet whose send a drop interrupted is re-sent first, so
      duplicates <= drops;
    - `bytes` counts the same Packets: bytes per Packet agree on both sides.
    """
    found = []
    for i, adapter in enumerate(report["egress"]):
        rec, ep = adapter["record"], adapter["endpoint"]
        c = rec["counters"]
        produced, sent, dropped = ep["produced_seen"], c["packets"], c["dropped"]
        drops = len(ep["drops"])
        lost = produced - ep["unique"] - dropped
        sizes = (c["bytes"] / max(sent, 1), ep["unique_bytes"] / max(ep["unique"], 1))
        problems = [
            why
            for why, bad in (
                (f"ended {rec.get('closeReason')}", rec.get("closeReason") != "api_close"),
                (f"reconnects {c['reconnects']} != drops {drops}", c["reconnects"] != drops),
                ("sent + dropped != produced", not produced - 1 <= sent + dropped <= produced),
                (f"lost {lost}", not 0 <= lost <= LOST_PER_DROP_MAX * drops),
                (f"duplicates {ep['duplicates']} > drops", ep["duplicates"] > drops),
                (f"bytes/Packet {sizes[0]:.1f} vs {sizes[1]:.1f}", abs(sizes[0] - sizes[1]) > 8),
                (f"{ep['undecodable']} undecodable", ep["undecodable"] > 0),
            )
            if bad
        ]
        detail = (
            f"produced {produced} = sent {sent} + dropped {dropped} "
            f"(+{produced - sent - dropped}); seen {ep['unique']}, lost {lost}, duplicates "
            f"{ep['duplicates']}; {drops} drops, {c['reconnects']} reconnects"
        )
        found.append(Check(f"egress{i} counters", not problems, "; ".join(problems) or detail))
    return found


def check_ingest(report: dict[str, Any]) -> list[Check]:
    """(e) Per ingest adapter: `bytes` and `packets` are what the endpoint sent.

    Exact when the endpoint stopped sending before the end (closed through the API once
    the record had counted everything, or a 1001, which the pipeline reads up to);
    after an abort, what was still in flight is lost: 0 <= sent - counted <= 1 MiB.
    """
    found = []
    for end in INGEST_ENDS:
        gens = [g for g in report["ingest"] if g["end"] == end]
        want = "api_close" if end == "api" else "endpoint_closed"
        problems = []
        for g in gens:
            rec = g["record"]
            c = rec["counters"]
            short = g["sent_bytes"] - c["bytes"]
            exact = c["bytes"] == g["sent_bytes"] and c["packets"] == g["sent_packets"]
            if (rec["state"], rec.get("closeReason")) != ("closed", want):
                problems.append(f"{g['slot']}.{g['number']} {rec.get('closeReason')}")
            if (end != "abort" and not exact) or not 0 <= short <= INGEST_ABORT_LOSS_MAX:
                name = f"{g['slot']}.{g['number']}"
                problems.append(f"{name} sent {g['sent_bytes']} counted {c['bytes']}")
            if c["skipped"]:
                problems.append(f"{g['slot']}.{g['number']} skipped {c['skipped']}")
        lost = sum(g["sent_bytes"] - g["record"]["counters"]["bytes"] for g in gens)
        detail = f"{len(gens)} adapters, {want}, bytes == sent" + (
            f" (lost in aborts: {lost} bytes)" if end == "abort" else ""
        )
        found.append(Check(f"ingest ended by {end}", not problems, "; ".join(problems) or detail))
    found.append(
        Check(
            "every ingest create succeeded first time",
            not report["create_retries"],
            f"retried: {report['create_retries'] or 'none'}",
        )
    )
    return found


def check_totals(report: dict[str, Any]) -> list[Check]:
    """(e) Cluster totals in /metrics and the app's usage are the sums over the records:
    the store adds each save's growth to both in the script that saves the record."""
    records = {
        "egress": [a["record"] for a in report["egress"]],
        "ingest": [g["record"] for g in report["ingest"]],
    }
    cluster, usage = report["cluster"], report["usage"]
    found = []
    for direction, recs in records.items():
        wrong = []
        for counter, metric in (
            ("bytes", "sluice_adapter_bytes_total"),
            ("packets", "sluice_adapter_packets_total"),
            ("dropped", "sluice_adapter_backlog_dropped_total"),
            ("reconnects", "sluice_adapter_reconnects_total"),
        ):
            total = sum(r["counters"][counter] for r in recs)
            if cluster.get(f"{metric}{{{direction}}}") != total:
                wrong.append(f"{metric} {cluster.get(f'{metric}{{{direction}}}')} != {total}")
        total_bytes = sum(r["counters"]["bytes"] for r in recs)
        if usage[f"{direction}Bytes"] != total_bytes:
            wrong.append(f"usage {usage[f'{direction}Bytes']} != {total_bytes}")
        reasons = Counter(r.get("closeReason") for r in recs)
        for reason, count in reasons.items():
            if cluster.get(f"sluice_adapter_closes_total{{{direction},{reason}}}") != count:
                wrong.append(f"closes {reason} != {count}")
        detail = f"{total_bytes} bytes in {len(recs)} records == /metrics == usage; closes "
        detail += str(dict(reasons))
        found.append(Check(f"{direction} totals", not wrong, "; ".join(wrong) or detail))
    return found


def run_checks(report: dict[str, Any], plan: Plan) -> list[Check]:
    return [
        *check_memory(report),
        *check_processes(report, plan),
        *check_fds(report),
        *check_keys(report),
        *check_egress(report),
        *check_ingest(report),
        *check_totals(report),
    ]


def render(report: dict[str, Any], checks: list[Check]) -> str:
    """The summary: per process memory and fds, the chaos, the keys, the checks."""
    base, warm, last, rest = (_sample(report, x) for x in ("baseline", "warm", "last", "rest"))
    lines = [
        f"{'process':<22}{'pid':>8}{'RSS warm→last MiB':>22}{'Δ KiB':>8}"
        f"{'PSS warm→last MiB':>22}{'fds base/warm/last/rest':>26}"
    ]
    for name, end in last["procs"].items():
        start = warm["procs"].get(name, end)
        fds = [s["procs"].get(name, {}).get("fds", "-") for s in (base, warm, last, rest)]
        lines.append(
            f"{name:<22}{end['pid']:>8}"
            f"{start['rss_kib'] / 1024:>13.1f} → {end['rss_kib'] / 1024:<6.1f}"
            f"{end['rss_kib'] - start['rss_kib']:>+8d}"
            f"{start['pss_kib'] / 1024:>13.1f} → {end['pss_kib'] / 1024:<6.1f}"
            f"{'/'.join(map(str, fds)):>26}"
        )
    pss, rss = ([sum(p[k] for p in s["procs"].values()) / 1024 for s in (warm, last)]
                for k in ("pss_kib", "rss_kib"))  # fmt: skip
    lines.append(f"all processes: PSS {pss[0]:.0f} → {pss[1]:.0f} MiB, "
                 f"RSS {rss[0]:.0f} → {rss[1]:.0f} MiB (shared pages counted in each)")  # fmt: skip
    drops = Counter(m for a in report["egress"] for m in a["endpoint"]["drops"])
    reconnects = sum(a["record"]["counters"]["reconnects"] for a in report["egress"])
    ends = Counter(g["end"] for g in report["ingest"])
    lines.append(f"egress drops {dict(drops)}, reconnects {reconnects}; "
                 f"ingest adapters {len(report['ingest'])} ended {dict(ends)}")  # fmt: skip
    families = sorted(set(warm["redis"]["families"]) | set(rest["redis"]["families"]))
    lines.append("Redis keys per family, warm → rest: " + ", ".join(
        f"{f} {warm['redis']['families'].get(f, 0)}→{rest['redis']['families'].get(f, 0)}"
        for f in families
    ))  # fmt: skip
    lines += [f"{'ok  ' if c.ok else 'FAIL'} {c.name}: {c.detail}" for c in checks]
    return "\n".join(lines)
