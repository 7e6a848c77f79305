"""Heatmap labels (FiftyOne's: ``map``, ``map_path``, ``range``), masks and
maps read from PNG files by their labels, and the processor for dense
single-channel outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import modelzoo as mz
from modelzoo.processors import HeatmapOutputProcessor, get_output_processor_cls
from tests.images import photo


def test_heatmap_round_trips_through_a_dataset(db):
    depth = np.asarray(Image.fromarray(photo("camera")).resize((40, 30)), dtype=np.float32) / 255.0
    ds = mz.Dataset("heatmap-round-trip", overwrite=True)
    try:
        sid = ds.add_sample(mz.Sample(filepath="/h/a.jpg", depth=mz.Heatmap(map=depth, range=[0, 1])))
        got = ds[sid].depth
        assert isinstance(got, mz.Heatmap) and got.range == [0.0, 1.0]
        np.testing.assert_array_equal(got.map, depth)
        np.testing.assert_array_equal(ds.values("depth")[0].get_map(), depth)
    finally:
        ds.delete()


def test_masks_and_maps_in_png_files_are_read_transparently(tmp_path, db):
    gray = np.asarray(Image.fromarray(photo("camera")).resize((64, 48)))
    seg = (gray // 64).astype(np.uint8)  # 4 classes
    Image.fromarray(seg).save(tmp_path / "seg.png")
    depth16 = (gray.astype(np.uint16) * 257)
    Image.fromarray(depth16).save(tmp_path / "depth.png")
    inst = gray[10:30, 20:50] > 128
    Image.fromarray(inst.astype(np.uint8) * 255).save(tmp_path / "inst.png")
    ds = mz.Dataset("heatmap-files", overwrite=True)
    try:
        sid = ds.add_sample(mz.Sample(
            filepath="/h/b.jpg",
            seg=mz.Segmentation(mask_path=str(tmp_path / "seg.png")),
            depth=mz.Heatmap(map_path=str(tmp_path / "depth.png"), range=[0, 65535]),
            dets=mz.Detections(detections=[mz.Detection(label="x", bounding_box=[20 / 64, 10 / 48, 30 / 64, 20 / 48],
                                                        mask_path=str(tmp_path / "inst.png"))]),
        ))
        sample = ds[sid]
        np.testing.assert_array_equal(sample.seg.mask, seg)
        np.testing.assert_array_equal(sample.depth.map, depth16)
        np.testing.assert_array_equal(sample.dets.detections[0].mask, inst)
        # the document holds the paths, not the pixels
        raw = db[ds.collection_name].find_one({"_id": sample.id})
        assert "mask" not in raw["seg"] and raw["seg"]["mask_path"].endswith("seg.png")
        assert "map" not in raw["depth"]
    finally:
        ds.delete()
    with pytest.raises(mz.LabelError, match="missing.png"):
        _ = mz.Segmentation(mask_path=str(tmp_path / "missing.png")).mask


def test_heatmap_range_is_checked():
    with pytest.raises(mz.LabelError, match="range"):
        mz.Heatmap(map=np.zeros((2, 2)), range=[1, 0]).validate()


def test_heatmap_processor_resizes_single_channel_outputs():
    assert get_output_processor_cls("fiftyone.utils.torch.HeatmapOutputProcessor") is HeatmapOutputProcessor
    gen = torch.Generator().manual_seed(0)
    out = torch.rand((2, 1, 12, 16), generator=gen)
    proc = HeatmapOutputProcessor()
    same = proc(out, [(16, 12), (16, 12)], [(16, 12), (16, 12)])
    for label, m in zip(same, out[:, 0]):
        np.testing.assert_array_equal(label.map, m.numpy())
        assert label.range == pytest.approx([float(m.min()), float(m.max())])
    resized = HeatmapOutputProcessor(range=[0, 1])(out, [(32, 24), (8, 6)], [(16, 12), (16, 12)])
    assert resized[0].map.shape == (24, 32) and resized[1].map.shape == (6, 8)
    assert resized[0].range == [0.0, 1.0]
    # doubling the size with bilinear interpolation keeps the mean (up to the borders)
    assert resized[0].map.mean() == pytest.approx(float(out[0].mean()), abs=0.02)
    with pytest.raises(mz.ModelError, match=r"\(2, 12, 16\)"):
        proc(torch.rand((2, 3, 12, 16)), [(16, 12)] * 2, [(16, 12)] * 2)
