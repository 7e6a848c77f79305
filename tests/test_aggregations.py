"""take, count_values, distinct, sort_by, values, bounds, count and
filter_labels on datasets, views and frame paths; each checked against a
plain Python computation over the same raw documents (read with pymongo)."""

from __future__ import annotations

import collections
import random

import numpy as np
import pytest

import modelzoo as mz
from modelzoo import ViewField as F
from modelzoo.storage import frames_collection_name

LABELS = ["cat", "dog", "bird", "fish"]


def _detections(rng: random.Random, n: int) -> mz.Detections:
    return mz.Detections(
        detections=[
            mz.Detection(
                label=rng.choice(LABELS),
                bounding_box=[rng.random() * 0.5, rng.random() * 0.5, 0.25, 0.25],
                confidence=round(rng.random(), 3),
            )
            for _ in range(n)
        ]
    )


@pytest.fixture
def images(db):
    rng = random.Random(7)
    samples = []
    for i in range(40):
        fields = {"n": i, "score": rng.random()}
        if i % 5:  # every fifth sample has no ground truth at all
            fields["gt"] = _detections(rng, rng.randrange(0, 5))
        if i % 3:
            fields["cls"] = mz.Classification(label=rng.choice(LABELS), confidence=rng.random())
        samples.append(mz.Sample(filepath=f"/data/img{i:03d}.jpg", **fields))
    ds = mz.Dataset("agg-images", overwrite=True)
    ds.add_samples(samples)
    yield ds
    ds.delete()


@pytest.fixture
def videos(db):
    rng = random.Random(11)
    samples = []
    for i in range(6):
        sample = mz.Sample(filepath=f"/data/vid{i}.mp4")
        for n in range(1, 9):
            if rng.random() < 0.7:
                sample.frames[n] = mz.Frame(dets=_detections(rng, rng.randrange(0, 4)), quality=rng.choice(["ok", "blur"]))
        samples.append(sample)
    ds = mz.Dataset("agg-videos", overwrite=True)
    ds.add_samples(samples)
    yield ds
    ds.delete()


def _raw(db, ds, query=None):
    return list(db[ds.collection_name].find(query or {}).sort("_id", 1))


def _labels_of(doc, field="gt"):
    return [d.get("label") for d in (doc.get(field) or {}).get("detections", [])]


def test_values_of_scalar_list_and_several_paths(images, db):
    raw = _raw(db, images)
    assert images.values("n") == [d["n"] for d in raw]
    ids, labels, cls = images.values(["id", "gt.detections.label", "cls.label"])
    assert ids == [str(d["_id"]) for d in raw]
    assert labels == [_labels_of(d) if "gt" in d else None for d in raw]
    assert cls == [d["cls"]["label"] if "cls" in d else None for d in raw]
    # label ids come back as strings, labels as Labels
    det_ids = images.values("gt.detections.id")
    assert det_ids == [[str(x["_id"]) for x in d["gt"]["detections"]] if "gt" in d else None for d in raw]
    first = next(v for v in images.values("gt") if v is not None)
    assert isinstance(first, mz.Detections)


def test_count_values_distinct_bounds_count_through_lists(images, db):
    raw = _raw(db, images)
    every = [label for d in raw for label in _labels_of(d)]
    assert images.count_values("gt.detections.label") == dict(collections.Counter(every))
    assert images.distinct("gt.detections.label") == sorted(set(every))
    assert images.count("gt.detections") == len(every)
    confidences = [x["confidence"] for d in raw for x in (d.get("gt") or {}).get("detections", [])]
    assert images.bounds("gt.detections.confidence") == (min(confidences), max(confidences))
    # a scalar path counts missing values as None
    expected = collections.Counter(d["cls"]["label"] if "cls" in d else None for d in raw)
    assert images.count_values("cls.label") == dict(expected)
    assert images.count("cls") == sum("cls" in d for d in raw)


def test_helpers_on_a_view(images, db):
    view = images.match({"n": {"$gte": 10, "$lt": 30}})
    raw = _raw(db, images, {"n": {"$gte": 10, "$lt": 30}})
    every = [label for d in raw for label in _labels_of(d)]
    assert view.count_values("gt.detections.label") == dict(collections.Counter(every))
    assert view.distinct("gt.detections.label") == sorted(set(every))
    assert view.values("n") == list(range(10, 30))
    scores = [d["score"] for d in raw]
    assert view.bounds("score") == (min(scores), max(scores))


