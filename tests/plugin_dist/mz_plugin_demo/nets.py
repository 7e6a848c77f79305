import numpy as np
from torch import nn

from modelzoo import Classification, Model


class TinyNet(nn.Module):
    """Global average color -> 2 logits."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        return self.fc(x.mean(dim=(2, 3)))


def tiny_net():
    return TinyNet()


class BrightnessModel(Model):
    def predict(self, arg):
        return Classification(label="bright" if np.asarray(arg).mean() > 127 else "dark")
