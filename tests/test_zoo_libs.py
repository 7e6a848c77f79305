"""The timm, transformers and Ultralytics zoo sources (issue #23).

Everything is built with ``pretrained=False`` (nothing is downloaded: the
hub is offline for these tests). A seeded sample per timm family, every
transformers task mapping (tiny configs built here) and every YOLO task
run unmarked; the whole samples run under ``slow``. Ultralytics (AGPL-3.0)
is never a test dependency: its tests skip without it.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

import modelzoo as mz
from modelzoo import zoo
from tests.images import photo, write_photos

HERE = os.path.dirname(os.path.abspath(__file__))
ULTRALYTICS_SKIP = "ultralytics is not installed (AGPL-3.0, an optional extra): pip install 'modelzoo[ultralytics]'"


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    monkeypatch.setenv(zoo.ENV_OFFLINE, "1")


def _fiftyone_names():
    with open(os.path.join(HERE, "fiftyone_torch_zoo_names.txt"), encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip() and not line.startswith("#")]


# -- listing ------------------------------------------------------------------------------------


def test_listing_imports_no_library():
    """A fresh interpreter lists every source's names, thousands of them,
    without importing torch, timm, transformers or ultralytics. (How long it
    takes is measured in benchmarks/bench_zoo_list.py, not asserted here: a
    test's outcome must not depend on the host's speed.)"""
    code = (
        "import sys, json\n"
        "import modelzoo\n"
        "names = modelzoo.list_zoo_models()\n"
        "heavy = [m for m in ('torch', 'timm', 'transformers', 'ultralytics') if m in sys.modules]\n"
        "print(json.dumps({'n': len(names), 'heavy': heavy,"
        " 'timm': sum(n.startswith('timm/') for n in names), 'hf': sum(n.startswith('hf/') for n in names)}))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.path.dirname(HERE)}
    out = json.loads(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                    check=True).stdout.strip().splitlines()[-1])
    assert out["heavy"] == []
    assert out["n"] > 2000 and out["timm"] > 1500 and out["hf"] > 5


def test_at_least_200_of_fiftyones_torch_names_resolve():
    names = _fiftyone_names()
    assert len(names) == 283
    listed = set(zoo.list_zoo_models())
    resolved = [n for n in names if n in listed]
    assert len(resolved) >= 200, sorted(set(names) - listed)
    sources = {zoo.get_zoo_model_info(n).zoo_source for n in resolved}
    assert {"torchvision", "transformers", "ultralytics"} <= sources


def test_any_hugging_face_repository_resolves_by_name():
    info = zoo.get_zoo_model_info("hf/someone/some-vit")
    assert info.zoo_source == "transformers" and info.model.config["repo"] == "someone/some-vit"
    with pytest.raises(mz.ModelNotFoundError):
        zoo.get_zoo_model_info("hf/not a repo")


# -- timm ---------------------------------------------------------------------------------------


def _timm_index():
    from modelzoo.zoo.generate_timm import read_timm_catalog

    return read_timm_catalog()


_BIG = ("giant", "huge", "large", "xlarge", "xxlarge", "gigantic", "enormous", "_1b", "_3b", "_7b", "_g14", "_h14",
        "_e_", "_l_", "_xl", "_h_", "_g_", "448", "512", "518", "576", "608", "800", "1024")


def _timm_sample(per_family: int, seed: int = 0):
    """A seeded choice of tags per timm family (its module in timm.models),
    among each family's smallest-looking names (a CPU builds them in seconds)."""
    import timm

    rng = random.Random(seed)
    by_family = {}
    for tag in _timm_index()["tags"]:
        family = timm.models.model_entrypoint(tag["architecture"]).__module__.rsplit(".", 1)[-1]
        by_family.setdefault(family, []).append(tag["name"])
    sample = []
    for family in sorted(by_family):
        names = sorted(by_family[family])
        score = {n: sum(k in n for k in _BIG) for n in names}
        small = [n for n in names if score[n] == min(score.values())]
        sample.extend(rng.sample(small, min(per_family, len(small))))
    return sample


def test_timm_index_matches_installed_timm():
    """The shipped index is what the generator makes from the installed timm
    (same tags and data configs; feature widths are kept as measured)."""
    pytest.importorskip("timm")
    from modelzoo.zoo.generate_timm import generate_timm

    shipped = _timm_index()
    fresh = generate_timm(shipped["feature_widths"])
    assert fresh["timm"] == shipped["timm"], "regenerate: python -m modelzoo.zoo.generate_timm"
    assert fresh["tags"] == shipped["tags"]


def _check_timm(name: str) -> None:
    info = zoo.get_zoo_model_info("timm/" + name)
    model = zoo.load_zoo_model("timm/" + name, pretrained=False, device="cpu", optimize=False)
    image = photo("chelsea")
    module = model.torch_model.model  # timm's own module
    x = model.transforms(image).normalized().unsqueeze(0)
    _, h, w = info.metadata["input_size"]
    assert tuple(x.shape[-2:]) == (h, w)
    with torch.inference_mode():
        features = module.forward_features(x)
        try:
            reference = module.forward_head(features, pre_logits=True).reshape(-1).numpy()
        except NotImplementedError:  # no pooling head: the zoo embeds the mean of the tokens
            reference = features.numpy().reshape(-1, features.shape[-1]).mean(axis=0)
    vector = model.embed(image)
    assert vector.shape == reference.shape
    if info.metadata["embeddings_dim"]:
        assert vector.shape == (info.metadata["embeddings_dim"],)
    np.testing.assert_allclose(vector, reference, rtol=1e-3, atol=1e-4)
    if "classification" in info.tags:
        label = model.predict(image)
        assert isinstance(label, mz.Classification) and label.label in model.classes
        assert len(model.classes) == info.metadata["num_classes"]


@pytest.mark.parametrize("name", ["resnet18.a1_in1k", "vit_tiny_patch16_224.augreg_in21k_ft_in1k",
                                  "vit_small_patch14_dinov2.lvd142m", "efficientnet_b0.ra_in1k"])
