"""The continuous-training loop's copy of the model repository."""

from __future__ import annotations

from pathlib import Path

from google.protobuf import text_format

from fleetserve.wire import model_config_pb2
from loadtests import ct_loop


def test_the_copy_holds_v1_and_the_config_without_its_latency_slo(tmp_path: Path) -> None:
    repo = ct_loop.repository_with_v1(tmp_path)
    model = repo / ct_loop.MODEL
    assert sorted(p.name for p in model.iterdir()) == ["1", "config.pbtxt", "labels.txt"]
    assert (model / "1" / "model.onnx").is_file()
    shipped = text_format.Parse((ct_loop.DIGITS / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    copied = text_format.Parse((model / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert "latency_slo_ms" in shipped.parameters
    assert "latency_slo_ms" not in copied.parameters
    del shipped.parameters["latency_slo_ms"]
    assert copied == shipped  # nothing else changed
