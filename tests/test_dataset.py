import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

import modelzoo as mz
from tests.images import write_bad_images, write_good_images, write_odd_images


@pytest.fixture
def dataset(request):
    ds = mz.Dataset(f"test-{request.node.name}"[:60], overwrite=True)
    yield ds
    if mz.dataset_exists(ds.name):
        ds.delete()


def test_from_images_dir_reads_metadata_skips_non_images_and_records_unreadable(tmp_path):
    root = tmp_path / "imgs"
    good = write_good_images(str(root / "sub"), n=4, size=(64, 48))
    odd = write_odd_images(str(root))
    bad = write_bad_images(str(root))
    (root / "notes.txt").write_text("not an image")
    (root / "labels.csv").write_text("a,b")
    ds = mz.Dataset.from_images_dir(root, name="ingest-test", overwrite=True)
    try:
        report = ds.ingest_report
        on_disk = len(good) + len(odd) + len(bad) - 1  # "missing" was never written
        assert len(ds) == on_disk == report.added
        assert sorted(os.path.basename(p) for p in report.skipped) == ["labels.csv", "notes.txt"]
        assert set(report.unreadable) == {bad["corrupt_jpeg"], bad["zero_bytes"]}
        # the truncated PNG has a readable header: its metadata is known, decoding fails later
        by_path = {s.filepath: s for s in ds}
        s = by_path[good[0]]
        assert (s.metadata.width, s.metadata.height, s.metadata.channels) == (64, 48, 3)
        assert s.metadata.mime_type == "image/jpeg"
        assert s.metadata.size_bytes == os.path.getsize(good[0])
        assert by_path[odd["grayscale"]].metadata.channels == 1
        assert by_path[odd["rgba"]].metadata.channels == 4
        assert by_path[odd["cmyk"]].metadata.channels == 4
        assert by_path[bad["zero_bytes"]].metadata is None
        assert "Error" in by_path[bad["corrupt_jpeg"]].ingest_error and by_path[bad["corrupt_jpeg"]].metadata is None
        # not recursive: only the top level
        flat = mz.Dataset.from_images_dir(root, name="ingest-flat", recursive=False, overwrite=True)
        assert len(flat) == on_disk - len(good)
        flat.delete()
    finally:
        ds.delete()


def test_missing_directory_is_named(tmp_path):
    with pytest.raises(mz.DatasetError, match="nope"):
        mz.Dataset.from_images_dir(tmp_path / "nope")
    assert not any("nope" in n for n in mz.list_datasets())


def test_duplicate_name_needs_overwrite(dataset):
    with pytest.raises(mz.DatasetExistsError, match="overwrite=True"):
        mz.Dataset(dataset.name)
    dataset.add_sample("/x/a.jpg")
    again = mz.Dataset(dataset.name, overwrite=True)
    assert len(again) == 0


def test_samples_fields_access_and_unknown_ids(dataset, tmp_path):
    ids = dataset.add_samples([mz.Sample(filepath="a.jpg", split="train", score=1.5), "b.jpg"])
    assert len(ids) == 2 and len(dataset) == 2
    s = dataset[ids[0]]
    assert s.filepath == os.path.abspath("a.jpg")
    assert s["split"] == "train" and s.split == "train" and s.score == 1.5
    assert str(s.id) == ids[0]
    with pytest.raises(KeyError, match="nofield"):
        s["nofield"]
    with pytest.raises(KeyError, match="0123456789abcdef01234567"):
        dataset["0123456789abcdef01234567"]
    with pytest.raises(KeyError, match="not-an-id"):
        dataset["not-an-id"]
    assert [x.filepath for x in dataset] == [os.path.abspath("a.jpg"), os.path.abspath("b.jpg")]


def test_values_count_exists_and_set_values(dataset):
    ids = dataset.add_samples([f"{i}.jpg" for i in range(5)])
    labels = {ids[i]: mz.Classification(label=str(i), confidence=i / 10) for i in (0, 2, 4)}
    assert dataset.set_values("pred", labels) == 3
    assert dataset.count("pred") == 3 and dataset.count() == 5
    assert [v.label if v else None for v in dataset.values("pred")] == ["0", None, "2", None, "4"]
    assert dataset.values("pred.label") == ["0", None, "2", None, "4"]
    assert len(dataset.exists("pred")) == 3
    assert dataset.exists("pred", False).ids() == [ids[1], ids[3]]
    # arrays come back as arrays, None unsets
    dataset.set_values("emb", [np.arange(3, dtype=np.float32) * i for i in range(5)])
    np.testing.assert_array_equal(dataset[ids[2]].emb, np.float32([0, 2, 4]))
    np.testing.assert_array_equal(dataset.values("emb")[4], np.float32([0, 4, 8]))
    dataset.set_values("pred", {ids[0]: None})
    assert dataset.count("pred") == 2
    with pytest.raises(KeyError, match="0123456789abcdef01234567"):
        dataset.set_values("pred", {"0123456789abcdef01234567": mz.Classification(label="x")})
    with pytest.raises(mz.LabelError):
        dataset.set_values("_id", {ids[0]: 1})


def test_views_select_match_limit_and_pickle(dataset):
    ids = dataset.add_samples([mz.Sample(filepath=f"{i}.jpg", i=i) for i in range(6)])
    view = dataset.match({"i": {"$gte": 2}}).limit(3)
    assert view.values("i") == [2, 3, 4]
    assert dataset.select([ids[5], ids[0]]).values("i") == [0, 5]
    back = pickle.loads(pickle.dumps(view))
    assert back.values("i") == [2, 3, 4]
    assert pickle.loads(pickle.dumps(dataset)) == dataset


def test_persistent_across_processes_list_load_delete(dataset):
    dataset.add_samples(["p.jpg", "q.jpg"])
    code = (
        "import modelzoo as mz; d = mz.load_dataset(%r); print(len(d), %r in mz.list_datasets())"
        % (dataset.name, dataset.name)
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ, timeout=60)
    assert out.stdout.split() == ["2", "True"], out.stderr
    with pytest.raises(mz.DatasetNotFoundError, match="Did you mean"):
        mz.load_dataset(dataset.name + "x")
    name = dataset.name
    dataset.delete()
    assert name not in mz.list_datasets()


def test_samples_live_in_their_own_indexed_collection(dataset, db):
    dataset.add_sample("a.jpg")
    coll = dataset._collection
    assert coll.name.startswith("samples.")
    assert any(dict(ix["key"]).get("filepath") == 1 for ix in coll.index_information().values())
    other = mz.Dataset("other-coll-test", overwrite=True)
    try:
        assert other._collection.name != coll.name and len(other) == 0
    finally:
        other.delete()


def test_add_labels_like_the_model_contract(dataset):
    sid = dataset.add_sample("v.jpg")
    s = dataset[sid]
    s.add_labels({"cls": mz.Classification(label="a"), "det": mz.Detections()}, label_field="m")
    s.add_labels({1: mz.Classification(label="f1"), 2: mz.Classification(label="f2")}, label_field="frame_cls")
    s = dataset[sid]
    assert s.m_cls.label == "a" and isinstance(s.m_det, mz.Detections)
    assert s.frames[2]["frame_cls"].label == "f2" and s.frames.keys() == [1, 2]  # in the frames collection
    assert "frames" not in dataset._collection.find_one({"_id": s.id})