def test_timm_tags_build_without_weights_and_embed_pooled_features(name):
    pytest.importorskip("timm")
    _check_timm(name)


def test_timm_classes_are_timms_imagenet_names_and_data_config_is_timms():
    pytest.importorskip("timm")
    import timm
    from timm.data import create_transform, resolve_data_config

    model = zoo.load_zoo_model("timm/resnet18.a1_in1k", pretrained=False, device="cpu", optimize=False)
    assert model.classes[0] == "tench" and model.classes[1] == "goldfish"
    # the zoo's preprocessing is timm's eval transform (resize, crop, interpolation, mean, std)
    from PIL import Image

    reference_model = timm.create_model("resnet18.a1_in1k", pretrained=False)
    transform = create_transform(**resolve_data_config({}, model=reference_model))
    image = photo("chelsea")
    ours = model.transforms(image).normalized()
    theirs = transform(Image.fromarray(image))
    assert ours.shape == theirs.shape
    assert float((ours - theirs).abs().mean()) < 0.02  # uint8 vs PIL resampling


def _timm_family_sample():
    try:
        return _timm_sample(1)
    except ImportError:
        return []


@pytest.mark.slow
@pytest.mark.parametrize("name", _timm_family_sample())
def test_timm_seeded_sample_of_every_family(name):
    _check_timm(name)


# -- transformers -------------------------------------------------------------------------------


def tiny_cases():
    """One or more tiny transformers configs per task mapping (no download):
    case -> (task, config); a case named after its task is that task's first."""
    import transformers as T

    vit = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)
    text = dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2, vocab_size=99,
                max_position_embeddings=32)
    resnet = dict(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")
    swin = dict(embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2], window_size=4, image_size=64)
    universal = dict(num_queries=8, hidden_dim=32, encoder_feedforward_dim=32, dim_feedforward=32, encoder_layers=1,
                     decoder_layers=2, num_attention_heads=2, num_labels=4, use_pretrained_backbone=False,
                     use_timm_backbone=False)
    rf_detr = dict(backbone_config=dict(model_type="rf_detr_dinov2", hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                                        image_size=64, patch_size=8, num_windows=2, window_block_indexes=[0, 2],
                                        out_features=["stage1", "stage2", "stage3", "stage4"]),
                   d_model=32, decoder_ffn_dim=32, decoder_layers=2, decoder_self_attention_heads=2,
                   decoder_cross_attention_heads=2, num_queries=10, group_detr=1, intermediate_size=32, c2f_num_blocks=1,
                   num_labels=3)
    return {
        "image-classification": ("image-classification", T.ViTConfig(
            **vit, image_size=32, patch_size=8, num_labels=5, architectures=["ViTForImageClassification"])),
        "object-detection": ("object-detection", T.DetrConfig(
            d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
            encoder_ffn_dim=32, decoder_ffn_dim=32, num_queries=10, use_timm_backbone=False,
            backbone_config=T.ResNetConfig(**resnet, out_features=["stage2"]), use_pretrained_backbone=False,
            num_labels=3, architectures=["DetrForObjectDetection"])),
        "rt-detr": ("object-detection", T.RTDetrConfig(
            backbone_config=T.RTDetrResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1],
                                                 layer_type="basic", out_features=["stage2", "stage3", "stage4"]),
            encoder_in_channels=[16, 24, 32], feat_strides=[8, 16, 32], encoder_hidden_dim=16, encoder_ffn_dim=32,
            encoder_attention_heads=2, d_model=16, decoder_in_channels=[16, 16, 16], decoder_ffn_dim=32,
            decoder_attention_heads=2, decoder_layers=1, num_queries=10, num_labels=3, use_pretrained_backbone=False,
            use_timm_backbone=False, architectures=["RTDetrForObjectDetection"])),
        "rf-detr": ("object-detection", T.RfDetrConfig(**rf_detr, architectures=["RfDetrForObjectDetection"])),
        "rf-detr-seg": ("instance-segmentation", T.RfDetrConfig(**rf_detr, architectures=["RfDetrForInstanceSegmentation"])),
        "zero-shot-object-detection": ("zero-shot-object-detection", T.OwlViTConfig(
            text_config=dict(text, max_position_embeddings=16), vision_config=dict(vit, image_size=32, patch_size=8),
            projection_dim=32)),
        "grounding-dino": ("zero-shot-object-detection", T.GroundingDinoConfig(
            backbone_config=T.SwinConfig(**swin, out_features=["stage2", "stage3", "stage4"]),
            text_config=T.BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
                                     vocab_size=99, max_position_embeddings=64),
            d_model=32, encoder_layers=1, decoder_layers=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
            encoder_attention_heads=2, decoder_attention_heads=2, num_queries=10, num_feature_levels=3, max_text_len=32,
            use_pretrained_backbone=False, use_timm_backbone=False)),
        "omdet-turbo": ("zero-shot-object-detection", T.OmDetTurboConfig(
            backbone_config=T.SwinConfig(**swin, out_indices=[2, 3, 4]), use_timm_backbone=False,
            apply_layernorm_after_vision_backbone=False,  # transformers' Swin gives NCHW maps (timm's NHWC)
            text_config=T.CLIPTextConfig(**dict(text, num_hidden_layers=1, max_position_embeddings=16)),
            text_projection_in_dim=32, text_projection_out_dim=32, task_encoder_hidden_dim=32, class_embed_dim=32,
            num_queries=10, d_model=16, vision_features_channels=[16, 16, 16], encoder_in_channels=[32, 64, 128],
            encoder_attention_heads=2, encoder_dim_feedforward=32, decoder_hidden_dim=16, decoder_num_heads=2,
            decoder_num_layers=1, decoder_dim_feedforward=32, image_size=64)),
        "zero-shot-image-classification": ("zero-shot-image-classification", T.CLIPConfig(
            text_config=text, vision_config=dict(vit, image_size=32, patch_size=8), projection_dim=16)),
        "semantic-segmentation": ("semantic-segmentation", T.SegformerConfig(
            num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[8, 16], num_attention_heads=[1, 2],
            decoder_hidden_size=16, num_labels=4, patch_sizes=[7, 3], strides=[4, 2], mlp_ratios=[2, 2],
            architectures=["SegformerForSemanticSegmentation"])),
        "oneformer-semantic": ("semantic-segmentation", T.OneFormerConfig(
            backbone_config=T.SwinConfig(**swin, out_features=["stage1", "stage2", "stage3", "stage4"]), **universal,
            text_encoder_width=32, text_encoder_num_layers=1, text_encoder_context_length=16, task_seq_len=16,
            max_seq_len=16, text_encoder_vocab_size=99, text_encoder_proj_layers=1, conv_dim=32, mask_dim=32,
            architectures=["OneFormerForUniversalSegmentation"])),
        "instance-segmentation": ("instance-segmentation", T.Mask2FormerConfig(
            backbone_config=T.SwinConfig(**swin, out_features=["stage1", "stage2", "stage3", "stage4"]), **universal,
            feature_size=32, mask_feature_size=32, architectures=["Mask2FormerForUniversalSegmentation"])),
        "panoptic-segmentation": ("panoptic-segmentation", T.OneFormerConfig(
            backbone_config=T.SwinConfig(**swin, out_features=["stage1", "stage2", "stage3", "stage4"]), **universal,
            text_encoder_width=32, text_encoder_num_layers=1, text_encoder_context_length=16, task_seq_len=16,
            max_seq_len=16, text_encoder_vocab_size=99, text_encoder_proj_layers=1, conv_dim=32, mask_dim=32,
            architectures=["OneFormerForUniversalSegmentation"])),
        "zero-shot-semantic-segmentation": ("zero-shot-semantic-segmentation", T.GroupViTConfig(
            text_config=dict(text, num_hidden_layers=1, max_position_embeddings=16),
            vision_config=dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, depths=[1, 1],
                               num_group_tokens=[8, 4], num_output_groups=[8, 4], image_size=32, patch_size=8,
                               num_hidden_layers=2),
            projection_dim=16, projection_intermediate_dim=32)),
        "promptable-segmentation": ("promptable-segmentation", T.SamConfig(
            vision_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                               image_size=64, patch_size=8, output_channels=16, global_attn_indexes=[1], window_size=4,
                               mlp_dim=37, num_pos_feats=8),
            prompt_encoder_config=dict(hidden_size=16, image_size=64, patch_size=8, mask_input_channels=4),
            mask_decoder_config=dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, mlp_dim=32,
                                     iou_head_hidden_dim=16))),
        "sam2": ("promptable-segmentation", T.Sam2Config(
            vision_config=dict(
                backbone_config=dict(model_type="sam2_hiera_det_model", hidden_size=8, num_attention_heads=1,
                                     image_size=[64, 64], blocks_per_stage=[1, 1, 2, 1], embed_dim_per_stage=[8, 16, 32, 64],
                                     num_attention_heads_per_stage=[1, 1, 2, 2], window_size_per_stage=[4, 4, 2, 2],
                                     global_attention_blocks=[3], window_positional_embedding_background_size=[2, 2]),
                backbone_channel_list=[64, 32, 16, 8], backbone_feature_sizes=[[16, 16], [8, 8], [4, 4]], fpn_hidden_size=16),
            prompt_encoder_config=dict(hidden_size=16, image_size=64, patch_size=16, mask_input_channels=4),
            mask_decoder_config=dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, mlp_dim=32,
                                     iou_head_hidden_dim=16))),
        "depth-estimation": ("depth-estimation", T.DepthAnythingConfig(
            backbone_config=T.Dinov2Config(**vit, image_size=28, patch_size=14, out_indices=[1, 2], reshape_hidden_states=False),
            neck_hidden_sizes=[8, 16], reassemble_hidden_size=32, fusion_hidden_size=16, head_hidden_size=8,
            reassemble_factors=[2, 1], use_pretrained_backbone=False)),
        "keypoints": ("keypoints", T.VitPoseConfig(
            backbone_config=T.VitPoseBackboneConfig(**vit, image_size=[32, 24], patch_size=[8, 8], out_indices=[2]),
            num_labels=17)),
        "image-feature-extraction": ("image-feature-extraction", T.Dinov2Config(**vit, image_size=28, patch_size=14)),
    }


