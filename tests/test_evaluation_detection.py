"""evaluate_detections against pycocotools' COCOeval, on generated COCO sets
imported with Dataset.from_coco; per-object results; stored evaluations."""

import json

import numpy as np
import pytest

import modelzoo as mz
from tests.coco_data import cocoeval, generate, predictions


def _dataset(tmp_path, data, name, label_types=("detections",)):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({k: data[k] for k in ("images", "annotations", "categories")}))
    ds = mz.Dataset.from_coco(path, tmp_path, name=name, label_types=label_types, overwrite=True)
    preds = predictions(data)
    ds.set_values("predictions", {sid: preds[cid] for sid, cid in zip(ds.ids(), ds.values("coco_id"))})
    return ds


@pytest.fixture(scope="module")
def boxes(tmp_path_factory):
    """300 generated images, 12 classes; the dataset evaluated under "ev", and COCOeval's run."""
    data = generate(n_images=300, n_classes=12, seed=0)
    ds = _dataset(tmp_path_factory.mktemp("boxes"), data, "eval-boxes")
    results = ds.evaluate_detections("predictions", "ground_truth", eval_key="ev", compute_mAP=True)
    yield data, cocoeval(data, "bbox"), ds, results
    ds.delete()


def test_coco_metrics_equal_pycocotools_for_boxes(boxes):
    boxes, reference, ds, results = boxes
    assert sum(a["iscrowd"] for a in boxes["annotations"]) > 5  # crowd regions are in the test
    small = sum(a["area"] < 32**2 for a in boxes["annotations"])
    assert 20 < small < len(boxes["annotations"]) - 20  # tiny and large objects
    np.testing.assert_allclose(results.stats(), reference.stats, atol=1e-6, rtol=0)
    assert results.mAP() == pytest.approx(reference.stats[0], abs=1e-6)
    # AP per class: the mean of each class's precisions, as COCOeval holds them
    precision = reference.eval["precision"][:, :, :, 0, -1]
    names = {c["id"]: c["name"] for c in boxes["categories"]}
    for k, cat in enumerate(reference.params.catIds):
        p = precision[:, :, k]
        assert results.ap_per_class()[names[cat]] == pytest.approx(float(np.mean(p[p > -1])), abs=1e-6)
    t = int(np.argmin(np.abs(reference.params.iouThrs - 0.5)))
    np.testing.assert_allclose(results.pr_curve("class03"), precision[t, :, 2], atol=1e-9)
    # the stored results are the same
    assert ds.list_evaluations() == ["ev"]
    assert ds.load_evaluation("ev").stats() == pytest.approx(results.stats())


def test_per_object_results_are_cocoeval_matches_at_iou_05(boxes):
    _, reference, ds, _ = boxes
    # pycocotools' matches at IoU .5, area "all", per image and category
    dt_matched, gt_matched = set(), set()
    for e in reference.evalImgs:
        if e is None or e["aRng"] != [0, 1e10]:
            continue
        dt_matched |= {d for d, m in zip(e["dtIds"], e["dtMatches"][0]) if m > 0}
        gt_matched |= {g for g, m in zip(e["gtIds"], e["gtMatches"][0]) if m > 0}
    dts = reference.cocoDt.anns
    # our predictions are in results order: result i is COCOeval's dt id i + 1
    i = 0
    kinds = {"tp": 0, "fp": 0, "fn": 0}
    for sample in ds:
        for det in sample.predictions.detections:
            i += 1
            assert dts[i]["score"] == pytest.approx(det.confidence)
            assert det.attributes["ev"] == ("tp" if i in dt_matched else "fp")
            kinds[det.attributes["ev"]] += 1
        n_fn = 0
        for gt in sample.ground_truth.detections:
            crowd = gt.attributes["iscrowd"]
            expected = "tp" if gt.attributes["coco_id"] in gt_matched else None if crowd else "fn"
            assert gt.attributes.get("ev") == expected
            n_fn += expected == "fn"
            if expected == "tp":  # the matched prediction points back at it
                pred = next(d for d in sample.predictions.detections if d.id == gt.attributes["ev_id"])
                assert pred.attributes["ev_id"] == gt.id
                assert pred.attributes["ev_iou"] == pytest.approx(gt.attributes["ev_iou"]) and pred.attributes["ev_iou"] >= 0.5
        assert (sample.ev_tp, sample.ev_fp, sample.ev_fn) == (
            sum(d.attributes["ev"] == "tp" for d in sample.predictions.detections),
            sum(d.attributes["ev"] == "fp" for d in sample.predictions.detections), n_fn)
    kinds["fn"] = sum(ds.values("ev_fn"))
    assert kinds["tp"] > 0 and kinds["fp"] > 0 and kinds["fn"] > 0
    # views over the results
    fp_view = ds.match_eval("ev", "fp")
    assert set(fp_view.ids()) == {s for s, n in zip(ds.ids(), ds.values("ev_fp")) if n > 0}
    assert 0 < len(fp_view) < len(ds)
    with pytest.raises(mz.DatasetError, match="tp, fp, fn"):
        ds.match_eval("ev", "wrong")


