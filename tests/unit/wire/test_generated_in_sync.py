"""The generated modules in services/fleetserve/wire match what proto/ generates now."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_generated_modules_match_protos(tmp_path: Path) -> None:
    protos = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "proto").rglob("*.proto"))
    assert protos, "no .proto files under proto/"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I",
            "proto",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            *protos,
        ],
        cwd=ROOT,
        check=True,
    )
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.suffix in (".py", ".pyi"))
    assert generated
    committed = ROOT / "services"
    stale = [str(rel) for rel in generated if not filecmp.cmp(tmp_path / rel, committed / rel, shallow=False)]
    assert not stale, f"run `make proto`: these generated files are out of date: {stale}"
    on_disk = sorted(p.relative_to(committed) for p in (committed / "fleetserve" / "wire").glob("*_pb2*.py*"))
    assert on_disk == generated, (
        "generated files without a .proto (or missing ones) in services/fleetserve/wire"
    )