def tiny_configs():
    """The first tiny config of each task mapping."""
    return {task: config for case, (task, config) in tiny_cases().items() if case == task}


_LABEL_TYPES = {
    "image-classification": mz.Classification,
    "object-detection": mz.Detections,
    "zero-shot-object-detection": mz.Detections,
    "zero-shot-image-classification": mz.Classification,
    "semantic-segmentation": mz.Segmentation,
    "instance-segmentation": mz.Detections,
    "panoptic-segmentation": mz.Detections,
    "zero-shot-semantic-segmentation": mz.Segmentation,
    "promptable-segmentation": mz.Detections,
    "depth-estimation": mz.Heatmap,
    "keypoints": mz.Keypoints,
}
_CASES = ["image-classification", "object-detection", "rt-detr", "rf-detr", "rf-detr-seg", "zero-shot-object-detection", "grounding-dino",
          "omdet-turbo", "zero-shot-image-classification", "semantic-segmentation", "oneformer-semantic",
          "instance-segmentation", "panoptic-segmentation", "zero-shot-semantic-segmentation", "promptable-segmentation",
          "sam2", "depth-estimation", "keypoints", "image-feature-extraction"]


def _hf_model(case, classes=("cat", "dog"), seed=0, **over):
    """The tiny model of ``case`` (seeded: two builds have the same weights)."""
    from modelzoo.zoo.hf_models import HFImageModel
    from modelzoo.zoo.hf_sam import HFSamModel

    task, config = tiny_cases()[case]
    kwargs = {"classes": list(classes)} if task.startswith("zero-shot") else {}
    cls = HFSamModel if task == "promptable-segmentation" else HFImageModel
    torch.manual_seed(seed)
    return cls({"repo": f"tiny/{case}", "task": task, "pretrained": False, "hf_config": config, "device": "cpu",
                **kwargs, **over}), config