def test_sort_by_field_and_expression(images, db):
    raw = _raw(db, images)
    by_score = sorted(raw, key=lambda d: d["score"])
    assert images.sort_by("score").values("n") == [d["n"] for d in by_score]
    assert images.sort_by("score", reverse=True).values("n") == [d["n"] for d in reversed(by_score)]
    assert [s.n for s in images.sort_by("score", reverse=True)][:5] == [d["n"] for d in reversed(by_score)][:5]
    # the first samples of a sorted view are the first in its order
    assert images.sort_by("score").limit(3).values("n") == [d["n"] for d in by_score[:3]]
    by_count = sorted(raw, key=lambda d: (-len(_labels_of(d)), d["_id"]))
    view = images.sort_by(F("gt.detections").length(), reverse=True)
    assert view.values("id") == [str(d["_id"]) for d in by_count]


def test_take(images, db):
    all_ids = {str(d["_id"]) for d in _raw(db, images)}
    view = images.take(7)
    ids = view.values("id")
    assert len(view) == 7 and len(set(ids)) == 7 and set(ids) <= all_ids
    assert images.take(7, seed=3).values("id") == images.take(7, seed=3).values("id")
    assert images.take(7, seed=3).values("id") != images.take(7, seed=4).values("id")
    assert len(images.take(100, seed=1)) == 40
    # take on a view draws from the view only
    sub = images.match({"n": {"$lt": 10}}).take(5, seed=0)
    assert all(n < 10 for n in sub.values("n")) and len(sub) == 5
    with pytest.raises(mz.DatasetError, match="take"):
        images.take(-1)


def test_filter_labels_lists_and_single_labels(images, db):
    raw = _raw(db, images)
    view = images.filter_labels("gt", F("confidence") > 0.5)
    kept = [[x["label"] for x in (d.get("gt") or {}).get("detections", []) if x["confidence"] > 0.5] for d in raw]
    assert view.values("gt.detections.label") == [k for k in kept if k]
    assert len(view) == sum(1 for k in kept if k)
    assert view.count("gt.detections") == sum(len(k) for k in kept)
    # the stored labels are untouched
    assert images.count("gt.detections") == sum(len(_labels_of(d)) for d in raw)
    loose = images.filter_labels("gt", F("label").is_in(["cat", "dog"]), only_matches=False)
    assert len(loose) == 40
    assert loose.values("gt.detections.label") == [
        [x for x in _labels_of(d) if x in ("cat", "dog")] if "gt" in d else None for d in raw
    ]
    single = images.filter_labels("cls", (F("label") == "cat") & (F("confidence") > 0.2))
    expected = [d["n"] for d in raw if "cls" in d and d["cls"]["label"] == "cat" and d["cls"]["confidence"] > 0.2]
    assert single.values("n") == expected
    assert single.count_values("cls.label") == {"cat": len(expected)}
    assert {s.cls.label for s in single} == {"cat"}
    with pytest.raises(mz.DatasetError, match="ViewField"):
        images.filter_labels("gt", "confidence > 0.5")


def _frame_docs(db, ds, sample_ids=None):
    query = {} if sample_ids is None else {"_sample_id": {"$in": sample_ids}}
    return list(db[frames_collection_name(ds.collection_name)].find(query).sort([("_sample_id", 1), ("frame_number", 1)]))


def test_frame_paths_count_values_distinct_values(videos, db):
    frames = _frame_docs(db, videos)
    every = [x["label"] for f in frames for x in f["dets"]["detections"]]
    assert videos.count_values("frames.dets.detections.label") == dict(collections.Counter(every))
    assert videos.distinct("frames.dets.detections.label") == sorted(set(every))
    assert videos.count("frames.dets.detections") == len(every)
    assert videos.count("frames.dets") == len(frames)
    assert videos.count_values("frames.quality") == dict(collections.Counter(f["quality"] for f in frames))
    ids, numbers, labels = videos.values(["id", "frames.frame_number", "frames.dets.detections.label"])
    for sid, nums, labs in zip(ids, numbers, labels):
        mine = [f for f in frames if str(f["_sample_id"]) == sid]
        assert nums == [f["frame_number"] for f in mine]
        assert labs == [[x["label"] for x in f["dets"]["detections"]] for f in mine]
    # on a view: the frames of its samples only
    view = videos.take(3, seed=2)
    chosen = [s.id for s in view]
    mine = _frame_docs(db, videos, chosen)
    assert view.count_values("frames.dets.detections.label") == dict(
        collections.Counter(x["label"] for f in mine for x in f["dets"]["detections"])
    )
    assert view.count("frames") == len(mine)


def _commands(db):
    """The server's counts of aggregate and find commands so far (its own metrics)."""
    metrics = db.command("serverStatus")["metrics"]["commands"]
    return {name: int(metrics.get(name, {}).get("total", 0)) for name in ("aggregate", "find", "distinct")}


