"""The README's signature verifiers (Security section), run as a reader would copy them:
the Python block with `exec`, the JavaScript block with node."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def readme_block(language: str, first_line: str) -> str:
    """The README's fenced block in `language` whose first line starts with `first_line`."""
    readme = (ROOT / "README.md").read_text()
    for code in re.findall(rf"^```{language}\n(.*?)^```$", readme, flags=re.S | re.M):
        if code.startswith(first_line):
            return str(code)
    raise AssertionError(f"no {language} block starting {first_line!r} in the README")


def python_verifier(name: str) -> Callable[..., bool]:
    """`verify_dial` or `verify_webhook` from the README's Python block."""
    namespace: dict[str, Any] = {}
    exec(readme_block("python", "# verify_sluice.py"), namespace)
    function: Callable[..., bool] = namespace[name]
    return function


def has_node() -> bool:
    return shutil.which("node") is not None


def node_verifies(call: str, headers: Mapping[str, str], secret: str, **values: Any) -> bool:
    """Runs the README's JavaScript block, then `call` (an expression that awaits
    `verifyDial(...)` or `verifyWebhook(...)`) with `request` built from `headers` and
    `body`, and `secret`, `now` and the other `values` bound as constants."""
    harness = readme_block("javascript", "// verify-sluice.mjs") + (
        "\nconst v = JSON.parse(process.argv.at(-1));\n"
        "const request = new Request('http://receiver/', {method: 'POST', headers: v.headers,"
        " body: v.body === undefined ? undefined : v.body});\n"
        f"const ok = await {call};\n"
        "console.log(ok ? 'valid' : 'invalid');\n"
    )
    args = json.dumps({"headers": dict(headers), "secret": secret, **values})
    out = subprocess.run(
        ["node", "--input-type=module", "-e", harness, args],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return out.stdout.strip() == "valid"
