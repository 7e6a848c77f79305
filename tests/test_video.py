"""Videos end to end: real videos made with PyAV from scikit-image's
photographs (two codecs... three, in three containers), probed, decoded,
run through image models (every frame, selections, embeddings, resuming)
and video models, with broken files costing only themselves. References
come from PyAV in the test itself."""

from __future__ import annotations

import os
import threading
from typing import Any, Dict

import numpy as np
import pytest

import modelzoo as mz
from modelzoo.engine import LabelSink, RunOptions, Source, run_model
from modelzoo.loaders import BytesLoader
from modelzoo.testing import tiny_model
from tests.videos import VIDEOS, decode_with_pyav, write_bad_videos, write_videos


@pytest.fixture(scope="session")
def videos(tmp_path_factory) -> Dict[str, str]:
    return write_videos(str(tmp_path_factory.mktemp("videos")))


@pytest.fixture(scope="session")
def bad_videos(tmp_path_factory, videos) -> Dict[str, str]:
    return write_bad_videos(str(tmp_path_factory.mktemp("bad-videos")), videos["coffee_mpeg4"])


@pytest.fixture(scope="session")
def reference(videos) -> Dict[str, Any]:
    """Every frame of every good video, decoded by PyAV here."""
    return {name: decode_with_pyav(path) for name, path in videos.items()}


@pytest.fixture
def video_dataset(videos):
    ds = mz.Dataset.from_videos(list(videos.values()), name="videos-test", overwrite=True)
    yield ds
    ds.delete()


def _by_name(ds) -> Dict[str, Any]:
    return {os.path.splitext(os.path.basename(s.filepath))[0]: s for s in ds}


class Brightness(mz.Model):
    """An image model: the mean pixel of a frame, as a classification's confidence."""

    def predict(self, image):
        return mz.Classification(label="frame", confidence=float(np.asarray(image).mean()) / 255)


class MeanBrightness(mz.Model):
    """A video model: the mean pixel of every frame, keyed by frame number."""

    @property
    def media_type(self) -> str:
        return "video"

    def predict(self, reader):
        labels = {}
        for frame in reader:  # reader.frame_number: the frame just read
            labels[reader.frame_number] = mz.Classification(label="mean", confidence=float(frame.mean()) / 255)
        return labels


# -- probing and ingest --------------------------------------------------------------------------
def test_metadata_is_what_pyav_decodes(video_dataset, reference):
    for name, sample in _by_name(video_dataset).items():
        frames = reference[name]
        meta = sample.metadata
        assert sample.media_type == "video" and isinstance(meta, mz.VideoMetadata)
        assert meta.total_frame_count == len(frames), name
        assert (meta.height, meta.width) == frames[0].shape[:2]
        rate = {v[0]: v[5] for v in VIDEOS}[name]
        assert meta.frame_rate == pytest.approx(rate)
        assert meta.duration == pytest.approx(len(frames) / rate, abs=0.05)
    codecs = {s.metadata.codec for s in video_dataset}
    assert codecs == {"h264", "mpeg4", "mjpeg"}


def test_bad_files_are_reported_by_name_at_ingest(tmp_path, videos, bad_videos):
    ds = mz.Dataset.from_videos(list(bad_videos.values()) + [videos["coffee_mpeg4"]], name="bad-ingest", overwrite=True)
    try:
        unreadable = ds.ingest_report.unreadable
        assert set(unreadable) == {bad_videos[k] for k in ("not_a_video", "audio_only", "empty")}
        assert "no video stream" in unreadable[bad_videos["audio_only"]]
        assert "empty" in unreadable[bad_videos["empty"]]
        assert len(ds) == 5 and ds.count("ingest_error") == 3
    finally:
        ds.delete()


def test_reader_protocol_matches_pyav(videos, reference):
    path = videos["astronaut_h264"]
    with mz.VideoReader(path) as reader:
        assert reader.frame_number == 0 and reader.total_frame_count == len(reference["astronaut_h264"])
        assert reader.frame_size == (64, 48) and reader.frame_rate == pytest.approx(30)
        for i, frame in enumerate(reader, start=1):
            assert reader.frame_number == i
            assert frame.dtype == np.uint8 and np.array_equal(frame, reference["astronaut_h264"][i - 1])
    with pytest.raises(mz.VideoError, match="not found"):
        mz.VideoReader(path + ".missing")