def _box_prompts(image):
    """Two box prompts on ``image`` (a Detections, as a prompt field holds)."""
    return mz.Detections(detections=[mz.Detection(label="head", bounding_box=[0.3, 0.05, 0.35, 0.35]),
                                     mz.Detection(label="body", bounding_box=[0.1, 0.4, 0.8, 0.6])])


def test_every_task_mapping_has_a_tiny_config():
    pytest.importorskip("transformers")
    from modelzoo.zoo.hf_models import TASKS
    from modelzoo.zoo.hf_source import read_hf_catalog

    tasks = {task for task, _ in tiny_cases().values()}
    assert tasks == set(TASKS) - {"universal-segmentation"} | {"promptable-segmentation"}
    assert {e["task"] for e in read_hf_catalog()["fiftyone"]} <= tasks
    assert set(_LABEL_TYPES) | {"image-feature-extraction"} == tasks
    assert set(_CASES) == set(tiny_cases())


@pytest.mark.parametrize("case", _CASES)
def test_transformers_task_mapping_labels_a_photo(case):
    """Each task mapping, on a tiny config: the config maps to the task, and
    predict returns the label type its task promises."""
    pytest.importorskip("transformers")
    from modelzoo.zoo.hf_models import task_of

    model, config = _hf_model(case)
    task = model.config.task
    assert task_of(config, hint=task) == task
    image = photo("astronaut")
    if task == "image-feature-extraction":
        vector = model.embed(image)
        assert vector.shape == (config.hidden_size,)
        return
    if task == "promptable-segmentation":
        out = model.predict(image, {"prompt_field": _box_prompts(image)})
    else:
        out = model.predict(image)
    if task == "keypoints":
        assert isinstance(out["detections"], mz.Detections)
        out = out["keypoints"]
        assert len(out.keypoints[0].points) == 17
    assert isinstance(out, _LABEL_TYPES[task])
    if isinstance(out, mz.Segmentation):
        assert out.mask.shape == image.shape[:2]
    if task == "depth-estimation":
        assert out.map.shape == image.shape[:2]
    if isinstance(out, mz.Classification):
        assert out.label in model.classes
    if isinstance(out, mz.Detections) and task != "promptable-segmentation":
        assert all(d.label in model.classes for d in out.detections)
        if task == "object-detection" or task.startswith("zero-shot"):
            assert out.detections  # top-k of untrained queries: some boxes
    if task in ("instance-segmentation", "panoptic-segmentation", "promptable-segmentation"):
        assert all(d.mask is not None and d.mask.dtype == bool for d in out.detections)


@pytest.mark.parametrize("case", ["zero-shot-image-classification", "zero-shot-object-detection", "grounding-dino",
                                  "omdet-turbo", "zero-shot-semantic-segmentation"])
def test_zero_shot_classes_can_be_replaced(case):
    pytest.importorskip("transformers")
    model, _ = _hf_model(case)
    model.set_classes(["bird", "plane", "rocket"])
    assert model.classes == ["bird", "plane", "rocket"]
    out = model.predict(photo("rocket"))
    if isinstance(out, mz.Segmentation):
        labels = [out.mask_targets[str(v)] for v in np.unique(out.mask)]
    else:
        labels = [out.label] if isinstance(out, mz.Classification) else [d.label for d in out.detections]
    assert labels and set(labels) <= {"bird", "plane", "rocket"}


def _values(label):
    """What a label says, comparable across two models."""
    if isinstance(label, mz.Classification):
        return (label.label, round(label.confidence, 5))
    if isinstance(label, mz.Segmentation):
        return (label.mask.tobytes(), tuple(sorted(label.mask_targets.items())))
    return [(d.label, round(d.confidence, 5), tuple(round(v, 5) for v in d.bounding_box)) for d in label.detections]


@pytest.mark.parametrize("case", ["zero-shot-image-classification", "zero-shot-object-detection", "grounding-dino",
                                  "omdet-turbo", "zero-shot-semantic-segmentation"])
def test_zero_shot_classes_per_run(case, tmp_path, request):
    """apply_model(classes=...) on a zero-shot model: those classes are the
    run's prompts (prepared once), and the labels are those of the same
    weights loaded with these classes; the model's classes are unchanged."""
    pytest.importorskip("transformers")
    model, _ = _hf_model(case, classes=["cat", "dog"])
    reference, _ = _hf_model(case, classes=["rocket", "person", "coffee"])  # same seed: same weights
    paths = write_photos(str(tmp_path), ["chelsea", "astronaut", "rocket"])
    ds = mz.Dataset(f"zoo-libs-{request.node.name}"[:60], overwrite=True)
    try:
        ds.add_images(paths)
        ds.apply_model(model, label_field="run", classes=["rocket", "person", "coffee"], batch_size=2, num_workers=1,
                       progress=False)
        assert model.classes == ["cat", "dog"]
        ds.apply_model(reference, label_field="ref", batch_size=2, num_workers=1, progress=False)
        ds.apply_model(model, label_field="own", batch_size=2, num_workers=1, progress=False)
        for sample in ds:
            assert _values(sample["run"]) == _values(sample["ref"])
            own = sample["own"]
            names = ([own.label] if isinstance(own, mz.Classification) else
                     list(own.mask_targets.values()) if isinstance(own, mz.Segmentation) else [d.label for d in own.detections])
            assert set(names) <= {"cat", "dog"}
    finally:
        ds.delete()


def test_groupvit_segments_as_transformers_does():
    """The zoo's GroupViT path (text embedded once) gives the argmax of
    transformers' own segmentation logits (text and image in one forward)."""
    pytest.importorskip("transformers")
    model, _ = _hf_model("zero-shot-semantic-segmentation", classes=["cat", "dog", "grass"])
    image = photo("chelsea")
    pixels = model.transforms.processor(images=image, return_tensors="pt")["pixel_values"]
    tokens = model.torch_model.tokenizer([f"a photo of a {c}" for c in ["cat", "dog", "grass"]], return_tensors="pt",
                                         padding=True)
    with torch.inference_mode():
        logits = model.torch_model.model(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"],
                                         pixel_values=pixels, output_segmentation=True).segmentation_logits
        ours = model.torch_model(pixels)
    np.testing.assert_allclose(ours.numpy(), logits.numpy(), rtol=1e-4, atol=1e-4)
    label = model.predict(image)
    assert label.mask.shape == image.shape[:2] and label.mask_targets == {"0": "cat", "1": "dog", "2": "grass"}