def test_delete_evaluation_removes_what_it_wrote_and_rerun_replaces(tmp_path):
    data = generate(n_images=20, n_classes=3, seed=3)
    ds = _dataset(tmp_path, data, "eval-delete")
    try:
        before = {f: ds.values(f) for f in ("predictions", "ground_truth")}
        ds.evaluate_detections("predictions", "ground_truth", eval_key="a", iou=0.5)
        ds.evaluate_detections("predictions", "ground_truth", eval_key="a", iou=0.75)  # replaces
        assert ds.list_evaluations() == ["a"] and ds.load_evaluation("a").config["iou"] == 0.75
        ds.evaluate_detections("predictions", "ground_truth", eval_key="b")
        assert ds.count("a_tp") == len(ds)
        ds.delete_evaluation("a")
        assert ds.list_evaluations() == ["b"] and ds.count("a_tp") == ds.count("a_fp") == ds.count("a_fn") == 0
        for f in ("predictions", "ground_truth"):
            for label in ds.values(f):
                for det in label.detections:
                    assert not {"a", "a_id", "a_iou"} & set(det.attributes)
                    assert "b" in det.attributes or (f == "ground_truth" and det.attributes["iscrowd"])
        ds.delete_evaluation("b")
        assert {f: ds.values(f) for f in ("predictions", "ground_truth")} == before  # ids aside, as before
        with pytest.raises(mz.EvaluationError, match="no evaluation 'b'"):
            ds.load_evaluation("b")
    finally:
        ds.delete()


@pytest.mark.slow
def test_coco_metrics_equal_pycocotools_for_masks(tmp_path):
    data = generate(n_images=120, n_classes=8, seed=1, masks=True, size_range=(96, 200))
    reference = cocoeval(data, "segm")
    ds = _dataset(tmp_path, data, "eval-masks", label_types=("segmentations",))
    try:
        assert ds.coco_report.mask_pixels_outside_box == 0
        results = ds.evaluate_detections("predictions", "ground_truth")  # masks on both sides: mask IoU
        assert results.config["use_masks"] is None
        np.testing.assert_allclose(results.stats(), reference.stats, atol=1e-6, rtol=0)
        boxes = ds.evaluate_detections("predictions", "ground_truth", use_masks=False)
        assert boxes.stats() != pytest.approx(results.stats())
    finally:
        ds.delete()


def test_bad_fields_are_named(tmp_path):
    data = generate(n_images=4, n_classes=2, seed=5)
    ds = _dataset(tmp_path, data, "eval-bad")
    try:
        ds.set_values("cls", [mz.Classification(label="a")] * len(ds))
        with pytest.raises(mz.EvaluationError, match=r"'predictons'.*Did you mean 'predictions'.*predictions \(Detections\)"):
            ds.evaluate_detections("predictons", "ground_truth")
        with pytest.raises(mz.EvaluationError, match=r"gt_field 'cls' holds Classification.*pred_field 'predictions' holds Detections|pred_field 'predictions' holds Detections; gt_field 'cls' holds Classification"):
            ds.evaluate_detections("predictions", "cls")
        with pytest.raises(mz.EvaluationError, match="Classification"):
            ds.evaluate_classifications("predictions", "cls")
    finally:
        ds.delete()
