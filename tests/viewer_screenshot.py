"""Makes docs/viewer.png: the viewer's grid of real photographs in headless Chromium.

The photographs are scikit-image's; ``imagenet`` holds the real predictions
of the zoo's MobileNetV2 (ImageNet weights that ship offline); the boxes,
instance masks and keypoints are hand-placed ground truth, ``predictions``
perturbs them (a miss, a wrong class, a spurious box) with instance masks,
and a detection evaluation (``eval``) marks them tp / fp / fn.

    python -m tests.viewer_screenshot docs/viewer.png
"""

from __future__ import annotations

import io
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
from PIL import Image

import modelzoo as mz
from modelzoo import db
from modelzoo.labels import Detection, Detections, Keypoint, Keypoints
from modelzoo.masks import box_pixels
from tests.browser import chrome, wait_for
from tests.images import write_photos

PHOTOS = ["astronaut", "chelsea", "coffee", "rocket", "camera", "coins"]
#: photo -> [(class, box)] of hand-placed ground truth
TRUTH: Dict[str, List[Tuple[str, List[float]]]] = {
    "astronaut": [("person", [0.05, 0.02, 0.85, 0.96]), ("face", [0.36, 0.08, 0.2, 0.28]), ("flag", [0.78, 0.0, 0.22, 0.45])],
    "chelsea": [("cat", [0.28, 0.05, 0.5, 0.9])],
    "coffee": [("cup", [0.12, 0.05, 0.75, 0.8])],
    "rocket": [("rocket", [0.4, 0.05, 0.18, 0.9])],
    "camera": [("person", [0.2, 0.05, 0.55, 0.93]), ("camera", [0.38, 0.15, 0.2, 0.25])],
    "coins": [("coin", [0.03, 0.05, 0.14, 0.2]), ("coin", [0.2, 0.05, 0.14, 0.2]), ("coin", [0.37, 0.05, 0.14, 0.2])],
}


def _ellipse(box: List[float], width: int, height: int) -> np.ndarray:
    c0, r0, c1, r1 = box_pixels(box, width, height)
    yy, xx = np.mgrid[: r1 - r0, : c1 - c0]
    return ((xx + 0.5 - (c1 - c0) / 2) / ((c1 - c0) / 2)) ** 2 + ((yy + 0.5 - (r1 - r0) / 2) / ((r1 - r0) / 2)) ** 2 <= 1


def build(root: Path) -> Any:
    paths = write_photos(str(root / "photos"), PHOTOS, scale=2)
    dataset = mz.Dataset.from_images(paths, name="viewer-screenshot", overwrite=True)
    model = mz.load_zoo_model("mobilenet-v2-imagenet-torch")
    dataset.apply_model(model, label_field="imagenet")
    rng = np.random.default_rng(3)
    gts, preds = {}, {}
    for sample, name in zip(dataset, PHOTOS):
        w, h = sample.metadata.width, sample.metadata.height
        gt = [Detection(label=c, bounding_box=b) for c, b in TRUTH[name]]
        pred = []
        for i, (c, b) in enumerate(TRUTH[name]):
            if name == "astronaut" and i == 2:
                continue  # a miss: fn
            jitter = [min(max(v + rng.normal(0, 0.02), 0.0), 0.98) for v in b]
            jitter[2], jitter[3] = min(jitter[2], 1 - jitter[0]), min(jitter[3], 1 - jitter[1])
            label = "dog" if name == "chelsea" else c  # a wrong class: fp and fn
            pred.append(Detection(label=label, bounding_box=jitter, confidence=round(float(rng.uniform(0.55, 0.99)), 2),
                                  mask=_ellipse(jitter, w, h)))
        if name == "coffee":
            pred.append(Detection(label="spoon", bounding_box=[0.7, 0.7, 0.2, 0.2], confidence=0.31))  # spurious: fp
        gts[sample.id], preds[sample.id] = Detections(detections=gt), Detections(detections=pred)
    dataset.set_values("ground_truth", gts)
    dataset.set_values("predictions", preds)
    astronaut = dataset.first()
    dataset.set_values("pose", {astronaut.id: Keypoints(keypoints=[Keypoint(
        label="person", points=[[0.42, 0.2], [0.5, 0.2], [0.46, 0.3], [0.3, 0.6], [0.62, 0.6]])])})
    dataset.info["skeleton"] = {"labels": ["eye_l", "eye_r", "mouth", "hand_l", "hand_r"], "edges": [[0, 2, 1], [3, 2, 4]]}
    dataset.save_info()
    dataset.evaluate_detections("predictions", "ground_truth", eval_key="eval")
    return dataset


def main(out: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with db.temporary(parent=str(root)):
            dataset = build(root)
            app = dataset.launch_app(cache_dir=str(root / "thumbs"), workers=1)
            driver_gen = chrome(root)
            driver = next(driver_gen)
            try:
                driver.set_window_size(1180, 700)
                state = '{"hidden":["imagenet"]}'
                driver.get(app.url + "#state=" + state)
                wait_for(driver, lambda d: d.execute_script(
                    "const t = [...document.querySelectorAll('.tile')]; return document.body.dataset.settled === '1'"
                    " && t.length > 0 && t.every(x => x.dataset.drawn === '1')"), "the grid")
                png = driver.get_screenshot_as_png()
            finally:
                driver_gen.close()
                app.close()
    img = Image.open(io.BytesIO(png)).convert("RGB")
    img.quantize(colors=192, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    print(f"wrote {out} ({Path(out).stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/viewer.png")