def test_panoptic_segments_are_transformers_post_processing():
    """OneFormer's panoptic segments are those of transformers'
    post_process_panoptic_segmentation on the same outputs (labels, scores,
    pixels), and never overlap."""
    pytest.importorskip("transformers")
    from modelzoo.zoo.hf_models import _panoptic

    model, _ = _hf_model("panoptic-segmentation", query_thresh=0.0)
    image = photo("coffee")[::4, ::4]
    processor = model.transforms.processor
    inputs = processor(images=image, task_inputs=["panoptic"], return_tensors="pt")
    net = model.torch_model
    with torch.inference_mode():
        out = net.model(pixel_values=inputs["pixel_values"], task_inputs=net._task_inputs)
    # untrained, no query is sure of a class: sharpen the class scores so that segments form
    out.class_queries_logits = out.class_queries_logits * 20
    out.masks_queries_logits = (out.masks_queries_logits - out.masks_queries_logits.mean()) / out.masks_queries_logits.std() * 5
    h, w = inputs["pixel_values"].shape[-2:]
    theirs = processor.post_process_panoptic_segmentation(out, threshold=0.0, target_sizes=[(h, w)])[0]
    ours = _panoptic(out.class_queries_logits, out.masks_queries_logits, (w, h), 0.0)[0]
    assert [s["label_id"] for s in theirs["segments_info"]] == ours["labels"].tolist()
    np.testing.assert_allclose([s["score"] for s in theirs["segments_info"]], ours["scores"].numpy(), atol=1e-5)
    for s, mask in zip(theirs["segments_info"], ours["masks"][:, 0]):
        np.testing.assert_array_equal((theirs["segmentation"] == s["id"]).numpy(), mask.bool().numpy())
    assert len(ours["labels"]) and float(ours["masks"].sum(0).max()) <= 1.0


@pytest.mark.parametrize("case,square", [("promptable-segmentation", False), ("promptable-segmentation", True),
                                         ("sam2", False)])
def test_sam_segments_box_prompts_as_transformers_does(case, square):
    """SAM and SAM 2 on box prompts: each Detection keeps its prompt's label
    and box, its mask is transformers' own (the processor's post-processing,
    the candidate of highest predicted IoU) inside the box."""
    pytest.importorskip("transformers")
    from transformers import Sam2Processor, SamProcessor

    model, _ = _hf_model(case)
    image = photo("astronaut")[:, 0 if square else 64:]  # not square: SAM pads, SAM 2 stretches
    prompts = _box_prompts(image)
    label = model.predict(image, {"prompt_field": prompts})
    h, w = image.shape[:2]
    boxes = [[x * w, y * h, (x + bw) * w, (y + bh) * h] for x, y, bw, bh in (d.bounding_box for d in prompts.detections)]
    sam2 = case == "sam2"
    processor = (Sam2Processor if sam2 else SamProcessor)(image_processor=model.transforms.processor)
    inputs = processor(images=image, input_boxes=[boxes], return_tensors="pt")
    with torch.inference_mode():
        out = model.torch_model.model(pixel_values=inputs["pixel_values"], input_boxes=inputs["input_boxes"])
    if sam2:
        masks = processor.post_process_masks(out.pred_masks, inputs["original_sizes"])[0]
    else:
        masks = processor.post_process_masks(out.pred_masks, inputs["original_sizes"], inputs["reshaped_input_sizes"])[0]
    best = out.iou_scores[0].argmax(1)
    assert [d.label for d in label.detections] == ["head", "body"]
    for j, det in enumerate(label.detections):
        assert det.bounding_box == pytest.approx(prompts.detections[j].bounding_box, abs=1.0 / min(w, h))
        assert det.confidence == pytest.approx(float(out.iou_scores[0, j, best[j]]), abs=1e-5)
        x1, y1, x2, y2 = (int(round(v)) for v in boxes[j])
        expected = masks[j, best[j]].numpy()[y1:y2, x1:x2]
        assert det.mask.shape == expected.shape
        np.testing.assert_array_equal(det.mask, expected)


def test_sam_point_prompts_and_missing_prompts():
    pytest.importorskip("transformers")
    model, _ = _hf_model("promptable-segmentation", mask_thresh=0.0)
    image = photo("astronaut")
    points = mz.Keypoints(keypoints=[mz.Keypoint(label="face", points=[[0.45, 0.2], [0.5, 0.25]])])
    label = model.predict(image, {"prompt_field": points})
    assert isinstance(label, mz.Detections)
    assert all(d.label == "face" and d.mask is not None for d in label.detections)
    assert model.predict(image, {"prompt_field": None}).detections == []
    with pytest.raises(mz.ModelError, match="prompt_field"):
        model.predict(image)


def test_transformers_index_matches_installed_transformers():
    """Every model type of the shipped index is one the installed
    transformers knows, and its default config maps to the entry's task."""
    pytest.importorskip("transformers")
    from transformers import CONFIG_MAPPING, AutoConfig

    from modelzoo.zoo.hf_models import task_of
    from modelzoo.zoo.hf_source import read_hf_catalog

    catalog = read_hf_catalog()
    assert len(catalog["fiftyone"]) >= 80
    for entry in catalog["fiftyone"]:
        assert entry["model_type"] in CONFIG_MAPPING, entry
        config = AutoConfig.for_model(entry["model_type"])
        assert task_of(config, hint=entry["task"]) == entry["task"], entry


