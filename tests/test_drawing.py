"""Drawing: boxes, instance masks, keypoint skeletons, semantic masks and
captions on real photographs, checked pixel by pixel."""

import os

import numpy as np
import pytest
from PIL import Image

import modelzoo as mz
from modelzoo.drawing import EVAL_COLORS, contact_sheet, draw_image, draw_labels
from modelzoo.image_io import read_image
from modelzoo.testing import tiny_model
from tests.images import write_good_images


@pytest.fixture
def photos(tmp_path, request):
    paths = write_good_images(str(tmp_path / "photos"), n=3, size=(200, 150))
    ds = mz.Dataset.from_images(paths, name=f"draw-{request.node.name}"[:60], overwrite=True)
    yield ds
    ds.delete()


def _pixels(path):
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def _outline(box, width, height, lw):
    """The pixels of a box outline drawn with ``lw``: (rows, cols) of its four sides."""
    x, y, w, h = box
    x0, y0 = int(round(x * width)), int(round(y * height))
    x1, y1 = min(int(round((x + w) * width)), width - 1), min(int(round((y + h) * height)), height - 1)
    ring = np.zeros((height, width), bool)
    ring[y0 : y0 + lw, x0 : x1 + 1] = ring[max(y1 - lw + 1, 0) : y1 + 1, x0 : x1 + 1] = True
    ring[y0 : y1 + 1, x0 : x0 + lw] = ring[y0 : y1 + 1, max(x1 - lw + 1, 0) : x1 + 1] = True
    return ring


def _near_labels(dets, width, height, margin=16):
    """The boxes, a margin around them, and room for a caption ("label 0.87") above each."""
    near = np.zeros((height, width), bool)
    for d in dets:
        x, y, w, h = d.bounding_box
        caption = 8 * len(f"{d.label} {d.confidence:.2f}")
        near[max(int(y * height) - margin, 0) : int((y + h) * height) + margin,
             max(int(x * width) - margin, 0) : max(int((x + w) * width), int(x * width) + caption) + margin] = True
    return near


@pytest.mark.parametrize("task, field", [
    ("detection", "boxes"), ("instance_segmentation", "masks"), ("keypoints", "kp"),
])
def test_drawn_labels_change_the_pixels_of_each_box_and_nothing_far_away(photos, tmp_path, task, field):
    photos.apply_model(tiny_model(task), label_field=field, progress=False, num_workers=0)
    fields = [f"{field}_detections", f"{field}_keypoints"] if task == "keypoints" else [field]
    skeleton = {"edges": [[0, 1], [1, 2], [2, 3], [3, 4]]}
    paths = draw_labels(photos, str(tmp_path / "drawn"), fields, skeleton=skeleton)
    assert len(paths) == len(photos)
    checked = 0
    for sample, path in zip(photos, paths):
        assert path.endswith(".png") and Image.open(path).format == "PNG"
        before, after = read_image(sample.filepath).astype(int), _pixels(path)
        height, width = before.shape[:2]
        assert after.shape == before.shape
        changed = np.any(before != after, axis=-1)
        dets = sample[fields[0]].detections
        for det in dets:
            ring = _outline(det.bounding_box, width, height, lw=2)
            assert changed[ring].mean() > 0.9, "a box outline was not drawn"
            checked += 1
            if task == "instance_segmentation" and det.mask is not None and det.mask.any():
                from modelzoo.masks import full_mask

                inside = full_mask(det.mask, det.bounding_box, width, height)
                assert changed[inside].mean() > 0.9, "an instance mask was not tinted"
        if task == "keypoints":
            for kp in sample[fields[1]].keypoints:
                for px, py in kp.points:
                    c, r = min(int(px * width), width - 1), min(int(py * height), height - 1)
                    assert changed[r, c], "a keypoint was not drawn"
        far = ~_near_labels(dets, width, height)
        assert far.any() and not changed[far].any(), "pixels far from every label changed"
    assert checked > 0


def test_ground_truth_dashed_predictions_solid_and_eval_colors(photos, tmp_path):
    sid = photos.ids()[0]
    gt = mz.Detection(label="cat", bounding_box=[0.1, 0.1, 0.5, 0.6])
    photos.set_values("gt", {sid: mz.Detections(detections=[gt, mz.Detection(label="dog", bounding_box=[0.7, 0.1, 0.2, 0.2])])})
    photos.set_values("pred", {sid: mz.Detections(detections=[
        mz.Detection(label="cat", bounding_box=[0.12, 0.1, 0.5, 0.6], confidence=0.9),  # tp
        mz.Detection(label="cat", bounding_box=[0.1, 0.75, 0.2, 0.2], confidence=0.8),  # fp
    ])})
    view = photos.select([sid])
    view.dataset.evaluate_detections("pred", "gt", eval_key="ev")
    [path] = draw_labels(view, str(tmp_path / "ev"), ["gt", "pred"], gt_fields=["gt"], eval_key="ev")
    px = _pixels(path)
    height, width = px.shape[:2]
    # the solid tp outline's left side, in the tp colour
    tp_left = px[int(0.4 * height) : int(0.6 * height), int(round(0.12 * width))]
    assert (tp_left == EVAL_COLORS["tp"]).all(axis=-1).mean() > 0.9
    fp_bottom = px[int(round(0.95 * height)) - 1, int(0.13 * width) : int(0.28 * width)]
    assert (fp_bottom == EVAL_COLORS["fp"]).all(axis=-1).mean() > 0.9
    # the missed dog is dashed, in the fn colour: some of its top side drawn, some not
    dog_top = (px[int(round(0.1 * height)), int(0.72 * width) : int(0.88 * width)] == EVAL_COLORS["fn"]).all(axis=-1)
    assert 0.2 < dog_top.mean() < 0.8


def test_semantic_masks_and_captions_and_contact_sheet(photos, tmp_path):
    image = read_image(photos.first().filepath)
    height, width = image.shape[:2]
    mask = np.zeros((height, width), np.uint8)
    mask[100:, 120:] = 2
    drawn = np.asarray(draw_image(image, {
        "seg": mz.Segmentation(mask=mask, mask_targets={"2": "road"}),
        "cls": mz.Classification(label="street", confidence=0.75),
    })).astype(int)
    changed = np.any(drawn != image, axis=-1)
    assert changed[100:, 120:].all()  # the overlay covers the class
    assert changed[:14, :60].any()  # the caption
    assert not changed[40:95, 60:115].any()  # background (class 0) and far from the caption
    photos.apply_model(tiny_model("detection"), label_field="boxes", progress=False, num_workers=0)
    sheet = contact_sheet(photos, str(tmp_path / "sheet.png"), "boxes", n=2, tile=128)
    assert Image.open(sheet).size == (256, 128)
    tiles = _pixels(sheet)
    assert tiles[:, :128].std() > 10 and tiles[:, 128:].std() > 10  # two photographs, not blank tiles
    assert os.path.getsize(sheet) > 1000
