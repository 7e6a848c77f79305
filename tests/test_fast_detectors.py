"""The fast path of torchvision detectors (modelzoo.fast_detectors): the
matching it is verified with, the parts it replaces and leaves, its fallback,
and (slow) its equivalence with the plain eager torchvision model on real
photographs, scored here with numpy and pycocotools."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch
from torch import nn

from modelzoo.fast_detectors import is_torchvision_detector, make_fast_detector, match_detections
from modelzoo.testing import tiny_classifier, tiny_detector
from modelzoo.torch_image import TorchImageModel


def _det(boxes, labels, scores):
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "scores": torch.tensor(scores, dtype=torch.float32),
    }


def test_match_detections_against_counts_by_hand():
    ref = [_det([[0, 0, 10, 10], [20, 20, 40, 40], [50, 50, 60, 60]], [1, 2, 1], [0.9, 0.5, 0.2])]
    # box 0 shifted by 0.1 px: IoU 99 / 101 = 0.980; box 1 same place, other label;
    # an extra confident box; ref box 2 (score 0.2) is below the threshold
    cand = [_det([[0.1, 0, 10.1, 10], [20, 20, 40, 40], [70, 70, 80, 80]], [1, 1, 1], [0.85, 0.5, 0.8])]
    m = match_detections(cand, ref, score_thresh=0.3, iou_thresh=0.95)
    assert (m.matched, m.total, m.extra, m.candidates) == (1, 2, 2, 3)
    assert not m.ok(0.99)
    # shifted by 0.6 px: IoU 94 / 106 = 0.887 < 0.95
    moved = [_det([[0.6, 0, 10.6, 10]], [1], [0.9])]
    assert match_detections(moved, ref[:1], 0.3, 0.95).matched == 0
    assert match_detections(moved, ref[:1], 0.3, 0.85).matched == 1
    # a box whose score dropped just under the threshold still matches
    same = [_det([[0, 0, 10, 10], [20, 20, 40, 40]], [1, 2], [0.29, 0.5])]
    m = match_detections(same, ref, 0.3, 0.95)
    assert (m.matched, m.total, m.extra, m.candidates) == (2, 2, 0, 1) and m.ok()


def _images(n, seed=0, size=(120, 96)):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(3, size[1], size[0], generator=g) for _ in range(n)]


def test_fast_detector_replaces_the_backbone_and_roi_pool_only():
    net = tiny_detector(seed=3)
    eager_backbone, eager_heads, eager_pool = net.backbone, net.roi_heads, net.roi_heads.box_roi_pool
    fast = make_fast_detector(net, [_images(2, 0), _images(1, 1, (90, 130))])
    assert fast is not None, "the tiny detector's backbone traces"
    assert fast.parts == ["backbone", "roi_pool"] and fast.kind == "detector:backbone+roi_pool"
    # the eager model is left as it was; the fast one shares its eager parts
    assert net.backbone is eager_backbone and net.roi_heads is eager_heads and eager_heads.box_roi_pool is eager_pool
    assert fast.module.rpn is net.rpn and fast.module.transform is net.transform
    assert fast.module.roi_heads.box_head is net.roi_heads.box_head
    assert fast.module.backbone is not net.backbone
    images = _images(3, 7)
    with torch.inference_mode():
        eager_features = net.backbone(net.transform(images)[0].tensors)
        fast_features = fast.module.backbone(net.transform(images)[0].tensors)
    # the frozen channels_last graph computes what the eager backbone computes
    torch.testing.assert_close(fast_features, eager_features, rtol=1e-4, atol=1e-5)
    assert fast_features.is_contiguous()


def test_the_threaded_roi_pool_is_eager_bit_for_bit():
    from torchvision.ops import MultiScaleRoIAlign

    net = tiny_detector(seed=1)
    net.roi_heads.box_roi_pool = MultiScaleRoIAlign(["0", "1"], output_size=7, sampling_ratio=2)
    fast = make_fast_detector(net, [_images(1, 0)], parts=("roi_pool",))
    assert fast is not None and fast.parts == ["roi_pool"]
    g = torch.Generator().manual_seed(0)
    features = {"0": torch.randn(3, 16, 40, 50, generator=g), "1": torch.randn(3, 16, 20, 25, generator=g)}
    shapes = [(160, 200)] * 3
    proposals = []
    for n in (37, 0, 5):  # an image without proposals, and fewer than the threads
        xy = torch.rand(n, 2, generator=g) * 150
        proposals.append(torch.cat([xy, xy + 4 + torch.rand(n, 2, generator=g) * 120], 1))
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        expected = net.roi_heads.box_roi_pool(features, proposals, shapes)
        got = fast.module.roi_heads.box_roi_pool(features, proposals, shapes)
    finally:
        torch.set_num_threads(before)
    assert got.shape == (42, 16, 7, 7)
    assert torch.equal(got, expected)


class _Branchy(nn.Module):
    """A backbone whose output depends on a data-dependent branch: a trace
    records one side of it, so the frozen graph is wrong on the other."""

    out_channels = 8

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=4, padding=1)

    def forward(self, x):
        y = torch.relu(self.conv(x))
        return y * 3.0 if float(x.mean()) > 0.0 else y


def _branchy_detector():
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.ops import MultiScaleRoIAlign

    torch.manual_seed(0)
    return FasterRCNN(
        _Branchy(), num_classes=None, min_size=96, max_size=160,
        box_head=TwoMLPHead(8 * 7 * 7, 32), box_predictor=FastRCNNPredictor(32, 3),
        rpn_anchor_generator=AnchorGenerator(sizes=((16, 32),), aspect_ratios=((1.0,),)),
        box_roi_pool=MultiScaleRoIAlign(featmap_names=["0"], output_size=7, sampling_ratio=2),
    ).eval()


def test_a_backbone_the_trace_gets_wrong_stays_eager():
    net = _branchy_detector()
    # normalized input: the first example's mean is below 0, the second's above
    dark = [torch.full((3, 100, 120), -1.0) + 0.1 * torch.rand(3, 100, 120, generator=torch.Generator().manual_seed(1))]
    bright = [torch.full((3, 100, 120), 1.0) + 0.1 * torch.rand(3, 100, 120, generator=torch.Generator().manual_seed(2))]
    fast = make_fast_detector(net, [dark, bright], parts=("backbone",))
    assert fast is None  # nothing else was asked for: the detector stays eager
    fast = make_fast_detector(net, [dark, bright])
    assert fast is None or "backbone" not in fast.parts
    if fast is not None:
        assert any(n.startswith("backbone: left eager") and "differ" in n for n in fast.notes)
        assert fast.module.backbone is net.backbone


def test_torch_image_model_takes_the_fast_path_and_keeps_eager_on_request():
    assert not is_torchvision_detector(tiny_classifier())
    config = {
        "entrypoint_fcn": "modelzoo.testing.tiny_detector",
        "entrypoint_args": {"seed": 3},
        "output_processor_cls": "DetectorOutputProcessor",
        "classes": ["__background__", "a", "b"],
        "raw_inputs": True,
        "device": "cpu",
    }
    fast = TorchImageModel({**config, "optimize": True})
    assert fast.optimization == "detector:backbone+roi_pool", fast.optimization_notes
    eager = TorchImageModel({**config, "optimize": False})
    assert eager.optimization == "eager"
    image = (np.random.default_rng(0).random((96, 120, 3)) * 255).astype(np.uint8)
    reference = tiny_detector(seed=3)
    with torch.inference_mode():
        out = reference([torch.from_numpy(image).permute(2, 0, 1).float() / 255.0])[0]
    # optimize=False is torchvision's eager model: the same float32 boxes and scores
    dets = eager.predict(image).detections
    b = out["boxes"].double().numpy() / [120, 96, 120, 96]
    expected = np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1)
    np.testing.assert_allclose([d.bounding_box for d in dets], expected, rtol=0, atol=1e-12)
    assert [d.confidence for d in dets] == out["scores"].tolist()
    # auto: eager below the detectors' threshold, fast from it on
    auto = TorchImageModel(config)
    auto.prepare(8)
    assert auto.optimization == "eager"
    auto.optimize_timer = lambda eager, x, graph, y: (1.0, 0.5)  # fixed numbers: the graph "measured" 2x faster
    auto.prepare(32)
    assert auto.optimization == "detector:backbone+roi_pool"
    slower = TorchImageModel(config)
    slower.optimize_timer = lambda eager, x, graph, y: (1.0, 1.0)  # not faster: the backbone stays eager
    slower.prepare(32)
    assert slower.optimization == "detector:roi_pool"
    assert any("not 5% faster" in n for n in slower.optimization_notes), slower.optimization_notes


# -- on real photographs, a detector that learned something (slow) ---------------------------


def _photos(n, size=(640, 480)):
    """``n`` 640x480 crops of scikit-image's photographs."""
    import skimage.data
    from PIL import Image

    names = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina", "cat")
    out = []
    for i in range(n):
        rng = np.random.default_rng(100 + i)
        img = Image.fromarray(getattr(skimage.data, names[i % len(names)])()).convert("RGB")
        s = max(size[0] / img.width, size[1] / img.height) * rng.uniform(1.0, 1.5)
        img = img.resize((max(size[0], round(img.width * s)), max(size[1], round(img.height * s))), Image.BILINEAR)
        x, y = int(rng.integers(0, img.width - size[0] + 1)), int(rng.integers(0, img.height - size[1] + 1))
        out.append(np.asarray(img.crop((x, y, x + size[0], y + size[1]))))
    return out


