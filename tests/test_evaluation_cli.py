"""``modelzoo evaluate`` and ``modelzoo draw``; plots and their missing extra."""

import json
import sys

import numpy as np
import pytest
from PIL import Image

import modelzoo as mz
from modelzoo.cli import main
from tests.coco_data import generate, predictions


@pytest.fixture
def detections(tmp_path):
    data = generate(n_images=12, n_classes=3, seed=7, size_range=(64, 96))
    for im in data["images"]:  # real files for drawing: gradients
        w, h = im["width"], im["height"]
        arr = np.zeros((h, w, 3), np.uint8)
        arr[..., 0] = np.linspace(0, 255, w)[None, :]
        arr[..., 1] = np.linspace(0, 255, h)[:, None]
        Image.fromarray(arr).save(tmp_path / im["file_name"])
    path = tmp_path / "gt.json"
    path.write_text(json.dumps({k: data[k] for k in ("images", "annotations", "categories")}))
    ds = mz.Dataset.from_coco(path, tmp_path, name="cli-eval", label_types=["detections"], overwrite=True)
    preds = predictions(data)
    ds.set_values("predictions", {s: preds[c] for s, c in zip(ds.ids(), ds.values("coco_id"))})
    yield ds
    ds.delete()


def test_evaluate_prints_the_report_and_writes_the_plots(detections, tmp_path, capsys):
    assert main(["evaluate", "cli-eval", "--pred", "predictions", "--gt", "ground_truth",
                 "--eval-key", "cli", "--plots", str(tmp_path / "plots")]) == 0
    out = capsys.readouterr().out
    stored = detections.load_evaluation("cli")
    assert f"{stored.stats()[0]:.3f}" in out and "PRECISION" in out and "class01" in out
    for name in ("cli-eval-cli-pr_curves.png", "cli-eval-cli-confusion_matrix.png"):
        img = Image.open(tmp_path / "plots" / name)
        assert img.format == "PNG" and np.asarray(img.convert("L")).std() > 5  # a drawn figure, not a blank page
    assert main(["evaluate", "cli-eval", "--pred", "predictons", "--gt", "ground_truth"]) == 1
    assert "predictons" in capsys.readouterr().err


def test_draw_writes_images_and_a_contact_sheet(detections, tmp_path, capsys):
    assert main(["draw", "cli-eval", "--fields", "ground_truth", "predictions", "--gt-fields", "ground_truth",
                 "--output", str(tmp_path / "drawn"), "--contact-sheet", str(tmp_path / "sheet.png"), "--limit", "4"]) == 0
    drawn = sorted((tmp_path / "drawn").glob("*.png"))
    assert len(drawn) == 4 and Image.open(tmp_path / "sheet.png").size == (4 * 256, 256)
    originals = [np.asarray(Image.open(tmp_path / s.filepath.split("/")[-1]).convert("RGB")) for s in detections.limit(4)]
    assert any((np.asarray(Image.open(p).convert("RGB")) != o).any() for p, o in zip(drawn, originals))
    assert main(["draw", "cli-eval", "--fields", "ground_truth"]) == 1


def test_plots_without_matplotlib_name_the_extra(detections, tmp_path, monkeypatch):
    results = detections.evaluate_detections("predictions", "ground_truth")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(mz.RequirementsError, match=r"modelzoo\[plot\]"):
        results.plot_pr_curves(str(tmp_path / "pr.png"))
