"""FiftyOne's apply_model options: ``classes=``, extra keywords reaching a
SamplesMixin's ``needs_fields``, ``output_dir``/``rel_dir`` (masks and maps
as PNG files) and ``progress`` as a callback."""

from __future__ import annotations

import os

import bson
import numpy as np
import pytest
from PIL import Image

import modelzoo as mz
from tests.images import write_photos

NAMES = ["astronaut", "coffee", "chelsea", "rocket"]


@pytest.fixture
def photos(tmp_path, db):
    root = tmp_path / "in"
    paths = write_photos(str(root / "a"), NAMES[:2]) + write_photos(str(root / "b"), NAMES[2:])
    ds = mz.Dataset("apply-options", overwrite=True)
    ds.add_samples([mz.Sample(filepath=p, question=f"what is {os.path.basename(p)}?") for p in paths])
    ds.compute_metadata()
    yield ds, str(root)
    ds.delete()


class Cycler(mz.Model):
    """Three boxes a, b, c per image, and a classification by image width parity."""

    def predict(self, arg):
        return {
            "dets": mz.Detections(detections=[
                mz.Detection(label=c, bounding_box=[0.1 * i, 0.1, 0.2, 0.2], confidence=0.5) for i, c in enumerate("abc")
            ]),
            "cls": mz.Classification(label="a" if arg.shape[1] % 2 else "b"),
        }


def test_classes_restrict_the_stored_predictions(photos, db):
    ds, _ = photos
    ds.apply_model(Cycler(), label_field="p", classes=["a", "c"], num_workers=0)
    raw = list(db[ds.collection_name].find().sort("_id", 1))
    assert all([d["label"] for d in doc["p_dets"]["detections"]] == ["a", "c"] for doc in raw)
    widths = [np.asarray(Image.open(d["filepath"])).shape[1] for d in raw]
    assert [("p_cls" in doc) for doc in raw] == [w % 2 == 1 for w in widths]


class Echo(mz.SamplesMixin, mz.Model):
    """Answers with the text of the sample field its ``prompt`` input comes from."""

    def __init__(self):
        super().__init__()
        self.needs_fields = {"prompt": "filepath"}

    def predict(self, arg, sample=None):
        return mz.Classification(label=str((sample or {}).get("prompt")))


def test_extra_keywords_reach_needs_fields_for_this_run_only(photos):
    ds, _ = photos
    model = Echo()
    ds.apply_model(model, label_field="echo", prompt="question", num_workers=0)
    assert ds.values("echo.label") == ds.values("question")
    assert model.needs_fields == {"prompt": "filepath"}  # the model object is not changed
    ds.apply_model(model, label_field="echo2", needs_fields={"prompt": "question"}, num_workers=0)
    assert ds.values("echo2.label") == ds.values("question")
    ds.apply_model(model, label_field="echo3", num_workers=0)
    assert ds.values("echo3.label") == ds.values("filepath")
    with pytest.raises(mz.ConfigError, match="prompt=3"):
        ds.apply_model(model, label_field="x", prompt=3)
    with pytest.raises(mz.ConfigError, match="has no argument 'prompt'"):
        ds.apply_model(Cycler(), label_field="x", prompt="question")  # not a SamplesMixin: still strict


def _doc_sizes(db, ds):
    return [len(bson.encode(d)) for d in db[ds.collection_name].find()]


