"""compute_patch_embeddings: each patch's vector equals the model's
embedding of the same crop cut by hand (numpy slicing of the PIL-decoded
image, or of the PyAV-decoded frame), crops are cut in loader worker
processes and batched across samples, failures cost their patch."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

import modelzoo as mz
from modelzoo.loaders import FileLoader, list_collate
from modelzoo.testing import tiny_model
from tests.images import write_photos
from tests.videos import decode_with_pyav, pan_zoom, write_video

BOXES = [
    [0.1, 0.1, 0.4, 0.3],
    [0.55, 0.2, 0.3, 0.6],
    [0.0, 0.5, 1.0, 0.5],
    [-0.05, 0.8, 0.3, 0.3],  # past the image: cropped to its visible part
]


def _hand_crop(image, box, alpha=None, square=False):
    """FiftyOne's crop, by hand: clamp to the image, truncate to pixels."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = box[0], box[1], box[0] + box[2], box[1] + box[3]
    if alpha is not None:
        x1, x2 = x1 - alpha * box[2] / 2, x2 + alpha * box[2] / 2
        y1, y2 = y1 - alpha * box[3] / 2, y2 + alpha * box[3] / 2
    x1, x2, y1, y2 = (min(max(v, 0.0), 1.0) for v in (x1, x2, y1, y2))
    c0, c1, r0, r1 = int(w * x1), int(w * x2), int(h * y1), int(h * y2)
    if square:
        side = max(c1 - c0, r1 - r0)
        if c1 - c0 < side:
            c0 -= (side - (c1 - c0)) // 2
            c1 = c0 + side
        else:
            r0 -= (side - (r1 - r0)) // 2
            r1 = r0 + side
    return image[r0:r1, c0:c1]


@pytest.fixture(scope="module")
def embedder():
    return tiny_model("classification", embeddings_layer="<head")


@pytest.fixture
def photos(tmp_path, db):
    paths = write_photos(str(tmp_path), ["astronaut", "coffee", "chelsea", "rocket", "camera"])
    ds = mz.Dataset("patches-photos", overwrite=True)
    samples = []
    for i, p in enumerate(paths):
        boxes = BOXES[: 1 + i % 4] if i != 3 else []  # the rocket has an empty Detections
        samples.append(mz.Sample(filepath=p, gt=mz.Detections(detections=[mz.Detection(label="x", bounding_box=b) for b in boxes])))
    samples.append(mz.Sample(filepath=paths[0]))  # no field at all
    ds.add_samples(samples)
    yield ds
    ds.delete()


def _rgb(path):
    return np.asarray(Image.open(path).convert("RGB"))


def test_patch_vectors_equal_embeddings_of_hand_cut_crops(photos, embedder):
    got = photos.compute_patch_embeddings(embedder, "gt", batch_size=3, num_workers=1)
    assert list(got) == photos.values("id")
    for sid, path, boxes in zip(*photos.values(["id", "filepath", "gt.detections.bounding_box"])):
        if not boxes:
            assert got[sid] is None
            continue
        image = _rgb(path)
        expected = embedder.embed_all([_hand_crop(image, b) for b in boxes])
        assert got[sid].shape == (len(boxes), 16) and got[sid].dtype == np.float32
        np.testing.assert_allclose(got[sid], expected, atol=1e-5)
    # stored on each detection: the same vectors
    photos.compute_patch_embeddings(embedder, "gt", embeddings_field="emb", num_workers=0)
    assert photos.count("gt.detections.emb") == sum(len(b) for b in photos.values("gt.detections") if b)
    for sid, stored in zip(*photos.values(["id", "gt.detections.emb"])):
        if got[sid] is not None:
            np.testing.assert_allclose(np.stack(stored), got[sid], atol=1e-6)


def test_alpha_force_square_and_handle_missing(photos, embedder):
    got = photos.compute_patch_embeddings(embedder, "gt", alpha=0.2, force_square=True, num_workers=0)
    sid, path, boxes = next((s, p, b) for s, p, b in zip(*photos.values(["id", "filepath", "gt.detections.bounding_box"])) if b)
    image = _rgb(path)
    crop = _hand_crop(image, boxes[0], alpha=0.2, square=True)
    assert crop.shape[0] == crop.shape[1]
    np.testing.assert_allclose(got[sid][0], embedder.embed_all([crop])[0], atol=1e-5)
    whole = photos.compute_patch_embeddings(embedder, "gt", handle_missing="image", num_workers=0)
    for sid, path, boxes in zip(*photos.values(["id", "filepath", "gt.detections"])):
        if not boxes:
            np.testing.assert_allclose(whole[sid], embedder.embed_all([_rgb(path)]), atol=1e-5)
    with pytest.raises(mz.DatasetError, match="no patches in 'gt'"):
        photos.compute_patch_embeddings(embedder, "gt", handle_missing="error", num_workers=0)
    with pytest.raises(mz.ConfigError, match="handle_missing"):
        photos.compute_patch_embeddings(embedder, "gt", handle_missing="ignore")