# -- image models on frames ----------------------------------------------------------------------
def test_classifier_on_every_frame_matches_the_same_classifier_on_pyav_frames(video_dataset, reference):
    model = tiny_model("classification")
    report = video_dataset.apply_model(model, label_field="cls", num_workers=2, batch_size=16, progress=False)
    total = sum(len(f) for f in reference.values())
    assert report.ok and report.frames_processed == total and report.processed == 3
    assert video_dataset.count("frames.cls") == total
    for name, sample in _by_name(video_dataset).items():
        expected = model.predict_all(reference[name])  # the classifier on PyAV's frames
        stored = sample.frames.values("cls")
        assert sorted(stored) == list(range(1, len(expected) + 1)), name
        for n, label in stored.items():
            assert label.label == expected[n - 1].label, (name, n)
            assert label.confidence == pytest.approx(expected[n - 1].confidence, abs=1e-5), (name, n)


@pytest.mark.parametrize(
    "frames, expected",
    [
        ({"n": 7}, lambda total, rate: list(range(1, total + 1, 7))),
        # at most 5 per second: every 6th frame at 30 fps, every 5th at 25 fps
        ({"fps": 5}, lambda total, rate: list(range(1, total + 1, int(rate // 5)))),
        ({"fps": 60}, lambda total, rate: list(range(1, total + 1))),
        ([1, 5, 60, 75, 500], lambda total, rate: [f for f in (1, 5, 60, 75) if f <= total]),
        (None, lambda total, rate: list(range(1, total + 1))),
    ],
)
def test_frames_selections_select_exactly_those_frames(video_dataset, reference, frames, expected):
    report = video_dataset.apply_model(Brightness(), label_field="b", frames=frames, num_workers=0, progress=False)
    rates = {v[0]: v[5] for v in VIDEOS}
    want_total = 0
    for name, sample in _by_name(video_dataset).items():
        want = expected(len(reference[name]), rates[name])
        want_total += len(want)
        stored = sample.frames.values("b")
        assert sorted(stored) == want, name
        for n in want[:3]:  # on the right frames: the mean of PyAV's frame n
            assert stored[n].confidence == pytest.approx(reference[name][n - 1].mean() / 255)
    assert report.frames_processed == want_total


def test_fps_and_n_together_are_an_error(video_dataset):
    with pytest.raises(mz.ConfigError, match="n and fps"):
        video_dataset.apply_model(Brightness(), frames={"n": 2, "fps": 3})
    with pytest.raises(mz.ConfigError, match="unknown key 'every'"):
        video_dataset.apply_model(Brightness(), frames={"every": 2})


def test_embeddings_of_frames_in_sample_then_frame_order(video_dataset, reference):
    model = tiny_model("classification", embeddings_layer="<head")
    vectors = video_dataset.compute_embeddings(model, frames={"n": 10}, num_workers=1, progress=False)
    assert list(vectors) == video_dataset.values("id")  # {sample_id: (n_frames, D)}, as FiftyOne returns them
    for sid, path in zip(*video_dataset.values(["id", "filepath"])):
        expected = model.embed_all(reference[os.path.splitext(os.path.basename(path))[0]][::10])
        assert vectors[sid].shape == expected.shape
        np.testing.assert_allclose(vectors[sid], expected, atol=1e-5)
    report = video_dataset.compute_embeddings(model, "emb", frames=[2], num_workers=0, progress=False)
    assert report.frames_processed == 3
    sample = video_dataset.first()
    name = os.path.splitext(os.path.basename(sample.filepath))[0]
    np.testing.assert_allclose(sample.frames[2]["emb"], model.embed_all([reference[name][1]])[0], atol=1e-5)


def test_skip_existing_resumes_frame_by_frame(video_dataset, reference):
    class Tagged(mz.Model):
        def __init__(self, tag):
            super().__init__()
            self.tag = tag

        def predict(self, image):
            return mz.Classification(label=self.tag)

    video_dataset.apply_model(Tagged("first"), label_field="t", frames=range(1, 11), num_workers=0, progress=False)
    report = video_dataset.apply_model(Tagged("second"), label_field="t", skip_existing=True, num_workers=0, progress=False)
    total = sum(len(f) for f in reference.values())
    assert report.frames_skipped == 30 and report.frames_processed == total - 30
    for sample in video_dataset:
        labels = sample.frames.values("t")
        assert [labels[n].label for n in range(1, 11)] == ["first"] * 10
        assert {labels[n].label for n in labels if n > 10} == {"second"}


def test_bad_videos_cost_only_themselves(videos, bad_videos):
    ds = mz.Dataset.from_videos([videos["coffee_mpeg4"]] + list(bad_videos.values()), name="bad-run", overwrite=True)
    try:
        report = ds.apply_model(Brightness(), label_field="b", num_workers=2, progress=False)
        whole = {f.filepath for f in report.failures if f.frame_number is None}
        assert whole == {bad_videos[k] for k in ("not_a_video", "audio_only", "empty")}
        assert report.failed == 3 and report.processed == 2
        decoded = len(decode_with_pyav(bad_videos["truncated"]))
        promised = ds.match({"filepath": bad_videos["truncated"]}).first().metadata.total_frame_count
        assert 0 < decoded < promised
        frames_failed = [f for f in report.failures if f.frame_number is not None]
        assert {f.filepath for f in frames_failed} == {bad_videos["truncated"]}
        assert sorted(f.frame_number for f in frames_failed) == list(range(decoded + 1, promised + 1))
        assert report.frames_failed == promised - decoded
        assert report.frames_processed == 60 + decoded and ds.count("frames.b") == 60 + decoded
        with pytest.raises(mz.PredictionError, match="not_a_video"):
            ds.apply_model(Brightness(), label_field="c", num_workers=0, skip_failures=False, progress=False)
    finally:
        ds.delete()


def test_a_model_that_takes_file_bytes_is_refused_on_videos(video_dataset):
    class Checksum(mz.Model):
        def build_loader(self):
            return BytesLoader()

        def predict(self, data):
            return mz.Classification(label=str(len(data)))

    with pytest.raises(mz.ConfigError, match="takes image files, not decoded video frames"):
        video_dataset.apply_model(Checksum(), label_field="x", progress=False)


def test_a_dataset_may_mix_images_and_videos(tmp_path, videos, reference):
    from PIL import Image

    from tests.images import photo

    path = str(tmp_path / "chelsea.png")
    Image.fromarray(photo("chelsea")).resize((40, 30)).save(path)
    ds = mz.Dataset.from_images([path], name="mixed", overwrite=True)
    try:
        ds.add_videos([videos["coffee_mpeg4"]])
        report = ds.apply_model(Brightness(), label_field="b", num_workers=0, progress=False)
        assert report.processed == 2 and report.frames_processed == 60
        image = ds.match({"media_type": "image"}).first()
        assert image.b.confidence == pytest.approx(np.asarray(Image.open(path).convert("RGB")).mean() / 255)
        video = ds.match({"media_type": "video"}).first()
        assert len(video.frames) == 60 and video.frames[60]["b"].confidence == pytest.approx(
            reference["coffee_mpeg4"][59].mean() / 255
        )
        with pytest.raises(mz.ConfigError, match="mix images and videos"):
            ds.compute_embeddings(tiny_model("classification", embeddings_layer="<head"))
        with pytest.raises(mz.ConfigError, match="video model"):
            ds.apply_model(MeanBrightness(), label_field="m")
    finally:
        ds.delete()


# -- video models ----------------------------------------------------------------------------------
def test_video_model_labels_land_on_their_frames(video_dataset, reference):
    report = video_dataset.apply_model(MeanBrightness(), label_field="mean", progress=False)
    total = sum(len(f) for f in reference.values())
    assert report.ok and report.processed == 3 and report.frames_processed == total
    for name, sample in _by_name(video_dataset).items():
        stored = sample.frames.values("mean")
        assert sorted(stored) == list(range(1, len(reference[name]) + 1))
        for n, label in stored.items():
            assert label.confidence == pytest.approx(reference[name][n - 1].mean() / 255), (name, n)
    again = video_dataset.apply_model(MeanBrightness(), label_field="mean", skip_existing=True, progress=False)
    assert again.skipped == 3 and again.processed == 0
    with pytest.raises(mz.ConfigError, match="video model, which reads each whole video"):
        video_dataset.apply_model(MeanBrightness(), label_field="mean", frames={"n": 2})


def test_video_model_labels_are_written_while_the_video_is_read(video_dataset, monkeypatch):
    """A model yielding (frame, label) pairs: its first chunk of labels is
    stored before it reads past frame 70 (it waits for that write)."""
    from modelzoo.engine import video_outputs

    monkeypatch.setattr(video_outputs, "FRAME_CHUNK", 10)
    written = threading.Event()

    class Recording(LabelSink):
        def write(self, batch):
            super().write(batch)
            written.set()

    class Streaming(MeanBrightness):
        def predict(self, reader):
            for frame in reader:
                if reader.frame_number == 70:
                    assert written.wait(60), "no frame label was written before the video was read to frame 70"
                yield reader.frame_number, mz.Classification(label="m", confidence=float(frame.mean()) / 255)

    source = Source.from_samples(video_dataset.match({"metadata.total_frame_count": 90}))
    report = run_model(source, Streaming(), Recording(source.collection, video_dataset.name, "s"), RunOptions(progress=False))
    assert report.frames_processed == 90 and video_dataset.count("frames.s") == 90


def test_video_model_frame_outside_the_video_names_model_sample_and_frame(video_dataset):
    class OffByOne(MeanBrightness):
        def predict(self, reader):
            labels = {}
            for _ in reader:
                labels[reader.frame_number + 1] = mz.Classification(label="x")
            return labels

    sample = video_dataset.first()
    with pytest.raises(mz.ModelError, match=rf"OffByOne returned labels for frame \d+ of sample {sample.id}"):
        video_dataset.apply_model(OffByOne(), label_field="o", progress=False)
    assert video_dataset.count("frames.o") == 0  # a dict is checked before any of it is written


def test_video_model_refused_on_images(tmp_path):
    from PIL import Image

    path = str(tmp_path / "a.png")
    Image.new("RGB", (8, 8)).save(path)
    ds = mz.Dataset.from_images([path], name="images-for-video-model", overwrite=True)
    try:
        with pytest.raises(mz.ConfigError, match="is a video model"):
            ds.apply_model(MeanBrightness(), label_field="m")
    finally:
        ds.delete()


def test_cli_apply_accepts_a_directory_of_videos(videos, reference, capsys, zoo_env):
    import uuid

    from modelzoo.cli import main

    name = f"cli-videos-{uuid.uuid4().hex[:8]}"
    root = os.path.dirname(videos["coffee_mpeg4"])
    try:
        code = main(["apply", "digits-cnn-torch", root, "--dataset-name", name, "--label-field", "d", "--every", "10"])
        out = capsys.readouterr().out
        assert code == 0, out
        expected = sum(len(range(1, len(f) + 1, 10)) for f in reference.values())
        assert f"Created dataset {name!r}" in out and f"frames: {expected} processed, 0 failed" in out
        assert "coffee_mpeg4.mkv" in out and "6 frames; frame 1:" in out  # the table: 60 frames, every 10th
        dataset = mz.load_dataset(name)
        assert len(dataset) == 3 and dataset.count("frames.d") == expected
        assert main(["apply", "digits-cnn-torch", name, "--label-field", "e", "--every", "2", "--fps", "3"]) == 1
        assert "--every and --fps" in capsys.readouterr().err
    finally:
        if mz.dataset_exists(name):
            mz.delete_dataset(name)


def test_draw_labels_draws_a_video_sample_as_a_strip_of_its_frames(video_dataset, reference, tmp_path):
    from PIL import Image

    from modelzoo.drawing import STRIP_FRAMES, draw_labels
    from modelzoo.video import strip_frame_numbers

    video_dataset.apply_model(Brightness(), label_field="b", num_workers=0, progress=False)
    sample = _by_name(video_dataset)["astronaut_h264"]
    (path,) = draw_labels([sample], str(tmp_path), "b")
    strip = np.asarray(Image.open(path).convert("RGB"))
    frames = reference["astronaut_h264"]
    h, w = frames[0].shape[:2]
    numbers = strip_frame_numbers(len(frames), STRIP_FRAMES)
    assert strip.shape == (h, w * len(numbers), 3)
    for i, number in enumerate(numbers):
        tile, frame = strip[:, i * w:(i + 1) * w], frames[number - 1]
        same = (tile == frame).all(axis=2)
        assert not same.all(), f"nothing drawn on frame {number}"  # its caption and frame number
        assert same.mean() > 0.3, f"tile {i} is not frame {number}"


def test_strip_frames_are_evenly_spaced_with_their_labels(video_dataset, reference):
    from modelzoo.video import strip_frame_numbers, strip_frames

    assert strip_frame_numbers(90, 4) == [1, 31, 60, 90] and strip_frame_numbers(3, 8) == [1, 2, 3]
    video_dataset.apply_model(Brightness(), label_field="b", frames={"n": 2}, num_workers=0, progress=False)
    sample = _by_name(video_dataset)["astronaut_h264"]
    strip = strip_frames(sample, count=4)
    assert [f.frame_number for f in strip] == [1, 31, 60, 90]
    for f in strip:
        assert np.array_equal(f.image, reference["astronaut_h264"][f.frame_number - 1])
        assert ("b" in f.labels) == (f.frame_number % 2 == 1)