def test_frame_paths_are_one_aggregation(videos, db):
    """count_values / distinct / count on a frame path is one aggregate command,
    whatever the number of samples and frames (the server's own counters)."""
    for call in (
        lambda: videos.count_values("frames.dets.detections.label"),
        lambda: videos.distinct("frames.dets.detections.label"),
        lambda: videos.count("frames.dets.detections"),
    ):
        before = _commands(db)
        call()
        after = _commands(db)
        assert {k: after[k] - before[k] for k in after} == {"aggregate": 1, "find": 0, "distinct": 0}
    view = videos.match({"filepath": {"$ne": "/nowhere"}})  # on a view too: one aggregation with a $lookup
    before = _commands(db)
    view.count_values("frames.dets.detections.label")
    after = _commands(db)
    assert {k: after[k] - before[k] for k in after} == {"aggregate": 1, "find": 0, "distinct": 0}


def test_filter_labels_on_frames_and_exists(videos, db):
    frames = _frame_docs(db, videos)
    view = videos.filter_labels("frames.dets", F("label") == "cat")
    having = {f["_sample_id"] for f in frames if any(x["label"] == "cat" for x in f["dets"]["detections"])}
    assert len(view) == len(having)
    assert view.count_values("frames.dets.detections.label") == {
        "cat": sum(x["label"] == "cat" for f in frames if f["_sample_id"] in having for x in f["dets"]["detections"])
    }
    assert len(videos.exists("frames.dets")) == len({f["_sample_id"] for f in frames})


def test_frames_assigned_before_and_after_adding(db, tmp_path):
    ds = mz.Dataset("agg-frames-assign", overwrite=True)
    try:
        sample = mz.Sample(filepath=str(tmp_path / "a.mp4"))
        assert sample.media_type == "video"
        sample.frames[2] = mz.Frame(note="two", dets=mz.Detections(detections=[mz.Detection(label="x")]))
        sample.frames[4]["note"] = "four"
        ds.add_samples([sample])
        stored = ds.first()
        assert stored.frames.keys() == [2, 4]
        assert stored.frames[2]["dets"].detections[0].label == "x"
        stored.frames[3] = mz.Frame(note="three")
        stored.frames[2] = {"note": "2"}  # replaces the frame's fields
        frame = stored.frames[9]
        frame["note"] = "nine"
        stored.save()
        raw = {f["frame_number"]: f for f in _frame_docs(db, ds)}
        assert {n: f["note"] for n, f in raw.items()} == {2: "2", 3: "three", 4: "four", 9: "nine"}
        assert "dets" not in raw[2]
        assert ds.first().frames[9].note == "nine"
        with pytest.raises(mz.LabelError):
            stored.frames[0] = mz.Frame(note="zero")
    finally:
        ds.delete()


def test_compute_metadata_images_videos_and_failures(db, tmp_path):
    from PIL import Image

    from tests.images import write_photos
    from tests.videos import pan_zoom, write_video

    photos = write_photos(str(tmp_path / "img"), ["astronaut", "coffee", "chelsea"])
    video = write_video(str(tmp_path / "v.mkv"), pan_zoom("rocket", 9, (64, 48)), "mpeg4", 25)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    ds = mz.Dataset("agg-metadata", overwrite=True)
    try:
        ds.add_samples([mz.Sample(filepath=p) for p in photos + [video, str(broken)]])
        seen = []
        report = ds.compute_metadata(progress=lambda pb: seen.append((pb.iteration, pb.total, pb.complete)))
        assert report.computed == 4 and list(report.failed) == [ds.values("id")[-1]]
        assert seen[-1] == (5, 5, True) and len(seen) == 6
        for path, meta in zip(photos, ds.values("metadata")):
            with Image.open(path) as img:
                assert (meta["width"], meta["height"]) == img.size
        import av

        vmeta = ds.values("metadata")[3]
        with av.open(video) as container:
            stream = container.streams.video[0]
            assert (vmeta["width"], vmeta["height"]) == (stream.codec_context.width, stream.codec_context.height)
            assert vmeta["total_frame_count"] == sum(1 for _ in container.decode(stream))
        assert "broken.jpg" in ds.values("ingest_error")[-1]
        assert ds.values("metadata")[-1] is None
        assert ds.compute_metadata().computed == 0  # nothing left without metadata but the broken file
    finally:
        ds.delete()


def test_values_of_arrays_round_trip(db):
    ds = mz.Dataset("agg-arrays", overwrite=True)
    try:
        rng = np.random.default_rng(0)
        arrays = [rng.standard_normal((3, 4)).astype(np.float32) for _ in range(3)]
        ids = ds.add_samples([mz.Sample(filepath=f"/a/{i}.jpg") for i in range(3)])
        ds.set_values("gt", {i: mz.Detections(detections=[mz.Detection(label="a") for _ in range(3)]) for i in ids})
        for sid, arr in zip(ids, arrays):
            sample = ds[sid]
            for det, row in zip(sample.gt.detections, arr):
                det["emb"] = row
            sample.save()
        got = ds.values("gt.detections.emb")
        for arr, rows in zip(arrays, got):
            np.testing.assert_array_equal(np.stack(rows), arr)
    finally:
        ds.delete()
