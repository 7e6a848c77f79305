"""evaluate_classifications against scikit-learn, on a real model and real
data; evaluate_segmentations against a numpy computation in the test."""

import numpy as np
import pytest

import modelzoo as mz


@pytest.fixture
def dataset(request):
    ds = mz.Dataset(f"test-{request.node.name}"[:60], overwrite=True)
    yield ds
    ds.delete()


def test_classification_metrics_equal_sklearn(dataset):
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support, top_k_accuracy_score

    rng = np.random.default_rng(0)
    classes = [f"c{i}" for i in range(7)]
    n = 400
    truth = rng.integers(0, 7, n)
    logits = rng.normal(0, 1, (n, 7)) + 1.5 * np.eye(7)[truth]
    logits[:, 6] -= 3  # a class that is rarely predicted
    pred = logits.argmax(1)
    ids = dataset.add_samples([f"{i}.jpg" for i in range(n)])
    dataset.set_values("gt", [mz.Classification(label=classes[t]) for t in truth])
    dataset.set_values("pred", [
        mz.Classification(label=classes[p], confidence=0.5, logits=logits[i].astype(np.float32)) for i, p in enumerate(pred)
    ])
    results = dataset.evaluate_classifications("pred", "gt", eval_key="cls", classes=classes, k=3)
    y_true, y_pred = [classes[t] for t in truth], [classes[p] for p in pred]
    assert results.accuracy == pytest.approx(accuracy_score(y_true, y_pred), abs=1e-12)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=classes, zero_division=0)
    report = results.report()
    for i, c in enumerate(classes):
        assert [report[c][k] for k in ("precision", "recall", "f1")] == pytest.approx([p[i], r[i], f[i]], abs=1e-12)
        assert report[c]["support"] == s[i]
    np.testing.assert_array_equal(results.confusion_matrix(), confusion_matrix(y_true, y_pred, labels=classes))
    assert results.classes == classes
    assert results.top_k() == pytest.approx(
        top_k_accuracy_score(truth, logits.astype(np.float32), k=3, labels=range(7)), abs=1e-12)
    # per-sample correctness, views, storage
    assert dataset.values("cls") == [t == q for t, q in zip(truth, pred)]
    assert len(dataset.match_eval("cls", "incorrect")) == int((truth != pred).sum())
    assert dataset.load_evaluation("cls").accuracy == results.accuracy
    dataset.delete_evaluation("cls")
    assert dataset.count("cls") == 0 and dataset.list_evaluations() == []
    assert len(ids) == n


def test_missing_predictions_count_as_none(dataset):
    from sklearn.metrics import classification_report

    dataset.add_samples([f"{i}.jpg" for i in range(6)])
    dataset.set_values("gt", [mz.Classification(label=x) for x in "aabbcc"])
    dataset.set_values("pred", [mz.Classification(label="a"), None, mz.Classification(label="b"),
                                mz.Classification(label="b"), mz.Classification(label="a"), None])
    results = dataset.evaluate_classifications("pred", "gt")
    expected = classification_report(list("aabbcc"), ["a", "(none)", "b", "b", "a", "(none)"],
                                     labels=["a", "b", "c", "(none)"], output_dict=True, zero_division=0)
    for c in "abc":
        assert results.report()[c]["recall"] == pytest.approx(expected[c]["recall"])
        assert results.report()[c]["precision"] == pytest.approx(expected[c]["precision"])
    assert results.accuracy == pytest.approx(expected["accuracy"] if "accuracy" in expected else 0.5)


@pytest.mark.usefixtures("zoo_env")
def test_digits_model_on_held_out_digits_from_a_class_folder(tmp_path):
    """The zoo's digits model over scikit-learn's held-out digits, imported
    with from_image_classification_dir from a folder written here."""
    from PIL import Image

    from modelzoo.zoo.digits import digits_split

    _, _, images, labels = digits_split()
    truth = {}
    for i, (img, label) in enumerate(zip(images, labels)):
        folder = tmp_path / "digits" / str(int(label))
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{i:04d}.png"
        Image.fromarray(img, mode="L").save(path)
        truth[str(path)] = str(int(label))
    ds = mz.Dataset.from_image_classification_dir(tmp_path / "digits", name="digits-eval", overwrite=True)
    try:
        model = mz.load_zoo_model("digits-cnn-torch")
        ds.apply_model(model, label_field="pred", progress=False, store_logits=True)
        results = ds.evaluate_classifications("pred", "ground_truth", eval_key="digits", classes=model.classes, k=2)
        predicted = dict(zip(ds.values("filepath"), ds.values("pred.label")))
        by_hand = np.mean([predicted[p] == t for p, t in truth.items()])
        assert len(predicted) == 450 and results.accuracy == pytest.approx(by_hand, abs=1e-12)
        assert results.accuracy > 0.9 and results.top_k() >= results.accuracy
        assert sum(results.confusion_matrix().ravel()) == 450
    finally:
        ds.delete()


def test_segmentation_iou_equals_numpy(dataset):
    rng = np.random.default_rng(1)
    ids = dataset.add_samples([f"{i}.png" for i in range(5)])
    gts, preds = [], []
    for _ in range(5):
        gt = rng.integers(0, 4, (30, 40)).astype(np.uint8)
        pred = np.where(rng.random((30, 40)) < 0.7, gt, rng.integers(0, 4, (30, 40))).astype(np.uint8)
        gts.append(gt)
        preds.append(pred)
    targets = {"0": "sky", "1": "road", "2": "car", "3": "tree"}
    dataset.set_values("gt", [mz.Segmentation(mask=m, mask_targets=targets) for m in gts])
    dataset.set_values("pred", [mz.Segmentation(mask=m) for m in preds])
    results = dataset.evaluate_segmentations("pred", "gt", eval_key="seg")
    g, p = np.concatenate([m.ravel() for m in gts]), np.concatenate([m.ravel() for m in preds])
    ious = {targets[str(c)]: np.sum((g == c) & (p == c)) / np.sum((g == c) | (p == c)) for c in range(4)}
    assert results.report() == {k: {"iou": pytest.approx(v)} for k, v in ious.items()}
    assert results.mIoU() == pytest.approx(np.mean(list(ious.values())))
    assert results.pixel_accuracy == pytest.approx(np.mean(g == p))
    assert dataset.values("seg_accuracy") == pytest.approx([np.mean(a == b) for a, b in zip(gts, preds)])
    assert len(ids) == 5


def test_deleting_a_dataset_forgets_its_evaluations_and_only_its_own():
    names = [f"test-forget-{i}" for i in range(2)]
    datasets = [mz.Dataset(name, overwrite=True) for name in names]
    try:
        for ds in datasets:
            ds.add_samples(["a.jpg", "b.jpg"])
            ds.set_values("gt", [mz.Classification(label="x"), mz.Classification(label="y")])
            ds.set_values("pred", [mz.Classification(label="x"), mz.Classification(label="x")])
            assert ds.evaluate_classifications("pred", "gt", eval_key="ev").accuracy == 0.5
        datasets[0].delete()
        again = mz.Dataset(names[0], overwrite=True)  # the same name: no record left behind for it
        datasets[0] = again
        assert again.list_evaluations() == []
        with pytest.raises(mz.EvaluationError, match="has no evaluation 'ev'"):
            again.match_eval("ev", "correct")
        assert datasets[1].list_evaluations() == ["ev"]
        assert len(datasets[1].match_eval("ev", "incorrect")) == 1
    finally:
        for ds in datasets:
            ds.delete()
