"""Boxes that extend past their image (a detector's or an annotator's
rounding) are accepted as FiftyOne and COCO accept them, evaluated as
pycocotools evaluates them, and drawn clipped to the image."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

import modelzoo as mz
from tests.coco_data import cocoeval, generate


@pytest.mark.parametrize("box", [[-0.01, 0.2, 0.5, 0.5], [0.6, 0.7, 0.45, 0.31], [-0.2, -0.1, 1.5, 1.3], [1.01, 0.5, 0.1, 0.1]])
def test_boxes_past_the_image_are_kept_as_given(box):
    det = mz.Detection(label="cat", bounding_box=box)
    assert det.bounding_box == box
    assert mz.Detection.from_dict(det.to_dict()).bounding_box == box


@pytest.mark.parametrize(
    "box, message",
    [
        ([0.1, 0.1, -0.2, 0.3], "width and height must be >= 0"),
        ([0.1, 0.1, 0.2, -1e-3], "width and height must be >= 0"),
        ([math.nan, 0.1, 0.2, 0.2], "finite"),
        ([0.1, math.inf, 0.2, 0.2], "finite"),
        ([0.1, 0.2, 0.3], "four numbers"),
    ],
)
def test_only_non_finite_and_negative_sizes_are_refused(box, message):
    with pytest.raises(mz.LabelError, match=message):
        mz.Detection(label="cat", bounding_box=box)


def _overshoot(data, seed=1):
    """The same COCO set with about a third of the boxes (ground truth and
    results) pushed 1-15 pixels past an image border."""
    data = copy.deepcopy(data)
    rng = np.random.default_rng(seed)
    sizes = {im["id"]: (im["width"], im["height"]) for im in data["images"]}
    moved = 0
    for item in data["annotations"] + data["results"]:
        if rng.random() > 0.35:
            continue
        width, height = sizes[item["image_id"]]
        x, y, w, h = item["bbox"]
        side = rng.integers(4)
        push = float(rng.uniform(1, 15))
        if side == 0:
            x = -push
        elif side == 1:
            y = -push
        elif side == 2:
            x = width - w + push
        else:
            y = height - h + push
        item["bbox"] = [x, y, w, h]
        moved += 1
    return data, moved


def test_evaluation_equals_pycocotools_on_boxes_past_the_image(db):
    data, moved = _overshoot(generate(n_images=120, n_classes=6, seed=3))
    assert moved > 100
    sizes = {im["id"]: (im["width"], im["height"]) for im in data["images"]}
    names = {c["id"]: c["name"] for c in data["categories"]}

    def rel(box, image_id):
        width, height = sizes[image_id]
        return [box[0] / width, box[1] / height, box[2] / width, box[3] / height]

    gts = {i: [] for i in sizes}
    for a in data["annotations"]:
        gts[a["image_id"]].append(
            mz.Detection(label=names[a["category_id"]], bounding_box=rel(a["bbox"], a["image_id"]),
                         attributes={"iscrowd": a["iscrowd"], "area": a["area"]})
        )
    preds = {i: [] for i in sizes}
    for r in data["results"]:
        preds[r["image_id"]].append(
            mz.Detection(label=names[r["category_id"]], bounding_box=rel(r["bbox"], r["image_id"]), confidence=r["score"])
        )
    ds = mz.Dataset("boxes-past-image", overwrite=True)
    try:
        ds.add_samples(
            mz.Sample(
                filepath=f"/coco/{i:05d}.jpg", metadata=mz.ImageMetadata(width=w, height=h),
                ground_truth=mz.Detections(detections=gts[i]), predictions=mz.Detections(detections=preds[i]),
            )
            for i, (w, h) in sizes.items()
        )
        results = ds.evaluate_detections("predictions", "ground_truth", compute_mAP=True)
        reference = cocoeval(data, "bbox")
        np.testing.assert_allclose(results.stats(), reference.stats, atol=1e-6, rtol=0)
    finally:
        ds.delete()


def test_drawing_clips_boxes_to_the_image():
    from PIL import Image

    from modelzoo.drawing import draw_image
    from tests.images import photo

    image = np.asarray(Image.fromarray(photo("coffee")).convert("RGB").resize((120, 80)))
    det = mz.Detection(label="cup", bounding_box=[-0.25, 0.25, 0.5, 1.0])  # off the left and the bottom
    drawn = np.asarray(draw_image(image, {"predictions": det}, line_width=2)).astype(int)
    changed = np.abs(drawn - image.astype(int)).sum(axis=2) > 0
    # the outline is drawn where the box meets the image: its clipped left edge (column 0),
    # its right edge (column 30) and its clipped bottom edge (row 79)
    assert changed[25:75, 0].mean() > 0.9
    assert changed[25:75, 30].mean() > 0.9
    assert changed[79, 2:28].mean() > 0.9
    # and nothing right of the box
    assert not changed[:, 40:].any()
