"""The continuous-training loop's retrain command: wait until the prediction log holds enough
labelled production rows, then run the trainer.

The drift monitor starts the retrain command once per alert episode, soon after the alarm; the
labels of the drifted traffic arrive later (feedback), and the trainer reads the Parquet folder
once, when it starts. Retrained on ~190 labelled inverted digits the candidate falls 2.5 points
short of v1's clean accuracy, on ~1,000 it passes (README, trainer). So this wrapper counts the
usable rows the way the trainer does (`fleetserve.trainer.production.load_production`: labelled,
with the sampled input tensor of the model's shape) and only then replaces itself with the
trainer command (same pid, so the monitor sees the trainer's exit status). The gate is the
trainer's, unchanged.

Usage::

    python -m loadtests.ct_retrain --production-data DIR --min-rows 1000 [--timeout-s 600] \\
        -- python -m fleetserve.cli train --model digits ... --production-data DIR --reason drift

Exit status: the trainer's; 3 when the rows did not come within the timeout.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from fleetserve.trainer.production import load_production

TIMED_OUT = 3
_PR_SET_PDEATHSIG = 1


def usable_rows(folder: Path, model: str) -> int:
    """Labelled production rows of `model` with their input tensor (what the trainer can use)."""
    if not folder.is_dir():
        return 0
    data = load_production(folder, model, input_name="image", item_shape=(1, 8, 8), num_classes=10)
    return len(data.train) + len(data.evaluation)


def wait_for_rows(
    folder: Path, model: str, min_rows: int, timeout_s: float, poll_s: float = 1.0
) -> int | None:
    """The usable row count once it reaches `min_rows`; None at the timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        rows = usable_rows(folder, model)
        if rows >= min_rows:
            return rows
        if time.monotonic() >= deadline:
            return None
        time.sleep(poll_s)


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """The wrapper's options and the trainer's command (after `--`)."""
    argv = list(argv)
    if "--" not in argv:
        raise SystemExit("ct_retrain: the trainer's command follows `--`")
    split = argv.index("--")
    p = argparse.ArgumentParser(prog="loadtests.ct_retrain", description=__doc__.split("\n\n")[0])
    p.add_argument("--production-data", type=Path, required=True, help="the predlog writer's --out folder")
    p.add_argument("--model", default="digits")
    p.add_argument("--min-rows", type=int, default=1000, help="usable labelled rows to wait for")
    p.add_argument("--timeout-s", type=float, default=600.0)
    args = p.parse_args(argv[:split])
    command = argv[split + 1 :]
    if not command:
        raise SystemExit("ct_retrain: no trainer command after `--`")
    return args, command


def main(argv: Sequence[str] | None = None) -> int:
    """Wait for the rows, then exec the trainer (returns only when the rows never came)."""
    args, command = parse_args(sys.argv[1:] if argv is None else argv)
    started = time.monotonic()
    print(
        f"ct_retrain: waiting for {args.min_rows} labelled rows of {args.model} in {args.production_data}",
        flush=True,
    )
    rows = wait_for_rows(args.production_data, args.model, args.min_rows, args.timeout_s)
    waited = time.monotonic() - started
    if rows is None:
        have = usable_rows(args.production_data, args.model)
        print(
            f"ct_retrain: only {have} labelled rows of {args.model} after {waited:.0f} s, "
            f"{args.min_rows} needed: not training",
            file=sys.stderr,
            flush=True,
        )
        return TIMED_OUT
    print(f"ct_retrain: {rows} labelled rows after {waited:.1f} s; starting the trainer", flush=True)
    # the trainer ends with the monitor that started it (the setting survives exec; Linux)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    os.execv(command[0], command)
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
