"""Redis key and channel names, in one place so every process agrees on them.

Lua scripts in `sluice.state.store` build adapter keys from ids with the same prefixes, so a
change here must be mirrored there (a unit test checks both agree).
"""

PREFIX = "sluice"
HEARTBEATS = f"{PREFIX}:heartbeats"  # zset: adapter id → heartbeat deadline (ms, Redis clock)
PENDING = f"{PREFIX}:pending"  # zset: adapter id → claim deadline (ms) while unclaimed
RESUMING = f"{PREFIX}:resuming"  # zset: lost egress adapter id → claim deadline (ms)
# zset: adapter id → when the API replica creating it will have answered at the latest (ms)
UNANSWERED = f"{PREFIX}:unanswered"
REAPER = f"{PREFIX}:reaper"  # hash: last pass and quiet period of the reapers (ms)
# stream: lifecycle events of adapters whose app has a webhook, written by the transition
# scripts themselves, read by the webhook dispatchers (consumer group below).
WEBHOOK_OUTBOX = f"{PREFIX}:webhook_outbox"
WEBHOOK_DISPATCHERS = "dispatchers"  # the outbox's consumer group


def adapter(adapter_id: str) -> str:
    return f"{PREFIX}:adapter:{adapter_id}"


def adapter_events(adapter_id: str) -> str:
    """Pub/sub channel on which state changes of one adapter are announced."""
    return f"{PREFIX}:adapter:{adapter_id}:events"


def adapter_headers(adapter_id: str) -> str:
    """string: the adapter's header values (E6), sealed (`sluice.state.sealed_headers`)."""
    return f"{PREFIX}:adapter:{adapter_id}:headers"


def adapter_control(adapter_id: str) -> str:
    """Pub/sub channel on which a running pipeline receives close requests."""
    return f"{PREFIX}:adapter:{adapter_id}:control"


def app_adapters(app_id: str) -> str:
    """zset: adapter ids of one app, scored by creation time (ms)."""
    return f"{PREFIX}:app:{app_id}:adapters"


def app_live(app_id: str) -> str:
    """set: ids of one app's adapters that are not closed (its concurrency quota)."""
    return f"{PREFIX}:app:{app_id}:live"


def app_create_rate(app_id: str, second: int) -> str:
    """counter: create requests of one app within one wall-clock second."""
    return f"{PREFIX}:app:{app_id}:creates:{second}"


METRICS = f"{PREFIX}:metrics"  # hash: cluster-wide counter totals, `{direction}|{field}`


def usage(app_id: str, hour: int) -> str:
    """hash: `{direction}_bytes` one app's adapters moved during one hour (epoch hours)."""
    return f"{PREFIX}:usage:{app_id}:{hour}"


# SFU nodes (`sluice.state.sfu_nodes`): the directory every node heartbeats into.
SFU_NODES = f"{PREFIX}:sfu:nodes"  # zset: node id → last heartbeat (ms, Redis clock)


def sfu_node(node_id: str) -> str:
    """hash, with a TTL renewed by each heartbeat: one SFU node's address and load."""
    return f"{PREFIX}:sfu:node:{node_id}"
