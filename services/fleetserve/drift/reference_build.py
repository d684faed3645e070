"""Computing a published version's reference profile and storing it in its metadata.json.

For versions published before the trainer wrote profiles (such as the committed digits v1):
the version's ONNX model runs (onnxruntime, CPU) on the training split of the bundled digits
data (`trainer.data.load(seed)`), and `profile.reference_profile` of those inputs and
probabilities goes into `metadata.json` under `reference_profile`, the other keys kept. The
file is replaced atomically (temporary file, then rename).

    python -m fleetserve.drift.reference_build --model-repository model_repository --model digits --version 1
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .profile import DEFAULT_BINS, KEY, METADATA, reference_profile


def onnx_probabilities(model_path: Path, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """The first output of an ONNX model on the inputs (CPU, so the figures are reproducible)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, inputs)[0])


def digits_reference(version_dir: Path, seed: int = 0, bins: int = DEFAULT_BINS) -> dict[str, Any]:
    """The reference profile of a digits version: its ONNX model on the training split."""
    from fleetserve.trainer.data import load

    images = load(seed=seed).train.images
    inputs = {"image": images}
    profile = reference_profile(
        inputs, onnx_probabilities(Path(version_dir) / "model.onnx", inputs), bins=bins
    )
    profile["source"] = {"dataset": "sklearn-digits", "split": "train", "seed": seed}
    return profile


def store_reference(version_dir: Path, profile: dict[str, Any]) -> Path:
    """Put the profile into the version's metadata.json (other keys kept), atomically."""
    path = Path(version_dir) / METADATA
    metadata = json.loads(path.read_text()) if path.exists() else {}
    metadata[KEY] = profile
    text = json.dumps(metadata, indent=2, allow_nan=False) + "\n"
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".metadata-", suffix=".json")
    try:
        os.fchmod(fd, mode)  # mkstemp's 0600 would hide the file from other readers
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def main(argv: list[str] | None = None) -> int:
    """Compute and store the reference profile of a digits version."""
    parser = argparse.ArgumentParser(prog="python -m fleetserve.drift.reference_build")
    parser.add_argument("--model-repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--model", default="digits")
    parser.add_argument("--version", default="1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bins", type=int, default=DEFAULT_BINS)
    args = parser.parse_args(argv)
    version_dir = args.model_repository / args.model / args.version
    profile = digits_reference(version_dir, seed=args.seed, bins=args.bins)
    path = store_reference(version_dir, profile)
    print(f"reference profile of {args.model} v{args.version} ({profile['items']} items) -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