def test_timm_apply_model_stores_what_predict_returns(tmp_path, request):
    pytest.importorskip("timm")
    from PIL import Image

    model = zoo.load_zoo_model("timm/resnet18.a1_in1k", pretrained=False, device="cpu")
    paths = write_photos(str(tmp_path), ["chelsea", "astronaut", "coffee"])
    ds = mz.Dataset(f"zoo-libs-{request.node.name}"[:60], overwrite=True)
    try:
        ds.add_images(paths)
        ds.apply_model(model, label_field="p", batch_size=2, num_workers=1, progress=False)
        for sample in ds:
            expected = model.predict(np.asarray(Image.open(sample.filepath).convert("RGB")))
            assert isinstance(sample["p"], mz.Classification) and sample["p"].label == expected.label
    finally:
        ds.delete()


@pytest.mark.parametrize("graph", ["eager", "optimized"])
def test_timm_apply_model_gives_timms_own_eval_loop_outputs(tmp_path, request, graph):
    """On real photos (JPEG and PNG, several sizes), apply_model gives what
    timm's own eval loop gives with the same weights: its data config and
    transform on PIL images, the eager model. The same top-1 and logits
    within 1e-4 (the optimized graph is held to that), eager and optimized."""
    timm = pytest.importorskip("timm")
    from PIL import Image
    from timm.data import create_transform, resolve_data_config

    model = zoo.load_zoo_model("timm/resnet18.a1_in1k", pretrained=False, device="cpu")
    if graph == "optimized":
        model.prepare(100_000)  # what a long run builds
        assert model.optimization != "eager"
    reference = timm.create_model("resnet18.a1_in1k", pretrained=False)
    reference.load_state_dict(model.torch_model.model.state_dict())
    reference.eval()
    transform = create_transform(**resolve_data_config({}, model=reference))
    paths = write_photos(str(tmp_path), ["chelsea", "astronaut", "coffee", "rocket"], scale=1)
    ds = mz.Dataset(f"zoo-libs-{request.node.name}"[:60], overwrite=True)
    try:
        ds.add_images(paths)
        ds.apply_model(model, label_field="p", batch_size=2, num_workers=1, store_logits=True, progress=False)
        for sample in ds:
            with torch.no_grad():
                expected = reference(transform(Image.open(sample.filepath).convert("RGB"))[None])[0].numpy()
            logits = np.asarray(sample["p"].logits, dtype=np.float32)
            assert model.classes.index(sample["p"].label) == int(expected.argmax()), sample.filepath
            np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4 * float(np.abs(expected).max()))
    finally:
        ds.delete()


def test_transformers_classifier_matches_the_module_by_hand():
    """The zoo's path (image processor in the loader, our processor after)
    gives the module's own argmax on the processor's pixel values."""
    pytest.importorskip("transformers")
    model, config = _hf_model("image-classification")
    image = photo("chelsea")
    processor = model.transforms.processor
    with torch.inference_mode():
        logits = model.torch_model.model(pixel_values=processor(images=image, return_tensors="pt")["pixel_values"]).logits
    expected = config.id2label[int(logits.argmax())]
    assert model.predict(image).label == expected


def test_zero_shot_classes_are_the_prompts_embedded_once():
    pytest.importorskip("transformers")
    model, _ = _hf_model("zero-shot-image-classification")
    assert model.can_embed_prompts and model.classes == ["cat", "dog"]
    image = photo("chelsea")
    e = model.embed(image)
    prompts = model.embed_prompts(["a photo of a cat", "a photo of a dog"])
    sims = (prompts / np.linalg.norm(prompts, axis=1, keepdims=True)) @ (e / np.linalg.norm(e))
    assert model.predict(image).label == ["cat", "dog"][int(np.argmax(sims))]


@pytest.mark.parametrize("case", ["semantic-segmentation", "object-detection", "rt-detr", "instance-segmentation", "rf-detr-seg",
                                  "panoptic-segmentation", "oneformer-semantic", "zero-shot-semantic-segmentation",
                                  "omdet-turbo", "grounding-dino", "promptable-segmentation"])
def test_transformers_apply_model_on_real_photos(case, tmp_path, request):
    """apply_model runs the image processor in the loader workers and stores
    the label type the task promises, the same as predict (SAM: the prompts
    of each sample's prompt_field)."""
    pytest.importorskip("transformers")
    from PIL import Image

    model, _ = _hf_model(case)
    task = model.config.task
    paths = write_photos(str(tmp_path), ["chelsea", "astronaut", "coffee"])
    ds = mz.Dataset(f"zoo-libs-{request.node.name}"[:60], overwrite=True)
    try:
        ds.add_images(paths)
        extra = {}
        if task == "promptable-segmentation":
            for sample in ds:
                sample["gt"] = _box_prompts(None)
                sample.save()
            extra = {"prompt_field": "gt"}
        ds.apply_model(model, label_field="p", batch_size=2, num_workers=1, progress=False, skip_failures=False, **extra)
        for sample in ds:
            image = np.asarray(Image.open(sample.filepath).convert("RGB"))
            expected = model.predict(image, {"prompt_field": sample["gt"]}) if extra else model.predict(image)
            assert isinstance(sample["p"], _LABEL_TYPES[task])
            if isinstance(expected, mz.Segmentation):
                np.testing.assert_array_equal(sample["p"].mask, expected.mask)
            else:
                assert [d.label for d in sample["p"].detections] == [d.label for d in expected.detections]
                for got, want in zip(sample["p"].detections, expected.detections):
                    if want.mask is not None:
                        np.testing.assert_array_equal(got.mask, want.mask)
    finally:
        ds.delete()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["segformer-b0-ade20k-torch", "dinov2-vits14-torch", "owlvit-base-patch32-torch",
                                  "rtdetr-v2-s-coco-torch", "depth-anything-v2-small-torch", "vitpose-base-simple-torch",
                                  "siglip-base-patch16-224-torch", "mask2former-swin-tiny-ade-semantic-torch"])
def test_fiftyone_transformers_names_build_offline_from_default_configs(name):
    """Offline and uncached, a FiftyOne name builds from transformers'
    default config of its model type (random weights) and labels a photo."""
    pytest.importorskip("transformers")
    info = zoo.get_zoo_model_info(name)
    kwargs = {"classes": ["cat", "person"]} if "zero-shot" in info.tags else {}
    model = zoo.load_zoo_model(name, pretrained=False, device="cpu", optimize=False, **kwargs)
    out = model.predict(photo("astronaut"))
    assert out is not None


