"""Training and evaluation of the digits CNN on the CPU, reproducibly from a seed.

Each epoch draws its examples (the bundled training split plus, when given, production
samples drawn ``extra_weight`` times each on average), augments them afresh and shuffles
them; every draw comes from generators seeded by ``seed``, so two runs with the same inputs
give the same weights.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn

from fleetserve.trainer.augment import Augmentation, augment
from fleetserve.trainer.data import DigitsData, Split
from fleetserve.trainer.model import DigitsCNN

DEFAULT_EPOCHS = 25
DEFAULT_THREADS = 2
# each production sample is drawn this many times per epoch on average
DEFAULT_EXTRA_WEIGHT = 5.0
DEFAULT_AUGMENTATION = Augmentation()


@dataclass(frozen=True)
class Extra:
    """Examples trained on beside the bundled split (production samples): images N x 1 x 8 x 8
    on the 0..1 ink scale and int64 labels."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class TrainResult:
    """The trained classifier (eval mode, logits out) and what training measured."""

    model: DigitsCNN
    epochs: int
    seed: int
    validation_accuracy: float
    test_accuracy: float
    train_seconds: float
    epoch_losses: tuple[float, ...] = field(default=())
    examples_per_epoch: int = 0

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
    augmentation: Augmentation = DEFAULT_AUGMENTATION,
    extra: Extra | None = None,
    extra_weight: float = DEFAULT_EXTRA_WEIGHT,
    progress: bool = False,
) -> TrainResult:
    """Train a :class:`DigitsCNN` with Adam on ``data.train`` (and ``extra``) and evaluate it.

    ``extra_weight`` is how many times each extra example is drawn per epoch on average (2.5:
    twice, and a third time with probability 0.5). With ``progress`` a rich progress bar per
    epoch (batches, loss, validation accuracy) goes to stderr. The same ``seed`` gives the same
    weights. The process-wide RNG state and thread count are restored afterwards, so training
    inside a larger process (a test run, a CLI) leaves no trace on it.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if extra_weight < 0 or math.isnan(extra_weight):
        raise ValueError(f"the production data weight must be >= 0, got {extra_weight}")
    started = time.perf_counter()
    losses: list[float] = []
    examples = 0
    with _seeded(seed), _threads(threads), _progress(progress) as bar:
        draw = np.random.default_rng(seed)
        model = DigitsCNN()
        optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
        loss_fn = nn.CrossEntropyLoss()
        for epoch in range(epochs):
            images_np, labels_np = epoch_examples(data.train, extra, extra_weight, augmentation, draw)
            examples = len(labels_np)
            images, labels = torch.from_numpy(images_np), torch.from_numpy(labels_np)
            batches = math.ceil(examples / batch_size)
            task = bar.add_task(f"epoch {epoch + 1}/{epochs}", total=batches, loss=math.nan, val=math.nan)
            order = torch.randperm(examples)
            model.train()
            total = 0.0
            for number, start in enumerate(range(0, examples, batch_size), start=1):
                batch = order[start : start + batch_size]
                optimizer.zero_grad()
                loss = loss_fn(model(images[batch]), labels[batch])
                loss.backward()
                optimizer.step()
                total += float(loss.item()) * len(batch)
                bar.update(task, advance=1, loss=total / min(examples, number * batch_size))
            losses.append(total / examples)
            if progress:
                bar.update(task, val=accuracy(model, data.validation))
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
        epoch_losses=tuple(losses),
        examples_per_epoch=examples,
    )


def epoch_examples(
    split: Split,
    extra: Extra | None,
    extra_weight: float,
    augmentation: Augmentation,
    draw: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """One epoch's examples: the split, the extra examples drawn by weight, all augmented."""
    images, labels = [split.images], [split.labels]
    if extra is not None and len(extra) and extra_weight > 0:
        whole = math.floor(extra_weight)
        counts = whole + (draw.random(len(extra)) < extra_weight - whole)
        chosen = np.repeat(np.arange(len(extra)), counts)
        images.append(extra.images[chosen])
        labels.append(extra.labels[chosen])
    stacked = np.concatenate(images).astype(np.float32, copy=False)
    return augment(stacked, augmentation, draw), np.concatenate(labels).astype(np.int64, copy=False)


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
def _progress(enabled: bool) -> Iterator[Progress]:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TextColumn("val acc {task.fields[val]:.4f}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), disable=not enabled) as bar:
        yield bar


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
