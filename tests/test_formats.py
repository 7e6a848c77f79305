"""Ground truth in and out: COCO files (round trip, bad files) and the
folder-per-class layout (against torchvision's ImageFolder)."""

import json
import os

import numpy as np
import pytest
from PIL import Image

import modelzoo as mz
from tests.images import photo

COCO_CATEGORIES = [
    {"id": 1, "name": "person", "supercategory": "person", "keypoints": ["head", "left", "right"], "skeleton": [[1, 2], [1, 3]]},
    {"id": 3, "name": "cat", "supercategory": "animal"},
    {"id": 7, "name": "cup", "supercategory": "kitchen"},
]


def _coco_file(tmp_path):
    """Three real photographs and annotations of every kind: polygons, RLE
    (compressed and not), crowd, keypoints, a box reaching outside its image."""
    import pycocotools.mask as mu

    images_dir = tmp_path / "images"
    images_dir.mkdir()
    images = []
    for i, name in enumerate(("astronaut", "chelsea", "coffee"), start=1):
        img = Image.fromarray(photo(name)).convert("RGB").resize((160, 120))
        img.save(images_dir / f"{name}.jpg")
        images.append({"id": 10 + i, "file_name": f"{name}.jpg", "width": 160, "height": 120})
    crowd = np.zeros((120, 160), np.uint8)
    crowd[60:100, 20:90] = 1
    crowd[70:80, 40:60] = 0
    rle = mu.encode(np.asfortranarray(crowd))
    uncompressed = {"size": [120, 160], "counts": [int(c) for c in _uncompressed_counts(crowd)]}
    anns = [
        {"id": 1, "image_id": 11, "category_id": 1, "bbox": [40.0, 10.0, 60.0, 90.0], "area": 4000.0, "iscrowd": 0,
         "segmentation": [[40, 10, 100, 10, 100, 100, 40, 100]],
         "keypoints": [70, 20, 2, 50, 60, 1, 0, 0, 0], "num_keypoints": 2},
        {"id": 2, "image_id": 11, "category_id": 7, "bbox": [120.0, 80.0, 60.0, 30.0], "area": 900.0, "iscrowd": 0},  # outside
        {"id": 3, "image_id": 12, "category_id": 3, "bbox": mu.toBbox(rle).tolist(), "area": float(mu.area(rle)),
         "iscrowd": 1, "segmentation": {"size": [120, 160], "counts": rle["counts"].decode()}},
        {"id": 4, "image_id": 12, "category_id": 3, "bbox": mu.toBbox(rle).tolist(), "area": float(mu.area(rle)),
         "iscrowd": 0, "segmentation": uncompressed},
        {"id": 5, "image_id": 13, "category_id": 7, "bbox": [10.5, 20.25, 30.0, 40.0], "area": 1200.0, "iscrowd": 0},
    ]
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": COCO_CATEGORIES}))
    return path, images_dir


def _uncompressed_counts(mask):
    flat = mask.ravel(order="F")
    counts, value, run = [], 0, 0
    for v in flat:
        if v != value:
            counts.append(run)
            value, run = v, 0
        run += 1
    counts.append(run)
    return counts


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_coco_round_trip_keeps_every_annotation(tmp_path):
    from pycocotools.coco import COCO

    path, images_dir = _coco_file(tmp_path)
    ds = mz.Dataset.from_coco(path, images_dir, name="coco-round-trip", overwrite=True)
    try:
        report = ds.coco_report
        assert (report.images, report.annotations, report.keypoints, report.clipped) == (3, 5, 1, 1)
        assert report.mask_pixels_outside_box == 0
        assert len(ds) == 3 and ds.values("metadata.width") == [160] * 3
        person = ds.first().ground_truth.detections[0]
        assert person.label == "person" and person.mask.shape == (90, 60)
        kp = ds.first().ground_truth_keypoints.keypoints[0]
        assert kp.points[0] == pytest.approx([70 / 160, 20 / 120]) and np.isnan(kp.points[2]).all()
        out = tmp_path / "exported.json"
        assert ds.export_coco(str(out), "ground_truth", keypoints_field="ground_truth_keypoints") == 5
        original, exported = COCO(str(path)), COCO(str(out))  # pycocotools reads what we wrote
        assert {c["name"]: c["id"] for c in exported.dataset["categories"]} == {c["name"]: c["id"] for c in COCO_CATEGORIES}
        assert exported.loadCats(1)[0]["skeleton"] == [[1, 2], [1, 3]]
        assert sorted(exported.imgs) == sorted(original.imgs)
        for ann_id, a in original.anns.items():
            b = exported.anns[ann_id]
            assert (b["image_id"], b["category_id"], b["iscrowd"], b["area"]) == (a["image_id"], a["category_id"], a["iscrowd"], a["area"])
            im = original.imgs[a["image_id"]]
            x, y, w, h = a["bbox"]
            clipped = [x, y, min(x + w, im["width"]) - x, min(y + h, im["height"]) - y]
            assert b["bbox"] == pytest.approx(clipped, abs=1e-9)
            if "segmentation" in a:
                np.testing.assert_array_equal(exported.annToMask(b), original.annToMask(a))
            if "keypoints" in a:
                assert b["keypoints"] == pytest.approx(a["keypoints"], abs=1e-9) and b["num_keypoints"] == 2
        # label ids are stable: the dataset's labels keep theirs through a read and a write back
        ids = [d.id for d in ds.first().ground_truth.detections]
        ds.set_values("ground_truth", ds.values("ground_truth"))
        assert [d.id for d in ds.first().ground_truth.detections] == ids
    finally:
        ds.delete()


