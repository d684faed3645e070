"""Unit tests of the benchmark's peer-baseline helpers (loadtests/bench.py): no server, no client."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[3]
if str(PROJECT_ROOT) not in sys.path:  # loadtests/ is a folder of the project, not an installed package
    sys.path.insert(0, str(PROJECT_ROOT))

from loadtests.bench import (  # noqa: E402
    TensorSpec,
    compare_with_peers,
    format_table,
    parse_args,
    peer_outputs,
    peers_to_run,
)
from loadtests.peers import outputs_for  # noqa: E402


def test_peers_to_run_defaults_to_digits_only() -> None:
    assert peers_to_run("digits", ["grpc", "rest"]) == ["bare-grpc", "bare-rest"]
    assert peers_to_run("digits", ["rest", "grpc"]) == ["bare-rest", "bare-grpc"]
    assert peers_to_run("digits", ["rest"]) == ["bare-rest"]
    assert peers_to_run("resnet18", ["grpc", "rest"]) == []
    assert peers_to_run("resnet18", ["grpc", "rest"], peers_all=True) == ["bare-grpc", "bare-rest"]
    assert peers_to_run("digits", ["grpc", "rest"], no_peers=True) == []
    assert peers_to_run("digits", ["grpc"], no_peers=True, peers_all=True) == []


def test_parse_args_peer_flags() -> None:
    args = parse_args([])
    assert (args.no_peers, args.peers_all) == (False, False)
    args = parse_args(["--no-peers", "--peers-all"])
    assert (args.no_peers, args.peers_all) == (True, True)


def test_peer_outputs_round_trip_through_the_peer_parser() -> None:
    outputs = [
        TensorSpec("probabilities", (1, 10), np.dtype(np.float32)),
        TensorSpec("extra", (1, 2, 3), np.dtype(np.int64)),
    ]
    texts = peer_outputs(outputs)
    assert texts == ["probabilities:FP32:10", "extra:INT64:2x3"]
    parsed = outputs_for("anything", texts)
    assert [(o.name, o.datatype, o.shape(1)) for o in parsed] == [
        ("probabilities", "FP32", [1, 10]),
        ("extra", "INT64", [1, 2, 3]),
    ]


def test_peer_outputs_rejects_variable_dims() -> None:
    with pytest.raises(ValueError, match="variable"):
        peer_outputs([TensorSpec("logits", (-1, -1), np.dtype(np.float32))])


def _point(protocol: str, concurrency: int, rate: float, p50: float | None, **extra: Any) -> dict[str, Any]:
    return {
        "protocol": protocol,
        "concurrency": concurrency,
        "requests": int(rate),
        "errors": 0,
        "seconds": 1.0,
        "req_per_s": rate,
        "p50_ms": p50,
        "p99_ms": None if p50 is None else p50 * 2,
        "mean_ms": p50,
        "cpu_percent": 50.0,
        "errors_total": 0,
        "first_error": None,
        **extra,
    }


def test_compare_with_peers_matches_protocol_and_concurrency() -> None:
    served = [_point("grpc", 1, 1000.0, 1.0), _point("grpc", 4, 2000.0, 2.0), _point("rest", 1, 500.0, 2.0)]
    peers = {"bare-grpc": {"points": [_point("grpc", 1, 2000.0, 0.5), _point("grpc", 16, 1.0, 1.0)]}}
    compare_with_peers(served, peers)
    assert served[0]["vs_peer"] == {
        "kind": "bare-grpc",
        "req_per_s": 2000.0,
        "p50_ms": 0.5,
        "req_per_s_ratio": 0.5,
        "p50_ratio": 2.0,
    }
    assert "vs_peer" not in served[1]  # the peer did not measure c=4
    assert "vs_peer" not in served[2]  # no bare-rest


def test_compare_with_peers_without_latencies_or_rate() -> None:
    served = [_point("rest", 1, 0.0, None)]
    compare_with_peers(served, {"bare-rest": {"points": [_point("rest", 1, 0.0, None)]}})
    assert served[0]["vs_peer"]["req_per_s_ratio"] is None
    assert served[0]["vs_peer"]["p50_ratio"] is None
    failed = [_point("rest", 1, 10.0, 1.0)]
    compare_with_peers(failed, {"bare-rest": {"skipped": "peer failed"}})
    assert "vs_peer" not in failed[0]


def _result(**extra: Any) -> dict[str, Any]:
    return {
        "client_core": 1,
        "raw": {"core": 0, "req_per_s": 10000.0, "p50_ms": 0.1, "p99_ms": 0.2, "requests": 1, "seconds": 1.0},
        "server": {"affinity": [0]},
        "served": [_point("grpc", 1, 1000.0, 1.0), _point("rest", 1, 3000.0, 0.4)],
        **extra,
    }


def test_format_table_with_peers() -> None:
    result = _result()
    result["peers"] = {
        "bare-grpc": {"affinity": [0], "points": [_point("grpc", 1, 2000.0, 0.5)]},
        "bare-rest": {"affinity": [0], "skipped": "peer failed: boom"},
    }
    compare_with_peers(result["served"], result["peers"])
    table = format_table("digits", result)
    lines = table.splitlines()
    assert any(line.startswith("peers (") and "bare-rest (rest rows)" in line for line in lines)
    assert "peer failed: boom" in table
    header = next(line for line in lines if line.startswith("protocol"))
    assert header.split("  ")[-1].strip() == "fs/peer p50"
    for name in ("peer req/s", "peer p50 ms", "fs/peer req/s"):
        assert name in header
    grpc_row = next(line for line in lines if line.startswith("grpc "))
    assert grpc_row.split()[-4:] == ["2000.0", "0.500", "0.50", "2.00"]
    rest_row = next(line for line in lines if line.startswith("rest "))
    assert rest_row.split()[-4:] == ["-", "-", "-", "-"]


def test_format_table_without_peers_keeps_the_old_columns() -> None:
    table = format_table("resnet18", _result(peers_skipped="not measured for resnet18 (--peers-all)"))
    assert "peers: not measured for resnet18" in table
    header = next(line for line in table.splitlines() if line.startswith("protocol"))
    assert header.split()[-1] == "served/raw"
    assert "peer" not in header


def test_format_table_reports_peer_errors() -> None:
    result = _result()
    result["peers"] = {
        "bare-grpc": {"affinity": [0], "points": [_point("grpc", 1, 5.0, 1.0, first_error="Bad: shape")]}
    }
    compare_with_peers(result["served"], result["peers"])
    assert "first error (bare-grpc grpc c=1): Bad: shape" in format_table("digits", result)