# -- Ultralytics --------------------------------------------------------------------------------


def _ultralytics():
    """Skips without Ultralytics; imports it as the zoo does (which leaves
    PIL.Image.open as it was: a plain ``import ultralytics`` would replace it
    for every later test of this process)."""
    from modelzoo.zoo.ultralytics_models import import_ultralytics

    try:
        import_ultralytics()
    except mz.ZooError:
        pytest.skip(ULTRALYTICS_SKIP)


def test_importing_ultralytics_leaves_pil_and_the_environment_as_they_were(tmp_path):
    """Ultralytics replaces PIL.Image.open when imported (its wrapper installs
    and imports pi-heif the first time Pillow cannot identify a file); through
    the zoo, a corrupt image still raises Pillow's own error after a YOLO model
    was loaded and run, and Ultralytics may not pip-install at run time."""
    import PIL
    import PIL.Image

    _ultralytics()
    model = zoo.load_zoo_model("yolov8n-coco-torch", pretrained=False, device="cpu", image_size=320)
    model.predict(photo("coffee")[:, :, ::-1].copy())
    assert PIL.Image.open.__module__ == "PIL.Image", PIL.Image.open.__module__
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(PIL.UnidentifiedImageError):
        PIL.Image.open(empty)
    from ultralytics.utils import checks

    # set to "false" by the zoo unless the user had set it: Ultralytics obeys whichever it is
    assert checks.AUTOINSTALL is (os.environ["YOLO_AUTOINSTALL"].lower() == "true")


def test_ultralytics_names_list_without_it_and_say_how_to_install():
    info = zoo.get_zoo_model_info("yolov8n-coco-torch")
    assert info.zoo_source == "ultralytics" and info.license == "AGPL-3.0"
    from modelzoo.zoo.ultralytics_models import import_ultralytics

    try:
        import_ultralytics()
    except mz.ZooError:
        with pytest.raises(mz.ZooError, match=r"modelzoo\[ultralytics\]"):
            zoo.load_zoo_model("yolov8n-coco-torch", pretrained=False)


@pytest.mark.parametrize("name,kind", [
    ("yolov8n-coco-torch", "detection"),
    ("yolo11n-seg-coco-torch", "instance-segmentation"),
    ("yolo26n-pose-coco-torch", "keypoints"),
    ("yolo26n-cls-imagenet-torch", "classification"),
])
def test_yolo_tasks_build_from_yaml_and_label_a_photo(name, kind):
    _ultralytics()
    model = zoo.load_zoo_model(name, pretrained=False, device="cpu", confidence_thresh=0.0, max_det=5)
    image = photo("astronaut")
    out = model.predict(image)
    if kind == "classification":
        assert isinstance(out, mz.Classification) and out.label in model.classes and len(model.classes) == 1000
    elif kind == "keypoints":
        assert isinstance(out["detections"], mz.Detections) and isinstance(out["keypoints"], mz.Keypoints)
        assert all(len(k.points) == 17 for k in out["keypoints"].keypoints)
    else:
        assert isinstance(out, mz.Detections) and len(model.classes) == 80
        assert all(d.label in model.classes for d in out.detections)
        if kind == "instance-segmentation":
            assert all(d.mask is not None for d in out.detections)


def test_yolo_pretrained_weights_need_trust(tmp_path, monkeypatch):
    _ultralytics()
    monkeypatch.setenv(zoo.ENV_HOME, str(tmp_path))
    with pytest.raises(mz.ZooError, match="trust=True"):
        zoo.load_zoo_model("yolov8n-coco-torch", device="cpu")


def test_yolo_apply_model_on_real_photos(tmp_path, request):
    _ultralytics()
    from PIL import Image

    model = zoo.load_zoo_model("yolov8n-coco-torch", pretrained=False, device="cpu", confidence_thresh=0.0, max_det=3)
    paths = write_photos(str(tmp_path), ["chelsea", "astronaut"])
    ds = mz.Dataset(f"zoo-libs-{request.node.name}"[:60], overwrite=True)
    try:
        ds.add_images(paths)
        ds.apply_model(model, label_field="p", batch_size=2, num_workers=1, progress=False)
        for sample in ds:
            expected = model.predict(np.asarray(Image.open(sample.filepath).convert("RGB")))
            assert isinstance(sample["p"], mz.Detections)
            assert [d.label for d in sample["p"].detections] == [d.label for d in expected.detections]
    finally:
        ds.delete()


def _yolo_catalogue():
    from modelzoo.zoo.ultralytics_source import read_ultralytics_catalog

    return read_ultralytics_catalog()["fiftyone"]


#: the classes each dataset of the catalogue gives (Ultralytics' dataset YAMLs)
_DATASET_CLASSES = {"coco": 80, "imagenet": 1000, "dota": 15, "oiv7": 601}


