"""Loading a version honours max_batch_size, dynamic_batching, instance_group and placement."""

from __future__ import annotations

from pathlib import Path

from fleetserve.repository.config import read_config
from fleetserve.repository.loader import _placed, load_version
from fleetserve.runtimes.base import RuntimeOptions
from tests.support import models

CONFIG = """
name: "double"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 4 ] } ]
instance_group [ { count: 3 kind: KIND_CPU } ]
"""


def _load(repo: Path, config_text: str | None):  # type: ignore[no-untyped-def]
    models.double_model(repo, config=config_text)
    return load_version(repo / "double", 1, read_config(repo / "double"), RuntimeOptions(), 4)


def test_without_dynamic_batching_requests_run_alone(tmp_path: Path) -> None:
    served = _load(tmp_path, CONFIG)
    assert served.max_batch_size == 8  # a request may still carry up to 8 rows itself
    assert served.batcher.max_batch_size == 0  # but requests are not merged
    assert served.batcher._count == 3  # instance_group.count executors


def test_dynamic_batching_merges_up_to_max_batch_size(tmp_path: Path) -> None:
    served = _load(tmp_path, CONFIG + "dynamic_batching { }\n")
    assert served.batcher.max_batch_size == 8


def test_derived_config_enables_dynamic_batching(tmp_path: Path) -> None:
    served = _load(tmp_path, None)
    assert served.config.HasField("dynamic_batching")
    assert served.config.max_batch_size == 4
    assert served.batcher.max_batch_size == 4


def test_kind_cpu_keeps_the_model_on_the_cpu(tmp_path: Path) -> None:
    models.double_model(tmp_path, config=CONFIG)
    assert _placed(RuntimeOptions(), read_config(tmp_path / "double")).device == "cpu"
    gpu = CONFIG.replace("KIND_CPU", "KIND_GPU")
    (tmp_path / "double" / "config.pbtxt").write_text(gpu)
    assert _placed(RuntimeOptions(), read_config(tmp_path / "double")).device == "auto"
    assert _placed(RuntimeOptions(), None).device == "auto"


def test_warm_up_seeds_the_latency_model(tmp_path: Path) -> None:
    served = _load(tmp_path, CONFIG)
    assert served.batcher.latency.ready
    predicted = served.batcher.latency.predict(1)
    assert predicted is not None and 0 < predicted < 0.5