class Bands(mz.Model):
    """A semantic segmentation by brightness: 4 classes, uint8."""

    def predict(self, arg):
        return mz.Segmentation(mask=(np.asarray(arg).mean(axis=2) // 64).astype(np.uint8))


def test_output_dir_writes_masks_as_pngs_identical_to_the_in_database_ones(photos, db, tmp_path):
    ds, root = photos
    model = Bands()
    ds.apply_model(model, label_field="seg_db", num_workers=0)
    out = tmp_path / "masks"
    ds.apply_model(model, label_field="seg", output_dir=str(out), rel_dir=root, num_workers=0)
    for sample in ds:
        assert sample.seg._data.get("mask") is None and sample.seg.mask_path.startswith(str(out))
        rel = os.path.splitext(os.path.relpath(sample.filepath, root))[0]
        assert sample.seg.mask_path == os.path.join(str(out), rel, "seg.png")
        np.testing.assert_array_equal(np.asarray(Image.open(sample.seg.mask_path)), sample.seg_db.mask)
        np.testing.assert_array_equal(sample.seg.mask, sample.seg_db.mask)
    # drawing reads the files: the same picture as from the in-database mask
    from modelzoo.drawing import draw_image

    sample = ds.first()
    assert len(np.unique(sample.seg_db.mask)) > 1  # something to draw
    image = np.asarray(Image.open(sample.filepath).convert("RGB"))
    np.testing.assert_array_equal(
        np.asarray(draw_image(image, {"s": sample.seg})), np.asarray(draw_image(image, {"s": sample.seg_db}))
    )
    # evaluation reads the files: the same masks agree everywhere
    assert ds.evaluate_segmentations("seg", gt_field="seg_db").pixel_accuracy == 1.0
    assert ds.evaluate_segmentations("seg_db", gt_field="seg").pixel_accuracy == 1.0
    # the documents stay small: without the in-database copy, under 2 KB
    db[ds.collection_name].update_many({}, {"$unset": {"seg_db": ""}})
    assert max(_doc_sizes(db, ds)) < 2048
    with pytest.raises(mz.ConfigError, match="not under it"):
        ds.apply_model(model, label_field="seg2", output_dir=str(out), rel_dir=str(tmp_path / "elsewhere"), num_workers=0)


class Depth(mz.Model):
    """A float heatmap (a gradient) and a boolean instance mask per image."""

    def predict(self, arg):
        h, w = arg.shape[:2]
        depth = np.linspace(0.0, 2.0, h * w, dtype=np.float32).reshape(h, w)
        mask = np.asarray(arg[: h // 2, : w // 2].mean(axis=2) > 100)
        return {
            "depth": mz.Heatmap(map=depth, range=[0.0, 2.0]),
            "objects": mz.Detections(detections=[mz.Detection(label="x", bounding_box=[0, 0, 0.5, 0.5], mask=mask)]),
        }


def test_output_dir_writes_heatmaps_and_instance_masks(photos, tmp_path):
    ds, _ = photos
    out = tmp_path / "maps"
    ds.apply_model(Depth(), label_field="m", output_dir=str(out), num_workers=0)
    for sample in ds:
        image = np.asarray(Image.open(sample.filepath).convert("RGB"))
        h, w = image.shape[:2]
        heat = sample.m_depth
        assert heat.map_path.endswith("m_depth.png") and heat.range == [0.0, 2.0]
        stored = heat.map
        assert stored.dtype == np.uint16 and stored.shape == (h, w)
        expected = np.linspace(0.0, 2.0, h * w, dtype=np.float32).reshape(h, w)
        np.testing.assert_allclose(stored / 65535.0 * 2.0, expected, atol=2.0 / 65535)
        det = sample.m_objects.detections[0]
        assert det.mask_path.endswith(f"m_objects-{det.id}.png")
        np.testing.assert_array_equal(det.mask, image[: h // 2, : w // 2].mean(axis=2) > 100)
        assert os.path.dirname(det.mask_path).startswith(str(out))


def test_progress_callback(photos):
    ds, _ = photos
    seen = []
    ds.apply_model(Cycler(), label_field="q", batch_size=2, num_workers=0,
                   progress=lambda pb: seen.append((pb.iteration, pb.total, pb.complete, pb.progress)))
    assert seen[-1] == (4, 4, True, 1.0)
    assert [s[0] for s in seen[:-1]] == [2, 4]
