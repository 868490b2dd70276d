"""The state transitions' Lua scripts (`lua/*.lua`), each read once per process.

Every script is `prelude.lua` (the clock, counter saving, key builders) followed by its
own file; key prefixes are `sluice.state.keys.PREFIX`, filled in here, so Python and Lua
build the same key names.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from sluice.state import keys

NAMES = ("create", "claim", "abandon", "set_live_state", "fail", "close", "heartbeat", "reap")


@cache
def lua(name: str) -> str:
    """The full source of script `name` (one of `NAMES`).

    Raises:
        FileNotFoundError: no such script.
    """
    folder = resources.files("sluice.state").joinpath("lua")
    prelude = folder.joinpath("prelude.lua").read_text(encoding="utf-8")
    body = folder.joinpath(f"{name}.lua").read_text(encoding="utf-8")
    return (prelude + "\n" + body).replace("@PREFIX@", keys.PREFIX)