def test_failed_patches_are_nan_rows_and_named(photos, embedder, tmp_path):
    ids = photos.add_samples([
        mz.Sample(filepath=str(tmp_path / "gone.jpg"), gt=mz.Detections(detections=[mz.Detection(bounding_box=b) for b in BOXES[:2]])),
        mz.Sample(filepath=photos.first().filepath, gt=mz.Detections(detections=[mz.Detection(bounding_box=[1.2, 0.1, 0.1, 0.1])])),
    ])
    got = photos.compute_patch_embeddings(embedder, "gt", num_workers=0)
    assert got[ids[0]].shape == (2, 16) and np.isnan(got[ids[0]]).all()
    assert got[ids[1]].shape == (1, 16) and np.isnan(got[ids[1]]).all()  # a box wholly outside: no pixel
    assert sum(not np.isnan(v).any() for v in got.values() if v is not None) == 4
    with pytest.raises(mz.PredictionError, match="gone.jpg"):
        photos.compute_patch_embeddings(embedder, "gt", skip_failures=False, num_workers=0)


class _PidLoader(FileLoader):
    """The model's loader: records the process that cut and loaded each crop."""

    @property
    def takes_frames(self):
        return True

    def load_frame(self, item, frame):
        return (os.getpid(), np.asarray(frame))


def _pid_image(path):
    return (os.getpid(), np.asarray(Image.open(path).convert("RGB")))


class BatchRecorder(mz.EmbeddingsMixin, mz.Model):
    """Embeds a crop as its mean color and size; records batches and loading processes."""

    def __init__(self):
        super().__init__()
        self.batches = []
        self.pids = set()

    def build_loader(self):
        return _PidLoader(_pid_image, list_collate)

    def predict(self, arg):
        return None

    def embed_all(self, args):
        self.batches.append(len(args))
        self.pids.update(pid for pid, _ in args)
        return np.stack([np.r_[crop.reshape(-1, 3).mean(axis=0), crop.shape[:2]] for _, crop in args]).astype(np.float32)


def test_crops_are_cut_in_loader_workers_and_batched_across_samples(photos):
    model = BatchRecorder()
    got = photos.compute_patch_embeddings(model, "gt", batch_size=4, num_workers=2)
    total = sum(len(b) for b in photos.values("gt.detections") if b)
    assert sum(model.batches) == total and max(model.batches) == 4  # patches of several samples per batch
    assert os.getpid() not in model.pids and len(model.pids) >= 1
    for sid, path, boxes in zip(*photos.values(["id", "filepath", "gt.detections.bounding_box"])):
        for row, box in zip(got[sid] if boxes else [], boxes or []):
            crop = _hand_crop(_rgb(path), box)
            np.testing.assert_allclose(row, np.r_[crop.reshape(-1, 3).mean(axis=0), crop.shape[:2]], rtol=1e-5)


def test_frame_patches_equal_hand_cut_crops_of_pyav_frames(tmp_path, db, embedder):
    path = write_video(str(tmp_path / "v.mp4"), pan_zoom("coffee", 8, (96, 64)), "libx264", 10)
    ds = mz.Dataset("patches-frames", overwrite=True)
    try:
        sample = mz.Sample(filepath=path)
        sample.frames[2] = mz.Frame(dets=mz.Detections(detections=[mz.Detection(bounding_box=b) for b in BOXES[:3]]))
        sample.frames[7] = mz.Frame(dets=mz.Detections(detections=[mz.Detection(bounding_box=BOXES[1])]))
        sample.frames[5] = mz.Frame(note="no patches")
        ds.add_samples([sample])
        got = ds.compute_patch_embeddings(embedder, "frames.dets", num_workers=1)
        frames = decode_with_pyav(path)
        sid = ds.values("id")[0]
        assert list(got[sid]) == [2, 5, 7] and got[sid][5] is None
        np.testing.assert_allclose(got[sid][2], embedder.embed_all([_hand_crop(frames[1], b) for b in BOXES[:3]]), atol=1e-5)
        np.testing.assert_allclose(got[sid][7], embedder.embed_all([_hand_crop(frames[6], BOXES[1])]), atol=1e-5)
        ds.compute_patch_embeddings(embedder, "dets", embeddings_field="emb", num_workers=0)
        assert ds.count("frames.dets.detections.emb") == 4
        np.testing.assert_allclose(np.stack(ds.first().frames[2]["dets"].detections[0].emb), got[sid][2][0], atol=1e-6)
    finally:
        ds.delete()


def test_skip_existing_embeds_only_the_patches_left(photos, embedder, db):
    first = photos.compute_patch_embeddings(embedder, "gt", embeddings_field="emb", num_workers=0)
    total = sum(len(b) for b in photos.values("gt.detections") if b)
    assert first.processed == total
    sid = next(s for s, b in zip(photos.values("id"), photos.values("gt.detections")) if b and len(b) >= 2)
    before = photos[sid].gt.detections[1].emb
    db[photos.collection_name].update_one({"_id": photos[sid].id}, {"$unset": {"gt.detections.1.emb": ""}})
    again = photos.compute_patch_embeddings(embedder, "gt", embeddings_field="emb", skip_existing=True, num_workers=0)
    assert again.processed == 1
    np.testing.assert_allclose(photos[sid].gt.detections[1].emb, before, atol=1e-6)
    with pytest.raises(mz.ConfigError, match="embeddings_field"):
        photos.compute_patch_embeddings(embedder, "gt", skip_existing=True)
