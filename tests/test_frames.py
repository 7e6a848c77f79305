"""The frames collection: frame-level fields apart from their sample, keyed
by (sample id, frame number), counted and matched by views, deleted with
their samples and their dataset."""

from __future__ import annotations

import bson
import numpy as np
import pytest

import modelzoo as mz
from modelzoo.storage import frames_collection_name


@pytest.fixture
def video_sample_dataset(tmp_path):
    from tests.videos import pan_zoom, write_video

    path = write_video(str(tmp_path / "v.mkv"), pan_zoom("astronaut", 12, (32, 24)), "mpeg4", 25)
    ds = mz.Dataset.from_videos([path, path], name="frames-test", overwrite=True)
    yield ds
    if mz.dataset_exists("frames-test"):
        ds.delete()


def _boxes(n: int, rng) -> mz.Detections:
    xy = rng.random((n, 2)) * 0.5
    return mz.Detections(
        detections=[
            mz.Detection(label=f"c{j % 7}", bounding_box=[float(x), float(y), 0.25, 0.25], confidence=float(c))
            for j, ((x, y), c) in enumerate(zip(xy, rng.random(n)))
        ]
    )


def test_2000_frames_of_20_boxes_round_trip_and_the_sample_stays_small(video_sample_dataset, db):
    rng = np.random.default_rng(0)
    pool = [_boxes(20, rng) for _ in range(37)]  # building 40,000 Detection objects would take most of the test
    labels = {n: pool[n % 37] for n in range(1, 2001)}
    sample = video_sample_dataset.first()
    sample.add_labels(labels, label_field="dets")
    # the sample document holds no frame: it stays as small as it was
    raw = db[video_sample_dataset.collection_name].find_one({"_id": sample.id})
    assert "frames" not in raw and len(bson.encode(raw)) < 1024
    frames = db[frames_collection_name(video_sample_dataset.collection_name)]
    assert frames.count_documents({"_sample_id": sample.id}) == 2000
    # well past the 16 MB a single document may hold, had they been inside the sample
    assert sum(len(bson.encode(d)) for d in frames.find({"_sample_id": sample.id})) > 1_500_000
    again = video_sample_dataset[str(sample.id)]
    assert again.frames.keys() == list(range(1, 2001))
    for n in (1, 777, 2000):
        got = again.frames[n]["dets"]
        assert [d.label for d in got.detections] == [d.label for d in labels[n].detections]
        np.testing.assert_allclose(
            [d.bounding_box for d in got.detections], [d.bounding_box for d in labels[n].detections]
        )
        assert [d.confidence for d in got.detections] == pytest.approx([d.confidence for d in labels[n].detections])
    assert video_sample_dataset.count("frames.dets") == 2000
    assert video_sample_dataset.count("frames") == 2000


def test_frames_are_unique_by_sample_and_frame_number(video_sample_dataset, db):
    sample = video_sample_dataset.first()
    sample.add_labels({3: mz.Classification(label="a")}, label_field="x")
    sample.add_labels({3: mz.Classification(label="b")}, label_field="y")
    frame = sample.frames[3]
    assert frame["x"].label == "a" and frame["y"].label == "b" and len(sample.frames) == 1
    index = db[video_sample_dataset.frames_collection_name].index_information()["sample_frame"]
    assert index["unique"] and index["key"] == [("_sample_id", 1), ("frame_number", 1)]


def test_frame_reads_writes_and_errors(video_sample_dataset):
    sample = video_sample_dataset.first()
    frame = sample.frames[5]
    assert frame.keys() == [] and 5 not in sample.frames
    frame["note"] = "blurry"
    assert sample.frames[5]["note"] == "blurry" and 5 in sample.frames
    sample.frames[5]["note"] = None
    assert "note" not in sample.frames[5]
    with pytest.raises(KeyError, match="no field 'nope'"):
        sample.frames[5]["nope"]
    with pytest.raises(mz.LabelError, match="starting at 1"):
        sample.frames[0]
    with pytest.raises(mz.DatasetError, match="add the sample to a dataset"):
        mz.Sample(filepath="x.mp4").add_labels({1: mz.Classification(label="a")})
    with pytest.raises(mz.LabelError, match="frame-level fields"):
        video_sample_dataset.set_values("frames", [1, 2])


def test_views_count_and_match_frame_labels(video_sample_dataset):
    first, second = list(video_sample_dataset)
    first.add_labels({1: mz.Classification(label="cat"), 2: mz.Classification(label="dog")}, "cls")
    second.add_labels({7: mz.Classification(label="dog")}, "cls")
    ds = video_sample_dataset
    assert ds.count("frames.cls") == 3
    assert ds.select([first.id]).count("frames.cls") == 2
    cats = ds.match_frames({"cls.label": "cat"})
    assert cats.ids() == [str(first.id)]
    assert len(ds.exists("frames.cls")) == 2 and len(ds.exists("frames.other")) == 0
    assert ds.match_frames({"cls.label": "cat"}, False).ids() == [str(second.id)]
    second.add_labels({9: mz.Classification(label="cat")}, "cls")
    assert len(cats) == 2  # views are re-evaluated on each read
    assert first.frames.values("cls")[2].label == "dog"


def test_deleting_samples_and_datasets_deletes_their_frames(video_sample_dataset, db):
    first, second = list(video_sample_dataset)
    first.add_labels({n: mz.Classification(label="a") for n in range(1, 6)}, "c")
    second.add_labels({n: mz.Classification(label="b") for n in range(1, 4)}, "c")
    name = video_sample_dataset.frames_collection_name
    assert video_sample_dataset.delete_samples([first.id]) == 1
    assert db[name].count_documents({}) == 3 and len(video_sample_dataset) == 1
    video_sample_dataset.delete()
    assert name not in db.list_collection_names()
