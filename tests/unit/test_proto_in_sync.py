"""`sluice/wire/packet_pb2.py` must be exactly what `proto/packet.proto` generates."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sluice.wire.packet_pb2 import Packet


def test_generated_code_matches_the_proto(repo_root: Path, tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{repo_root / 'proto'}",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            "packet.proto",
        ],
        check=True,
    )
    for name in ("packet_pb2.py", "packet_pb2.pyi"):
        fresh = (tmp_path / name).read_text()
        committed = (repo_root / "sluice" / "wire" / name).read_text()
        assert fresh == committed, f"{name} is stale: run `make proto`"


def test_field_numbers_are_the_contract() -> None:
    fields = {f.name: f.number for f in Packet.DESCRIPTOR.fields}
    assert fields == {"sequenceNumber": 1, "timestamp": 2, "payload": 5}
    assert Packet(payload=b"abc").SerializeToString() == b"\x2a\x03abc"
    assert Packet.FromString(b"") == Packet()  # a zero-length message is an empty Packet
