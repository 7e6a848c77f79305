"""Tungsten-style models: the Tungstenkit docs' examples with the import changed
(`from tungstenkit import ...` -> `from modelzoo.tungsten import ...`), option-pure
batches, enforced options, output counts, setup once, apply_model on real
photographs against the detector run directly, the zoo and `modelzoo download`."""

import base64
import dataclasses
import io
import random
import threading
import uuid
from typing import List, Tuple

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image as PILImage

import modelzoo as mz
from modelzoo import zoo
from modelzoo.cli import main as cli_main
from modelzoo.testing import TASKS, tiny_classes, tiny_detector
from modelzoo.tungsten import (
    BaseIO,
    FileInputError,
    Image,
    Option,
    TungstenDefinitionError,
    TungstenInputError,
    TungstenOutputError,
    define_model,
    output_converter,
)
from tests.images import write_good_images

# -- a tiny text-to-image generator (the "model" of the docs' text-to-image example) -----------


class TinyGenerator(torch.nn.Module):
    """Seeded: prompt -> a (height, width) RGB image; the prompt's bytes set the input planes."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(4, 3, 3, padding=1)

    @torch.no_grad()
    def forward(self, prompts: List[str], width: int, height: int) -> List[PILImage.Image]:
        ys = torch.linspace(0, 1, height).view(height, 1).expand(height, width)
        planes = []
        for p in prompts:
            code = [b / 255 for b in (p.encode() + b"\0\0\0")[:3]]
            planes.append(torch.stack([torch.full((height, width), c) for c in code] + [ys]))
        out = torch.sigmoid(self.conv(torch.stack(planes))) * 255
        arrays = out.round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        return [PILImage.fromarray(a) for a in arrays]


# -- the docs' text-to-image example, import changed ------------------------------------------


class Input(BaseIO):
    prompt: str
    width: int = Option(128, choices=[128, 256])
    height: int = Option(128, choices=[128, 256])


class Output(BaseIO):
    image: Image


BATCHES: List[List[Tuple[str, int, int]]] = []
SETUPS: List[int] = []


@define_model(input=Input, output=Output, batch_size=4, python_packages=["torch", "torchvision"], gpu=False)
class TextToImageModel:
    def setup(self):
        SETUPS.append(1)
        self.model = TinyGenerator()

    def predict(self, inputs: List[Input]) -> List[Output]:
        BATCHES.append([(inp.prompt, inp.width, inp.height) for inp in inputs])
        options = inputs[0]
        prompts = [inp.prompt for inp in inputs]
        pil_images = self.model(prompts, width=options.width, height=options.height)
        images = [Image.from_pil_image(pil_image) for pil_image in pil_images]
        outputs = [Output(image=image) for image in images]
        return outputs


@pytest.fixture(autouse=True)
def _fresh_records():
    BATCHES.clear()
    SETUPS.clear()
    yield


def _mixed_inputs(n: int, seed: int = 0) -> List[Input]:
    rng = random.Random(seed)
    inputs = [Input(prompt=f"p{i}", width=rng.choice([128, 256]), height=rng.choice([128, 256])) for i in range(n)]
    rng.shuffle(inputs)
    return inputs


def test_mixed_options_get_option_pure_batches_and_outputs_in_input_order():
    inputs = _mixed_inputs(20)
    model = TextToImageModel()
    outputs = model.predict_all(inputs)

    assert len(outputs) == 20
    seen = []
    for batch in BATCHES:
        assert 1 <= len(batch) <= 4
        assert len({(w, h) for _, w, h in batch}) == 1, f"a batch mixes options: {batch}"
        seen += [p for p, _, _ in batch]
    assert sorted(seen) == sorted(inp.prompt for inp in inputs)  # every input exactly once
    groups = {}
    for inp in inputs:
        groups[(inp.width, inp.height)] = groups.get((inp.width, inp.height), 0) + 1
    assert len(BATCHES) == sum(-(-n // 4) for n in groups.values())  # groups packed, not split needlessly

    reference = TinyGenerator()  # each input alone, straight through the generator
    for inp, out in zip(inputs, outputs):
        assert isinstance(out, Output)
        expected = np.asarray(reference([inp.prompt], inp.width, inp.height)[0])
        got = out.image.to_numpy()
        assert got.shape == (inp.height, inp.width, 3)
        assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1


def test_choices_reject_64_before_predict_is_called():
    with pytest.raises(ValueError, match="64 is not one of the choices"):
        Input(prompt="x", width=64)  # pydantic, as in Tungstenkit's own classes
    model = TextToImageModel()
    good = Input(prompt="ok")
    with pytest.raises(TungstenInputError) as err:
        model.predict_all([good, {"prompt": "bad", "width": 64}])
    message = str(err.value)
    assert "width" in message and "64" in message and "[128, 256]" in message and "input 1" in message
    assert err.value.index == 1
    assert BATCHES == [] and SETUPS == []  # nothing ran, not even the good input
    bad = Input(prompt="y")
    with pytest.raises(ValueError, match="choices"):
        bad.height = 64  # checked on assignment too
    forged = Input.model_construct(prompt="z", width=64, height=128)  # skips pydantic: still caught
    with pytest.raises(TungstenInputError, match="width: 64 is not one of the choices"):
        model.predict(forged)


def test_bounds_and_definition_errors():
    class Steps(BaseIO):
        prompt: str
        steps: int = Option(20, ge=1, le=50)

    @define_model(input=Steps, output=Output)
    class M:
        def predict(self, inputs):
            return [Output(image=np.zeros((2, 2, 3), np.uint8)) for _ in inputs]

    with pytest.raises(TungstenInputError, match="steps: Input should be less than or equal to 50"):
        M().predict({"prompt": "a", "steps": 51})
    assert M().predict({"prompt": "a", "steps": 50}).image.to_numpy().shape == (2, 2, 3)

    with pytest.raises(TungstenDefinitionError, match="default 64 is not one of its choices"):
        Option(64, choices=[128, 256])
    with pytest.raises(TungstenDefinitionError, match="Did you mean 'batch_size'"):
        define_model(input=Input, output=Output, batchsize=2)
    with pytest.raises(TungstenDefinitionError, match="has no predict method"):
        define_model(input=Input, output=Output)(type("NoPredict", (), {}))
    with pytest.raises(TungstenDefinitionError, match="pass demo_output"):
        define_model(input=Input, output=Output)(type("Demo", (), {"predict": lambda s, i: i, "predict_demo": lambda s, i: i}))
    with pytest.raises(TungstenDefinitionError, match=r"has 3 positional parameter\(s\) counting self, expected 2"):
        define_model(input=Input, output=Output)(type("Arity", (), {"predict": lambda s, a, b: a}))
    with pytest.raises(TungstenDefinitionError, match="must be a BaseIO class"):
        define_model(input=dict, output=Output)(type("BadIO", (), {"predict": lambda s, i: i}))


def test_container_settings_are_recorded():
    @define_model(
        input=Input, output=Output, gpu=True, python_packages=["torch==2.1"], cuda_version="12.1", gpu_mem_gb=24,
        python_version="3.11", system_packages=["libgl1"], mem_gb=16, include_files=["*.py"],
        exclude_files=["data/"], dockerfile_commands=["RUN echo hi"], base_image="python:3.11",
    )
    class Recorded:
        def predict(self, inputs):
            return []

    info = Recorded.tungsten
    assert info.batch_size == 1 and info.options == ("width", "height")
    assert info.container["gpu"] is True and info.container["cuda_version"] == "12.1"
    assert info.python_packages == ("torch==2.1",) and info.system_packages == ("libgl1",)
    assert (info.gpu_mem_gb, info.mem_gb, info.python_version, info.base_image) == (24, 16, "3.11", "python:3.11")
    assert info.include_files == ("*.py",) and info.exclude_files == ("data/",)
    assert info.dockerfile_commands == ("RUN echo hi",)
    assert Recorded.request_schema is Input and Recorded.response_schema is Output


def test_wrong_output_count_names_the_model_and_both_counts():
    @define_model(input=Input, output=Output, batch_size=4)
    class Lossy:
        def predict(self, inputs):
            return [Output(image=np.zeros((2, 2, 3), np.uint8)) for _ in inputs[1:]]

    with pytest.raises(TungstenOutputError, match=r"Lossy.predict returned 3 outputs for a batch of 4 inputs"):
        Lossy().predict_all([Input(prompt=str(i)) for i in range(4)])

    @define_model(input=Input, output=Output)
    class NotAList:
        def predict(self, inputs):
            return 7

    with pytest.raises(TungstenOutputError, match="returned int, expected a list of 1 Output"):
        NotAList().predict(Input(prompt="x"))


def test_setup_runs_once_on_first_use_or_with_and_across_threads():
    model = TextToImageModel()
    assert SETUPS == []
    with model:
        assert SETUPS == [1]
    barrier = threading.Barrier(8)
    results = []

    def call(i):
        barrier.wait()
        results.append(model.predict(Input(prompt=f"t{i}")))

    fresh = TextToImageModel()
    model = fresh
    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and SETUPS == [1, 1]  # one more setup: the fresh model's, once
    with fresh:
        fresh.predict(Input(prompt="again"))
    assert SETUPS == [1, 1]


def test_the_serving_contract_json_in_json_out(tmp_path):
    """What `modelzoo serve` does with a request_schema model: validate the JSON body with
    it, pass the instance to predict_all, answer output.model_dump(mode="json")."""
    model = ObjectDetectionModel()
    [path] = write_good_images(str(tmp_path), n=1)
    body = '{"image": "%s"}' % base64.b64encode(open(path, "rb").read()).decode()
    request = ObjectDetectionModel.request_schema.model_validate_json(body)
    [answer] = model.predict_all([request])
    payload = answer.model_dump(mode="json")
    assert payload == model.predict(DetInput(image=path)).model_dump(mode="json")
    assert ObjectDetectionModel.response_schema.model_validate(payload) == answer
    assert set(payload) == {"detections"} and all(set(d["bbox"]) == {"xmin", "xmax", "ymin", "ymax"} for d in payload["detections"])


def test_field_declares_a_required_checked_field():
    from modelzoo.tungsten import Field

    class Styled(BaseIO):
        prompt: str = Field(description="what to draw", min_length=1)
        style: str = Field(choices=["photo", "sketch"])

    assert Styled(prompt="a", style="photo").style == "photo"
    with pytest.raises(ValueError, match="'oil' is not one of the choices"):
        Styled(prompt="a", style="oil")
    with pytest.raises(ValueError, match="at least 1 character"):
        Styled(prompt="", style="photo")
    assert Styled.model_json_schema()["properties"]["style"]["enum"] == ["photo", "sketch"]


def test_a_model_pickles_as_its_settings():
    import pickle

    model = TextToImageModel(inputs={"width": 256}, fields={"prompt": "caption"})
    model.setup()
    copy = pickle.loads(pickle.dumps(model))
    assert type(copy) is TextToImageModel and copy.config.inputs == {"width": 256}
    assert copy.needs_fields == {"prompt": "caption"} and SETUPS == [1]  # set up again only when used
    copy.predict(Input(prompt="x"))
    assert SETUPS == [1, 1]


def test_batch_key_is_the_option_hash():
    model = TextToImageModel()
    a = model.batch_key(Input(prompt="a", width=256))
    assert a == model.batch_key({"prompt": "other", "width": 256, "height": 128})
    assert a != model.batch_key(Input(prompt="a", width=256, height=256))
    bad1, bad2 = {"prompt": "x", "width": 64}, {"prompt": "x", "width": 64}
    assert model.batch_key(bad1) != model.batch_key(bad2)  # each invalid input alone: it fails alone


def test_image_from_path_bytes_base64_pil_array(tmp_path):
    [path] = write_good_images(str(tmp_path), n=1)
    with PILImage.open(path) as f:
        expected = np.asarray(f.convert("RGB"))
    data = open(path, "rb").read()
    b64 = base64.b64encode(data).decode()
    sources = [path, tmp_path / path.rsplit("/", 1)[1], data, b64, f"data:image/jpeg;base64,{b64}", "file://" + path]
    for source in sources:
        img = Image(source)
        assert np.array_equal(img.to_numpy(), expected), source if isinstance(source, str) and len(source) < 200 else type(source)
        assert img.to_pil_image().size == (expected.shape[1], expected.shape[0])
    assert np.array_equal(Image(PILImage.fromarray(expected)).to_numpy(), expected)
    assert np.array_equal(Image(expected).to_numpy(), expected)
    assert Image(expected).to_pil_image("L").mode == "L"
    assert Image.from_path(path).path.read_bytes() == data and Image(data).path.read_bytes() == data

    out = Output(image=expected)  # JSON is a data: URI and reads back to the same pixels
    back = Output.model_validate_json(out.model_dump_json())
    assert out.model_dump(mode="json")["image"].startswith("data:image/png;base64,")
    assert np.array_equal(back.image.to_numpy(), expected)
    with pytest.raises(FileInputError, match="not a file that exists"):
        Image("no/such/file.jpg")
    with pytest.raises(FileInputError, match="not downloaded"):
        Image("https://example.com/cat.jpg")
    with pytest.raises(FileInputError, match="Cannot decode"):
        Image(b"not an image at all").to_numpy()
    with pytest.raises(ValueError, match="image"):
        Output(image=12)


# -- the docs' object-detection example, around a seeded torchvision detector ------------------


class BoundingBox(BaseIO):
    xmin: int
    xmax: int
    ymin: int
    ymax: int


class Detection(BaseIO):
    label: str
    bbox: BoundingBox


class DetInput(BaseIO):
    image: Image


class DetOutput(BaseIO):
    detections: List[Detection]


class Visualization(BaseIO):
    result: Image


CLASSES = tiny_classes(3, background=True)


def _to_detections(result) -> List[Detection]:
    return [
        Detection(label=CLASSES[int(label)], bbox=BoundingBox(xmin=round(x1), xmax=round(x2), ymin=round(y1), ymax=round(y2)))
        for (x1, y1, x2, y2), label in zip(result["boxes"].tolist(), result["labels"].tolist())
    ]


@define_model(input=DetInput, output=DetOutput, demo_output=Visualization)
class ObjectDetectionModel:
    def setup(self):
        SETUPS.append(1)
        self.net = tiny_detector(num_classes=3, seed=0).eval()

    def predict(self, inputs: List[DetInput]) -> List[DetOutput]:
        with torch.no_grad():
            results = self.net([TF.to_tensor(inp.image.to_pil_image()) for inp in inputs])
        return [DetOutput(detections=_to_detections(r)) for r in results]

    def predict_demo(self, inputs: List[DetInput]) -> Tuple[List[DetOutput], List[Visualization]]:
        outputs = self.predict(inputs)
        pil_images = []
        for inp, out in zip(inputs, outputs):
            canvas = inp.image.to_numpy().copy()
            for d in out.detections:
                canvas[d.bbox.ymin:d.bbox.ymax, d.bbox.xmin] = (255, 0, 0)
            pil_images.append(PILImage.fromarray(canvas))
        images = [Image.from_pil_image(pil_image) for pil_image in pil_images]
        visualizations = [Visualization(result=image) for image in images]
        return outputs, visualizations


def test_detection_model_on_photographs_stores_the_detectors_own_boxes(tmp_path):
    paths = write_good_images(str(tmp_path), n=4, size=(96, 72))
    name = f"tungsten-det-{uuid.uuid4().hex[:8]}"
    dataset = mz.Dataset.from_images(paths, name=name)
    try:
        model = ObjectDetectionModel()
        report = dataset.apply_model(model, label_field="det", num_workers=0)
        assert report.processed == 4 and report.failed == 0
        assert SETUPS == [1]

        reference = tiny_detector(num_classes=3, seed=0).eval()
        total = 0
        for path, stored in zip(dataset.values("filepath"), dataset.values("det")):
            with PILImage.open(path) as f:
                rgb = f.convert("RGB")
            with torch.no_grad():
                result = reference([TF.to_tensor(rgb)])[0]
            w, h = rgb.size
            assert isinstance(stored, mz.Detections)
            assert len(stored.detections) == len(result["boxes"])
            for det, box, label in zip(stored.detections, result["boxes"].tolist(), result["labels"].tolist()):
                x1, y1, x2, y2 = (round(v) for v in box)
                assert det.label == CLASSES[label]
                assert det.bounding_box == pytest.approx([x1 / w, y1 / h, (x2 - x1) / w, (y2 - y1) / h], abs=1e-12)
            total += len(stored.detections)
        assert total > 0  # the check above compared real boxes

        outputs, visualizations = model.predict_demo([DetInput(image=paths[0])])
        assert len(outputs) == len(visualizations) == 1 and isinstance(visualizations[0], Visualization)
        assert visualizations[0].result.to_numpy().shape == (72, 96, 3)
        assert model.predict(paths[0]) == outputs[0]  # a one-image model takes the image itself
        assert SETUPS == [1]
    finally:
        mz.delete_dataset(name)


def test_apply_text_model_reads_sample_fields_and_fixed_inputs(tmp_path):
    paths = write_good_images(str(tmp_path), n=3)
    name = f"tungsten-t2i-{uuid.uuid4().hex[:8]}"
    dataset = mz.Dataset.from_images(paths, name=name)
    try:
        captions = ["a red cat", "a blue dog", "a green owl"]
        dataset.set_values("caption", captions)
        model = TextToImageModel(fields={"prompt": "caption"}, inputs={"width": 256})
        assert model.needs_fields == {"prompt": "caption"}
        report = dataset.apply_model(model, label_field="generated", num_workers=0)
        assert report.processed == 3
        reference = TinyGenerator()
        for caption, stored in zip(dataset.values("caption"), dataset.values("generated")):
            got = np.asarray(PILImage.open(io.BytesIO(stored)).convert("RGB"))  # one field: its value, PNG bytes
            expected = np.asarray(reference([caption], 256, 128)[0])
            assert got.shape == (128, 256, 3) and np.abs(got.astype(int) - expected.astype(int)).max() <= 1
        assert {len(b) for b in BATCHES} == {3} and {(w, h) for b in BATCHES for _, w, h in b} == {(256, 128)}

        dataset.set_values("caption", [None, "x", "y"])
        report = dataset.apply_model(TextToImageModel(), label_field="plain", num_workers=0, **{"error_field": "err"})
        assert report.processed == 0 and report.failed == 3  # the model reads "prompt", which samples lack
        assert "no value for input field(s) 'prompt' (from sample field 'prompt')" in report.failures[0].message
    finally:
        mz.delete_dataset(name)
    with pytest.raises(mz.ConfigError, match="width.*64 is not one of the choices"):
        TextToImageModel(inputs={"width": 64})
    with pytest.raises(mz.ConfigError, match="Did you mean 'prompt'"):
        TextToImageModel(fields={"promt": "caption"})
    with pytest.raises(mz.ConfigError, match="Did you mean one of 'fields'"):
        TextToImageModel(field={"prompt": "caption"})


def test_outputs_map_to_labels_only_where_unambiguous():
    class Cls(BaseIO):
        label: str
        score: float

    class Box(BaseIO):
        x1: float
        y1: float
        x2: float
        y2: float
        category: str
        confidence: float
        track: int

    class Mixed(BaseIO):
        top: Cls
        ranked: List[Cls]
        boxes: List[Box]
        caption: str
        extra: dict

    # labels compare by content (each has its own id)
    assert output_converter(Cls)(Cls(label="cat", score=0.7), None) == mz.Classification(label="cat", confidence=0.7)
    out = Mixed(
        top=Cls(label="cat", score=0.9), ranked=[Cls(label="a", score=0.6), Cls(label="b", score=0.4)],
        boxes=[Box(x1=10, y1=20, x2=30, y2=60, category="car", confidence=0.5, track=3)], caption="hi", extra={"k": [1]},
    )
    stored = output_converter(Mixed)(out, (100, 200))
    assert isinstance(stored["top"], mz.Classification) and stored["top"].label == "cat"
    assert [c.label for c in stored["ranked"].classifications] == ["a", "b"]
    [det] = stored["boxes"].detections
    assert det.bounding_box == pytest.approx([0.1, 0.1, 0.2, 0.2]) and det.label == "car" and det.confidence == 0.5
    assert det.attributes == {"track": 3}
    assert stored["caption"] == "hi" and stored["extra"] == {"k": [1]}
    assert output_converter(Mixed)(out, None)["boxes"] == [  # no image size: pixel boxes stay plain data
        {"x1": 10.0, "y1": 20.0, "x2": 30.0, "y2": 60.0, "category": "car", "confidence": 0.5, "track": 3}
    ]


def test_confidence_thresh_applies_to_stored_labels(tmp_path):
    class Photo(BaseIO):
        image: Image

    class Guess(BaseIO):
        label: str
        score: float

    @define_model(input=Photo, output=Guess, batch_size=2)
    class Brightness:
        def predict(self, inputs):
            return [Guess(label="bright", score=float(inp.image.to_numpy().mean()) / 255) for inp in inputs]

    from modelzoo.tungsten import LoadedFile

    dark, light = np.full((4, 4, 3), 40, np.uint8), np.full((4, 4, 3), 220, np.uint8)
    loaded = [LoadedFile("dark.png", dark), LoadedFile("light.png", light)]
    kept = Brightness(confidence_thresh=0.5).predict_all(loaded, [{}, {}])
    assert kept[0] is None and kept[1].label == "bright" and kept[1].confidence == pytest.approx(220 / 255)
    assert Brightness().predict_all(loaded, [{}, {}])[0].confidence == pytest.approx(40 / 255)


# -- the zoo: by name, settings checked, post_build on `modelzoo download` ------------------------

POST_BUILDS: List[str] = []


class PBInput(BaseIO):
    x: int


class PBOutput(BaseIO):
    y: int


@define_model(input=PBInput, output=PBOutput)
class WithPostBuild:
    def post_build():
        """Fetch weights while building (here: write them)."""
        POST_BUILDS.append("built")
        with open("weights.txt", "w") as f:
            f.write("3")

    def setup(self):
        self.factor = int(open("weights.txt").read())

    def predict(self, inputs):
        return [PBOutput(y=self.factor * inp.x) for inp in inputs]


def test_zoo_by_name_and_post_build_on_download(zoo_env, tmp_path, monkeypatch, capsys):
    # the class's build directory (where post_build writes and setup reads) is tmp_path, not tests/
    monkeypatch.setattr(WithPostBuild, "tungsten", dataclasses.replace(WithPostBuild.tungsten, build_dir=str(tmp_path)))
    POST_BUILDS.clear()
    zoo.register_zoo_model("tungsten-text-to-image", TextToImageModel, tags=["tungsten"])
    model = zoo.load_zoo_model("tungsten-text-to-image", batch_size=2)
    assert type(model) is TextToImageModel and model.batch_size == 2
    model.predict_all([Input(prompt=str(i)) for i in range(3)])
    assert [len(b) for b in BATCHES] == [2, 1]
    with pytest.raises(mz.ConfigError, match="Did you mean 'batch_size'"):
        zoo.load_zoo_model("tungsten-text-to-image", batchsize=2)
    with pytest.raises(mz.ModelNotFoundError, match="Did you mean 'tungsten-text-to-image'"):
        zoo.load_zoo_model("tungsten-text-to-imag")

    zoo.register_zoo_model("tungsten-post-build", WithPostBuild)
    assert cli_main(["download", "tungsten-post-build", "--quiet"]) == 0
    assert POST_BUILDS == ["built"] and (tmp_path / "weights.txt").read_text() == "3"
    assert cli_main(["download", "tungsten-post-build", "--quiet"]) == 0
    assert POST_BUILDS == ["built"]  # done once
    assert cli_main(["download", "tungsten-post-build", "--force", "--quiet"]) == 0
    assert POST_BUILDS == ["built", "built"]
    assert zoo.load_zoo_model("tungsten-post-build").predict(PBInput(x=5)) == PBOutput(y=15)
    assert POST_BUILDS == ["built", "built"]

    zoo.register_zoo_model("tungsten-post-build-2", WithPostBuild)
    (tmp_path / "weights.txt").unlink()
    assert zoo.load_zoo_model("tungsten-post-build-2").predict({"x": 2}).y == 6  # first load builds
    assert POST_BUILDS == ["built", "built", "built"]


def test_only_a_class_that_declares_a_download_hook_gets_one_run(zoo_env, tmp_path, monkeypatch):
    # Model.zoo_post_download is declared None: a plain model class runs nothing and leaves no marker file
    assert mz.Model.zoo_post_download is None and WithPostBuild.zoo_post_download is not None
    monkeypatch.setattr(WithPostBuild, "tungsten", dataclasses.replace(WithPostBuild.tungsten, build_dir=str(tmp_path)))
    POST_BUILDS.clear()
    zoo.register_zoo_model("plain-classifier", {**TASKS["classification"], "device": "cpu", "optimize": False})
    zoo.register_zoo_model("tungsten-hooked", WithPostBuild)
    assert cli_main(["download", "plain-classifier", "--quiet"]) == 0
    assert cli_main(["download", "tungsten-hooked", "--quiet"]) == 0
    home = tmp_path / "zoo-home"
    markers = sorted(str(p.relative_to(home)) for p in home.rglob(".post_download"))
    assert POST_BUILDS == ["built"] and markers == ["tungsten-hooked/1.0/.post_download"]
