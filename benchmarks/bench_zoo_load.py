"""load_zoo_model + first prediction vs. building the torchvision model by hand.

Both sides run in this process, alternating, after one warm-up of each (so
imports and first-call costs of torch are paid before timing). The zoo side is
``load_zoo_model(NAME)`` + ``model.predict(image)``; the hand side builds
``torchvision.models.mobilenet_v2()``, loads the same state dict
(``torch.load(weights_only=True)``), resizes and normalizes the image the same
way and runs one forward pass. Prints the medians and their ratio (target: <= 1.3).

    python benchmarks/bench_zoo_load.py [--repeats 15] [--model mobilenet-v2-imagenet-torch]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torchvision
import torchvision.transforms.v2.functional as TF

import modelzoo as mz


def by_hand(weights_path: str, image: np.ndarray) -> int:
    net = torchvision.models.mobilenet_v2()
    net.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
    net.eval()
    x = torch.from_numpy(image).permute(2, 0, 1)
    h, w = x.shape[1:]
    scale = 320 / max(h, w)  # the zoo entry's image_max_dim
    x = TF.resize(x, [int(h * scale), int(w * scale)], antialias=True).float().div(255)
    x = TF.normalize(x, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    with torch.inference_mode():
        return int(net(x[None]).softmax(1).argmax(1))


def with_zoo(name: str, image: np.ndarray) -> str:
    model = mz.load_zoo_model(name)
    return model.predict(image).label


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mobilenet-v2-imagenet-torch")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()

    import skimage.data

    image = skimage.data.chelsea()
    path = mz.download_zoo_model(args.model)  # "a downloaded model": found or fetched once, verified
    print(f"model {args.model}, weights {path}, torch threads {torch.get_num_threads()}")
    hand_label = by_hand(path, image)
    zoo_label = with_zoo(args.model, image)
    print(f"warm-up predictions: by hand class #{hand_label}, zoo {zoo_label!r}")
    hand, zoo = [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        by_hand(path, image)
        hand.append(time.perf_counter() - t)
        t = time.perf_counter()
        with_zoo(args.model, image)
        zoo.append(time.perf_counter() - t)
    mh, mzoo = statistics.median(hand), statistics.median(zoo)
    print(f"by hand (build + load_state_dict + first prediction): median {mh * 1000:.1f} ms over {args.repeats}")
    print(f"load_zoo_model + first prediction:                    median {mzoo * 1000:.1f} ms over {args.repeats}")
    print(f"ratio zoo / by hand: {mzoo / mh:.2f} (target <= 1.30)")


if __name__ == "__main__":
    main()
