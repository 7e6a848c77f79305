"""Trains the ``digits-cnn-torch`` zoo model and writes its weights.

Reproducible: seeded, CPU, single-threaded; about 20 seconds. The inputs go
through the very :class:`~modelzoo.torch_image.ImageTransform` the zoo model
uses at inference, so training and serving see the same tensors. The held-out
split (:func:`modelzoo.zoo.digits.digits_split`) is never trained on.

    python training/train_digits.py            # writes modelzoo/zoo/assets/digits_cnn-<sha8>.pth
    python training/train_digits.py --check    # retrains and compares with the committed file

Then update ``manifests/digits.json`` (``weights.sha256``, ``weights.filename``,
``size_bytes``) with the values it prints.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import sys

import numpy as np
import torch

from modelzoo.torch_image import ImageTransform
from modelzoo.zoo.digits import digits_split
from modelzoo.zoo.nets import digits_cnn

SEED = 0
EPOCHS = 60
BATCH = 64
LR = 2e-3
MEAN = STD = (0.5, 0.5, 0.5)
ASSETS = os.path.join(os.path.dirname(__file__), "..", "modelzoo", "zoo", "assets")


def to_tensors(images: np.ndarray) -> torch.Tensor:
    transform = ImageTransform(image_size=(8, 8), mean=MEAN, std=STD)
    rgb = np.repeat(images[..., None], 3, axis=-1)  # what a grayscale PNG decodes to
    return torch.stack([transform(img).tensor for img in rgb])


def shift(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random shifts of up to one pixel, filled with the background."""
    background = x.amin(dim=(1, 2, 3), keepdim=True)
    out = torch.empty_like(x)
    dx, dy = torch.randint(-1, 2, (2, x.shape[0]), generator=g)
    for i in range(x.shape[0]):
        img = torch.roll(x[i], shifts=(int(dy[i]), int(dx[i])), dims=(1, 2))
        if dy[i] == 1:
            img[:, 0, :] = background[i, 0]
        elif dy[i] == -1:
            img[:, -1, :] = background[i, 0]
        if dx[i] == 1:
            img[:, :, 0] = background[i, 0]
        elif dx[i] == -1:
            img[:, :, -1] = background[i, 0]
        out[i] = img
    return out


def train() -> tuple:
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    g = torch.Generator().manual_seed(SEED)
    xtr, ytr, xte, yte = digits_split()
    xtr, xte = to_tensors(xtr), to_tensors(xte)
    ytr, yte = torch.from_numpy(ytr), torch.from_numpy(yte)
    net = digits_cnn()
    opt = torch.optim.Adam(net.parameters(), lr=LR, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=EPOCHS)
    for _epoch in range(EPOCHS):
        net.train()
        perm = torch.randperm(len(ytr), generator=g)
        for i in range(0, len(perm), BATCH):
            idx = perm[i : i + BATCH]
            loss = torch.nn.functional.cross_entropy(net(shift(xtr[idx], g)), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    net.eval()
    with torch.no_grad():
        acc = (net(xte).argmax(1) == yte).float().mean().item()
    return net, acc, len(yte)


def serialize(net: torch.nn.Module) -> bytes:
    buf = io.BytesIO()
    torch.save({k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}, buf)
    return buf.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="retrain and compare with the committed weights")
    args = parser.parse_args()
    net, acc, n = train()
    data = serialize(net)
    sha = hashlib.sha256(data).hexdigest()
    print(f"held-out accuracy: {acc:.4f} on {n} images")
    name = f"digits_cnn-{sha[:8]}.pth"
    path = os.path.normpath(os.path.join(ASSETS, name))
    if args.check:
        ok = os.path.exists(path)
        print(("matches" if ok else "DIFFERS from") + f" the committed weights ({name})")
        return 0 if ok else 1
    os.makedirs(ASSETS, exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    print(f"wrote {path}\n  filename   {name}\n  sha256     {sha}\n  size_bytes {len(data)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