def _iou(a, b):
    tl = np.maximum(a[:, None, :2], b[None, :, :2])
    br = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(br - tl, 0, None), axis=2)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def _coco_map(fast, eager, score):
    """COCO mAP@[.5:.95] of ``fast`` (boxes, labels, scores per image) with
    ``eager``'s boxes of at least ``score`` as the ground truth (pycocotools)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = {"images": [], "annotations": [], "categories": [{"id": k} for k in range(1, 91)]}
    dets = []
    for i, ((fb, fl, fs), (eb, el, es)) in enumerate(zip(fast, eager), start=1):
        gt["images"].append({"id": i})
        for b, lab, s in zip(eb, el, es):
            if s >= score:
                gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": i, "category_id": int(lab),
                                          "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                                          "area": (b[2] - b[0]) * (b[3] - b[1]), "iscrowd": 0})
        dets += [{"image_id": i, "category_id": int(lab), "score": float(s), "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]}
                 for b, lab, s in zip(fb, fl, fs)]
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0])


@pytest.mark.slow
def test_fast_detector_is_equivalent_to_eager_on_photographs(request, tmp_path_factory):
    from modelzoo.testing_shapes import shapes_classes, shapes_detector, shapes_scene

    photos = _photos(24)
    # pytest's cache keeps the trained weights between runs; without it (-p no:cacheprovider), a temp dir
    store = getattr(request.config, "cache", None)
    cache = str(store.mkdir("modelzoo-shapes-detector") if store else tmp_path_factory.mktemp("shapes-detector"))
    net = shapes_detector(photos[:16], cache)
    classes = shapes_classes()
    scenes = [shapes_scene(p, 5_000 + i)[0] for i, p in enumerate(photos[16:])]
    images = scenes + photos[16:20]  # photographs with shapes, and some without
    model = TorchImageModel({
        "entrypoint_fcn": lambda: shapes_detector(photos[:16], cache),
        "output_processor_cls": "DetectorOutputProcessor",
        "classes": classes,
        "raw_inputs": True,
        "optimize": True,
        "device": "cpu",
    })
    assert model.optimization == "detector:backbone+roi_pool", model.optimization_notes
    labels = []
    for i in range(0, len(images), 4):
        labels += model.predict_all(images[i:i + 4])
    # the reference: the plain torchvision model, same batches
    eager = []
    with torch.inference_mode():
        for i in range(0, len(images), 4):
            eager += net([torch.from_numpy(im.copy()).permute(2, 0, 1).float() / 255.0 for im in images[i:i + 4]])
    fast, ref = [], []
    matched = total = 0
    for dets, out in zip(labels, eager):
        fb = np.array([d.bounding_box for d in dets.detections]).reshape(-1, 4) * [640, 480, 640, 480]
        fb[:, 2:] += fb[:, :2]
        fl = [classes.index(d.label) for d in dets.detections]
        fs = [d.confidence for d in dets.detections]
        eb, el, es = out["boxes"].double().numpy(), out["labels"].tolist(), out["scores"].tolist()
        fast.append((fb, fl, fs))
        ref.append((eb, el, es))
        used = set()
        iou = _iou(eb, fb) if len(eb) and len(fb) else np.zeros((len(eb), len(fb)))
        for i in np.argsort(es)[::-1]:
            if es[i] < 0.3:
                continue
            total += 1
            cands = [j for j in range(len(fb)) if j not in used and fl[j] == el[i]]
            j = max(cands, key=lambda j: iou[i, j], default=None)
            if j is not None and iou[i, j] >= 0.95:
                used.add(j)
                matched += 1
    # the detector has learned: confident, distinct scores, on most scenes
    assert total >= len(scenes), f"only {total} eager boxes of score >= 0.3 on {len(scenes)} scenes"
    assert matched / total >= 0.99, f"{matched}/{total} eager boxes found again"
    assert _coco_map(fast, ref, 0.3) >= 0.99
