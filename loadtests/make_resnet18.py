"""Write a ResNet-18-shaped CNN with random (seeded) weights as a Triton-layout model folder.

The network is the standard ResNet-18 topology (conv 7x7/2 64, max pool, four stages of two
BasicBlocks with 64/128/256/512 channels, global average pool, fc 1000), written in plain
torch (torchvision is not needed) and exported to ONNX with a dynamic batch dimension:
input ``input`` FP32 ``[batch, 3, 224, 224]``, output ``logits`` FP32 ``[batch, 1000]``.

Usage::

    python -m loadtests.make_resnet18 --out DIR

writes ``DIR/resnet18/config.pbtxt`` and ``DIR/resnet18/1/model.onnx``. The weights are
random: the model is for measuring speed, never for predictions.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

MODEL_NAME = "resnet18"
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
INPUT_SHAPE = (3, 224, 224)
NUM_CLASSES = 1000
MAX_BATCH_SIZE = 32

CONFIG_PBTXT = f"""name: "{MODEL_NAME}"
platform: "onnxruntime_onnx"
max_batch_size: {MAX_BATCH_SIZE}
input [
  {{
    name: "{INPUT_NAME}"
    data_type: TYPE_FP32
    dims: [ {INPUT_SHAPE[0]}, {INPUT_SHAPE[1]}, {INPUT_SHAPE[2]} ]
  }}
]
output [
  {{
    name: "{OUTPUT_NAME}"
    data_type: TYPE_FP32
    dims: [ {NUM_CLASSES} ]
  }}
]
instance_group [
  {{
    count: 1
    kind: KIND_CPU
  }}
]
"""


def build_resnet18(seed: int = 0, num_classes: int = NUM_CLASSES) -> torch.nn.Module:
    """Return a ResNet-18 ``torch.nn.Module`` in eval mode with weights drawn from ``seed``."""
    import torch
    from torch import nn

    class BasicBlock(nn.Module):
        """Two 3x3 convolutions with batch norm and a residual connection."""

        def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(out_ch)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(out_ch, out_ch, 3, stride=1, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(out_ch)
            self.downsample: nn.Module | None = None
            if stride != 1 or in_ch != out_ch:
                self.downsample = nn.Sequential(
                    nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
                )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return self.relu(out + identity)

    class ResNet18(nn.Module):
        """ResNet-18: stem, four stages of two BasicBlocks, average pool, classifier."""

        def __init__(self, classes: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
            stages = []
            in_ch = 64
            for out_ch, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
                stages.append(nn.Sequential(BasicBlock(in_ch, out_ch, stride), BasicBlock(out_ch, out_ch, 1)))
                in_ch = out_ch
            self.layer1, self.layer2, self.layer3, self.layer4 = stages
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(512, classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    torch.manual_seed(seed)
    model = ResNet18(num_classes)
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            # Non-trivial running statistics so that batch norm folding is exercised.
            with torch.no_grad():
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return model.eval()


def export_onnx(path: Path, seed: int = 0) -> None:
    """Export the seeded ResNet-18 to ONNX at ``path`` with a dynamic batch dimension.

    The TorchScript exporter is used when this torch still has it (fast and quiet); otherwise
    the torch.export-based one, with the weights kept inside the one ``model.onnx`` file.
    """
    import torch

    model = build_resnet18(seed)
    example = torch.zeros((2, *INPUT_SHAPE), dtype=torch.float32)
    names = {"input_names": [INPUT_NAME], "output_names": [OUTPUT_NAME]}
    with torch.no_grad():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                torch.onnx.export(
                    model,
                    (example,),
                    str(path),
                    dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                    opset_version=17,
                    dynamo=False,
                    **names,
                )
        except (TypeError, RuntimeError, ImportError):
            batch = torch.export.Dim("batch", min=1, max=4096)
            torch.onnx.export(
                model,
                (example,),
                str(path),
                dynamic_shapes=({0: batch},),
                opset_version=18,
                dynamo=True,
                external_data=False,
                verbose=False,
                **names,
            )


def check_onnx(path: Path) -> None:
    """Run the exported model with onnxruntime at batch 1 and 3; raise when a shape is wrong."""
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    inputs = session.get_inputs()
    outputs = session.get_outputs()
    if [i.name for i in inputs] != [INPUT_NAME] or [o.name for o in outputs] != [OUTPUT_NAME]:
        raise RuntimeError(f"unexpected names: {[i.name for i in inputs]} -> {[o.name for o in outputs]}")
    rng = np.random.default_rng(0)
    for batch in (1, 3):
        x = rng.standard_normal((batch, *INPUT_SHAPE), dtype=np.float32)
        (y,) = session.run([OUTPUT_NAME], {INPUT_NAME: x})
        if y.shape != (batch, NUM_CLASSES) or y.dtype != np.float32 or not np.isfinite(y).all():
            raise RuntimeError(f"batch {batch}: got {y.dtype} {y.shape}, expected float32 {(batch, 1000)}")


def write_repository(out: Path, seed: int = 0, check: bool = True) -> Path:
    """Write ``out/resnet18`` (config.pbtxt and 1/model.onnx) and return the model folder.

    The folder is built in a temporary sibling and renamed into place, so that a reader never
    sees half of it; an existing ``out/resnet18`` is replaced.
    """
    out.mkdir(parents=True, exist_ok=True)
    final = out / MODEL_NAME
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{MODEL_NAME}-", dir=out))
    try:
        staging.chmod(0o755)
        (staging / "1").mkdir()
        export_onnx(staging / "1" / "model.onnx", seed)
        if check:
            check_onnx(staging / "1" / "model.onnx")
        (staging / "config.pbtxt").write_text(CONFIG_PBTXT)
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return final


def main(argv: list[str] | None = None) -> int:
    """Command line entry point: ``python -m loadtests.make_resnet18 --out DIR``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="model repository folder to write into")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    parser.add_argument("--no-check", action="store_true", help="skip the onnxruntime shape check")
    args = parser.parse_args(argv)
    folder = write_repository(args.out, seed=args.seed, check=not args.no_check)
    print(f"wrote {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
