"""Training and evaluation of the digits CNN on the CPU, reproducibly from a seed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fleetserve.trainer.data import DigitsData, Split
from fleetserve.trainer.model import DigitsCNN

DEFAULT_EPOCHS = 15
DEFAULT_THREADS = 2


@dataclass(frozen=True)
class TrainResult:
    """The trained classifier (eval mode, logits out) and what training measured."""

    model: DigitsCNN
    epochs: int
    seed: int
    validation_accuracy: float
    test_accuracy: float
    train_seconds: float

    def metrics(self) -> dict[str, float]:
        """The metrics recorded in a version's metadata.json."""
        return {"validation_accuracy": self.validation_accuracy, "test_accuracy": self.test_accuracy}


def train(
    data: DigitsData,
    *,
    epochs: int = DEFAULT_EPOCHS,
    seed: int = 0,
    batch_size: int = 32,
    learning_rate: float = 2e-3,
    threads: int = DEFAULT_THREADS,
) -> TrainResult:
    """Train a :class:`DigitsCNN` with Adam on ``data.train`` and evaluate it.

    The same ``seed`` gives the same weights: initialisation and shuffling draw from torch's
    RNG seeded here. The process-wide RNG state and thread count are restored afterwards, so
    training inside a larger process (a test run, a CLI) leaves no trace on it.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    started = time.perf_counter()
    with _seeded(seed), _threads(threads):
        model = DigitsCNN()
        optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
        loss_fn = nn.CrossEntropyLoss()
        images = torch.from_numpy(data.train.images)
        labels = torch.from_numpy(data.train.labels)
        model.train()
        for _ in range(epochs):
            order = torch.randperm(len(labels))
            for start in range(0, len(labels), batch_size):
                batch = order[start : start + batch_size]
                optimizer.zero_grad()
                loss = loss_fn(model(images[batch]), labels[batch])
                loss.backward()
                optimizer.step()
        model.eval()
        validation_accuracy = accuracy(model, data.validation)
        test_accuracy = accuracy(model, data.test)
    return TrainResult(
        model=model,
        epochs=epochs,
        seed=seed,
        validation_accuracy=validation_accuracy,
        test_accuracy=test_accuracy,
        train_seconds=time.perf_counter() - started,
    )


def predict(model: nn.Module, images: np.ndarray) -> np.ndarray:
    """The model's outputs (float32 numpy) for a batch of images, without autograd."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            return model(torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))).numpy()
    finally:
        model.train(was_training)


def accuracy(model: nn.Module, split: Split) -> float:
    """Fraction of ``split`` whose arg-max prediction equals its label."""
    if len(split) == 0:
        raise ValueError("cannot measure accuracy on an empty split")
    predicted = predict(model, split.images).argmax(axis=1)
    return float((predicted == split.labels).mean())


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    # fork_rng restores torch's CPU RNG on exit; numpy's global RNG is saved by hand.
    numpy_state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        np.random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(numpy_state)


@contextmanager
def _threads(threads: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)
