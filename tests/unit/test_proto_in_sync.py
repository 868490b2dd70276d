"""`sluice/wire/packet_pb2.py` is what `proto/packet.proto` generates, on every runtime we allow.

The committed module comes from protoc 25 (`make proto`), whose Python code checks no
runtime version and needs only `google.protobuf.internal.builder` (protobuf 3.20): it runs
on protobuf 3.20 through 7, so Sluice installs beside speech SDKs that cap protobuf below
the newest major. Newer protoc output refuses any runtime older than itself. `.ci/run`
runs the codec's tests on the floor pyproject declares.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2
from packaging.requirements import Requirement
from packaging.version import Version

from sluice.wire import packet_pb2
from sluice.wire.packet_pb2 import Packet

GENERATED = Path("sluice/wire/packet_pb2.py")
# The generator `make proto` runs, and what its output needs of the runtime.
GENCODE_VERSION = "4.25.1"
BUILDER_SINCE = Version("3.20.0")


def protobuf_requirement(repo_root: Path) -> Requirement:
    project = tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]
    (spec,) = [d for d in project["dependencies"] if Requirement(d).name == "protobuf"]
    return Requirement(spec)


def without_json_names(
    proto: descriptor_pb2.FileDescriptorProto,
) -> descriptor_pb2.FileDescriptorProto:
    """As the Python generator embeds a descriptor: `json_name` left out (it is derived)."""
    stripped = descriptor_pb2.FileDescriptorProto()
    stripped.CopyFrom(proto)
    for message in stripped.message_type:
        for field in message.field:
            field.ClearField("json_name")
    return stripped


def test_generated_code_matches_the_proto(repo_root: Path, tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{repo_root / 'proto'}",
            f"--descriptor_set_out={tmp_path / 'packet.pb'}",
            f"--pyi_out={tmp_path}",
            "packet.proto",
        ],
        check=True,
    )
    fresh = descriptor_pb2.FileDescriptorSet.FromString((tmp_path / "packet.pb").read_bytes())
    committed = descriptor_pb2.FileDescriptorProto.FromString(packet_pb2.DESCRIPTOR.serialized_pb)
    assert list(map(without_json_names, fresh.file)) == [committed], (
        "packet_pb2.py is stale: run `make proto`"
    )
    stub = (repo_root / "sluice" / "wire" / "packet_pb2.pyi").read_text()
    assert (tmp_path / "packet_pb2.pyi").read_text() == stub, "packet_pb2.pyi is stale"


def test_generated_code_runs_on_the_declared_floor(repo_root: Path) -> None:
    text = (repo_root / GENERATED).read_text()
    assert f"# Protobuf Python Version: {GENCODE_VERSION}\n" in text, "generate with `make proto`"
    assert "from google.protobuf.internal import builder" in text
    # Newer protoc output pins the runtime to its own version and major: that would be
    # the floor (and a ceiling) instead.
    assert "ValidateProtobufRuntimeVersion" not in text
    requirement = protobuf_requirement(repo_root)
    floors = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
    assert floors and floors[0] >= BUILDER_SINCE
    assert requirement.specifier.contains(GENCODE_VERSION)


def test_floor_is_what_ci_installs(repo_root: Path) -> None:
    ci = (repo_root / ".ci" / "run").read_text()
    assert re.search(r'"protobuf==\$floor"', ci), ".ci/run must test the codec on the floor"


def test_field_numbers_are_the_contract() -> None:
    fields = {f.name: f.number for f in Packet.DESCRIPTOR.fields}
    assert fields == {"sequenceNumber": 1, "timestamp": 2, "payload": 5}
    assert Packet(payload=b"abc").SerializeToString() == b"\x2a\x03abc"
    assert Packet.FromString(b"") == Packet()  # a zero-length message is an empty Packet