@pytest.mark.parametrize("feed", ["loader", "ultralytics"])
def test_yolo_apply_model_gives_ultralytics_own_boxes(tmp_path, request, feed):
    """apply_model gives the boxes of ``YOLO.predict`` on the same files with
    the same weights and batches, whichever feeds it (the engine's loader
    workers or Ultralytics' own loading). The classification biases of the
    seeded head are zeroed so that random weights score boxes around 0.5
    (their initial bias keeps every score near 1e-4: nothing to compare);
    the scores are then near ties, which both sides must break alike."""
    _ultralytics()
    from PIL import Image
    from ultralytics import YOLO

    # at 320 pixels: ~1,700 candidate boxes per image, well inside Ultralytics' NMS time limit on a loaded machine
    model = zoo.load_zoo_model("yolov8n-coco-torch", pretrained=False, device="cpu", feed=feed, max_det=20,
                               image_size=320)
    with torch.no_grad():
        for key, value in model.torch_model.state_dict().items():
            if ".cv3." in key and key.endswith(".2.bias"):
                value.zero_()
    reference = YOLO("yolov8n.yaml")
    reference.model.load_state_dict(model.torch_model.state_dict())
    paths = []
    for i, name in enumerate(["chelsea", "astronaut", "coffee", "rocket"]):  # one size: batches letterbox alike
        path = str(tmp_path / f"{name}.{'jpg' if i % 2 == 0 else 'png'}")
        Image.fromarray(photo(name)).convert("RGB").resize((400, 300)).save(path)
        paths.append(path)
    ds = mz.Dataset(f"zoo-libs-{request.node.name}"[:60], overwrite=True)
    try:
        ds.add_images(paths)
        ds.apply_model(model, label_field="p", batch_size=2, num_workers=1, progress=False)
        ours = {s.filepath: s["p"] for s in ds}
        boxes = 0
        for r in reference.predict(paths, batch=2, conf=0.25, max_det=20, imgsz=320, verbose=False):
            dets = ours[r.path].detections
            xyxyn = r.boxes.xyxyn.numpy()
            assert len(dets) == len(xyxyn), r.path
            boxes += len(dets)
            for d, box, c, conf in zip(dets, xyxyn, r.boxes.cls.numpy(), r.boxes.conf.numpy()):
                x, y, w, h = d.bounding_box
                np.testing.assert_allclose([x, y, x + w, y + h], box, atol=1e-4)
                assert d.label == model.classes[int(c)] and abs(d.confidence - float(conf)) < 1e-5
        assert boxes >= 10  # there was something to compare
    finally:
        ds.delete()


@pytest.mark.slow
@pytest.mark.parametrize("name", [e["name"] for e in _yolo_catalogue()])
def test_every_ultralytics_catalogue_yaml_builds_and_labels_a_photo_as_its_tags_promise(name):
    """Every entry of catalogs/ultralytics.json builds from its YAML with
    random weights (nothing downloaded) and labels a real photograph with the
    label type its tags promise: ``classification`` a Classification of one
    of its dataset's classes, ``keypoints`` Detections and 17-point
    Keypoints, ``instance-segmentation`` Detections with a mask each,
    ``detection`` Detections (an OBB model's: the boxes enclosing its rotated ones)."""
    _ultralytics()
    info = zoo.get_zoo_model_info(name)
    dataset = info.model.config["dataset"]
    model = zoo.load_zoo_model(name, pretrained=False, device="cpu", confidence_thresh=0.0, max_det=3)
    try:
        n_classes = 1 if "keypoints" in info.tags else _DATASET_CLASSES[dataset]
        assert len(model.classes) == n_classes, (name, dataset)
        out = model.predict(photo("coffee"))
        if "classification" in info.tags:
            assert isinstance(out, mz.Classification) and out.label in model.classes
            return
        detections = out["detections"] if "keypoints" in info.tags else out
        assert isinstance(detections, mz.Detections)
        if "instance-segmentation" in info.tags:
            # Ultralytics drops a box whose mask is empty, as random weights' masks may all be
            assert model.torch_model.task == "segment" and len(detections.detections) <= 3
        else:
            assert 1 <= len(detections.detections) <= 3  # confidence 0: NMS keeps max_det boxes
        for d in detections.detections:
            assert d.label in model.classes
            x, y, w, h = d.bounding_box
            assert 0 <= x <= x + w <= 1 + 1e-6 and 0 <= y <= y + h <= 1 + 1e-6
        if "keypoints" in info.tags:
            assert isinstance(out["keypoints"], mz.Keypoints)
            assert len(out["keypoints"].keypoints) == len(detections.detections)
            assert all(len(k.points) == 17 for k in out["keypoints"].keypoints)
        if "instance-segmentation" in info.tags:
            assert all(d.mask is not None and d.mask.dtype == bool and d.mask.ndim == 2 for d in detections.detections)
        else:
            assert all(d.mask is None for d in detections.detections)
    finally:
        del model


@pytest.mark.parametrize("name,repo,task", [
    ("segment-anything-vitb-torch", "facebook/sam-vit-base", "promptable-segmentation"),
    ("segment-anything-2.1-hiera-tiny-image-torch", "facebook/sam2.1-hiera-tiny", "promptable-segmentation"),
    ("oneformer-coco-swin-large-panoptic-torch", "shi-labs/oneformer_coco_swin_large", "panoptic-segmentation"),
    ("oneformer-ade20k-swin-tiny-instance-torch", "shi-labs/oneformer_ade20k_swin_tiny", "instance-segmentation"),
    ("mask2former-swin-tiny-coco-panoptic-torch", "facebook/mask2former-swin-tiny-coco-panoptic", "panoptic-segmentation"),
    ("group-vit-segmentation-transformer-torch", "nvidia/groupvit-gcc-yfcc", "zero-shot-semantic-segmentation"),
    ("omdet-turbo-swin-tiny-torch", "omlab/omdet-turbo-swin-tiny-hf", "zero-shot-object-detection"),
    ("rfdetr-seg-nano-coco-torch", "Roboflow/rf-detr-seg-nano", "instance-segmentation"),
])
def test_fiftyone_names_of_the_new_mappings(name, repo, task):
    """FiftyOne's names resolve to the repository and task FiftyOne runs
    (its SAM image names to transformers' ports of the same weights)."""
    info = zoo.get_zoo_model_info(name)
    assert info.zoo_source == "transformers"
    assert (info.metadata["repo"], info.metadata["task"]) == (repo, task)
    expected = "HFSamModel" if task == "promptable-segmentation" else "HFImageModel"
    assert info.model.type.rsplit(".", 1)[-1] == expected


def test_a_sam_name_builds_without_weights_and_segments_a_prompt():
    pytest.importorskip("transformers")
    _, config = tiny_cases()["promptable-segmentation"]
    model = zoo.load_zoo_model("segment-anything-vitb-torch", pretrained=False, hf_config=config, device="cpu")
    image = photo("astronaut")
    label = model.predict(image, {"prompt_field": _box_prompts(image)})
    assert type(model).__name__ == "HFSamModel" and [d.label for d in label.detections] == ["head", "body"]
