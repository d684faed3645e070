"""The digits classifier: a small CNN, and the wrapper that is exported (softmax at the end)."""

from __future__ import annotations

import torch
from torch import nn

from fleetserve.trainer.data import IMAGE_SHAPE, NUM_CLASSES


class DigitsCNN(nn.Module):
    """Two 3x3 convolutions, a 2x2 max-pool and two linear layers; returns logits (N x 10)."""

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        channels, height, width = IMAGE_SHAPE
        self.features = nn.Sequential(
            nn.Conv2d(channels, 16, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(32 * (height // 2) * (width // 2), 64),
            nn.ReLU(),
            nn.Linear(64, num_classes),
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of images shaped N x 1 x 8 x 8 (ink scale 0..1)."""
        return self.classifier(self.features(image))


class ProbabilitiesModel(nn.Module):
    """What is exported and served: the classifier followed by a softmax over the classes."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Class probabilities (N x 10, rows sum to 1) for a batch of images."""
        return torch.softmax(self.classifier(image), dim=1)