def test_coco_unknown_images_and_categories_error_or_skip_counted(tmp_path):
    path, images_dir = _coco_file(tmp_path)
    data = json.loads(path.read_text())
    data["annotations"] += [
        {"id": 90 + i, "image_id": 999, "category_id": 3, "bbox": [0, 0, 1, 1]} for i in range(7)
    ] + [{"id": 80, "image_id": 11, "category_id": 42, "bbox": [0, 0, 1, 1]}]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(mz.DatasetError) as e:
        mz.Dataset.from_coco(bad, images_dir, name="coco-bad", overwrite=True)
    msg = str(e.value)
    assert "7 annotations point at images not in 'images' (ids 90, 91, 92, 93, 94 (and 2 more))" in msg
    assert "1 annotations point at categories not in 'categories' (ids 80)" in msg and "skip_unknown=True" in msg
    assert "coco-bad" not in mz.list_datasets()
    ds = mz.Dataset.from_coco(bad, images_dir, name="coco-bad", skip_unknown=True, overwrite=True)
    try:
        r = ds.coco_report
        assert (r.skipped_unknown_image, r.skipped_unknown_category, r.annotations) == (7, 1, 5)
        assert "7 annotations of unknown images skipped" in str(r)
    finally:
        ds.delete()
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(mz.DatasetError, match="broken.json.*not valid JSON"):
        mz.Dataset.from_coco(tmp_path / "broken.json", images_dir, name="coco-broken", overwrite=True)
    with pytest.raises(mz.DatasetError, match="Unknown COCO label types"):
        mz.Dataset.from_coco(path, images_dir, name="coco-types", label_types=["boxes"], overwrite=True)


def test_from_image_classification_dir_matches_torchvision_image_folder(tmp_path):
    from torchvision.datasets import ImageFolder

    root = tmp_path / "tree"
    names = ("astronaut", "chelsea", "coffee", "rocket")
    for i, cls in enumerate(("zebra", "ant", "moth")):
        for j in range(3):
            sub = root / cls / ("nested" if j == 2 else "")
            sub.mkdir(parents=True, exist_ok=True)
            Image.fromarray(photo(names[(i + j) % 4])).resize((32, 24)).save(sub / f"{cls}{j}.{'png' if j else 'jpg'}")
    (root / "ant" / "notes.txt").write_text("not an image")
    ds = mz.Dataset.from_image_classification_dir(root, name="folder-classes", overwrite=True)
    try:
        reference = ImageFolder(str(root))
        assert ds.info["classes"] == reference.classes
        expected = sorted((os.path.abspath(p), reference.classes[k]) for p, k in reference.samples)
        assert sorted(zip(ds.values("filepath"), ds.values("ground_truth.label"))) == expected
        assert [os.path.basename(p) for p in ds.ingest_report.skipped] == ["notes.txt"]
    finally:
        ds.delete()
    with pytest.raises(mz.DatasetError, match="no class subdirectories"):
        mz.Dataset.from_image_classification_dir(root / "ant" / "nested", name="folder-none", overwrite=True)
