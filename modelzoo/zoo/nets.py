"""Small networks whose weights ship with modelzoo."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["DigitsCNN", "digits_cnn"]


class DigitsCNN(nn.Module):
    """A small CNN for 8x8 digit images (scikit-learn's digits).

    Input: ``FloatTensor[N, 3, 8, 8]`` (the gray image repeated on three
    channels, normalized with mean 0.5 and std 0.5). Output: logits
    ``FloatTensor[N, num_classes]``. About 26k parameters.
    """

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),                                   # 4x4
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),                                   # 2x2
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.25), nn.Linear(64 * 2 * 2, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def digits_cnn(num_classes: int = 10) -> DigitsCNN:
    """The entrypoint the ``digits-cnn-torch`` zoo entry builds."""
    return DigitsCNN(num_classes)
