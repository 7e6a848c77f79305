"""VESSL-style models: RunnerBase runners registered as repository/number in the local zoo,
loaded in another process, applied to real photographs; register_torch_model; trust; refusals."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import modelzoo as mz
import modelzoo.vessl as vessl
from modelzoo.errors import ModelNotFoundError
from modelzoo.zoo import local
from tests.images import write_good_images
from tests.processes import REPO, child_env
from tests.vessl_runners import BrightnessRunner, ResultRunner, SavesItself, SavesOnly, brightness, to_tensor

CLASSES = {"classes": ["dark", "bright"], "threshold": 110.0}


@pytest.fixture
def home(zoo_env, tmp_path, monkeypatch):
    """A private zoo home and trust key; the working directory holds the artifacts."""
    monkeypatch.setenv(vessl.ENV_TRUST_KEY, str(tmp_path / "trust.key"))
    monkeypatch.chdir(tmp_path)
    os.makedirs("out", exist_ok=True)
    with open("out/classes.json", "w") as f:
        json.dump(CLASSES, f)
    return tmp_path


def _child(code, **env):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=str(REPO), env=child_env(**env),
                          capture_output=True, text=True, timeout=300)


def _expected(path):
    with open(path, "rb") as f:
        mean = brightness(f.read())
    return ("bright" if mean > CLASSES["threshold"] else "dark"), mean / 255.0


# -- a runner with an artifact, loaded by repository/number in another process -----------------------------
@pytest.mark.slow
def test_runner_with_artifact_loads_in_a_second_process_and_labels_real_photos(home):
    registered = vessl.register_model(
        repository_name="brightness", model_number=None, runner_cls=BrightnessRunner,
        requirements=["numpy"], artifacts={"out/classes.json": "config/classes.json"},
    )
    assert registered.name == "brightness/1"
    paths = write_good_images(str(home / "photos"), n=6)
    name = "vessl-photos"
    out = _child(f"""
        import modelzoo as mz
        print("LISTED", mz.list_zoo_models(pattern="brightness"))
        model = mz.load_zoo_model("brightness/1")
        print("RUNNER", type(model).__name__, model.runner.__module__, model.runner.__qualname__)
        dataset = mz.Dataset.from_images({paths!r}, name={name!r}, overwrite=True)
        report = dataset.apply_model(model, label_field="light", num_workers=1)
        print("PROCESSED", report.processed, report.failed)
    """)
    assert out.returncode == 0, out.stderr
    assert "LISTED ['brightness/1']" in out.stdout
    assert "RUNNER RunnerModel tests.vessl_runners BrightnessRunner" in out.stdout  # imported back, not unpickled
    assert "PROCESSED 6 0" in out.stdout
    dataset = mz.load_dataset(name)
    try:
        stored = {s.filepath: s.light for s in dataset}
        labels = set()
        for path in paths:
            label, confidence = _expected(path)
            assert isinstance(stored[path], mz.Classification)
            assert stored[path].label == label and stored[path].confidence == pytest.approx(confidence, abs=1e-12)
            labels.add(label)
        assert labels == {"dark", "bright"}  # the threshold splits these photographs
    finally:
        mz.delete_dataset(name)


def test_plain_answers_are_stored_as_fields_and_newest_number_wins(home):
    vessl.register_model("brightness", runner_cls=BrightnessRunner, artifacts={"out/classes.json": "config/classes.json"})
    second = vessl.register_model("brightness", runner_cls=ResultRunner, artifacts={"out/": "config/"})
    assert second.number == 2
    assert mz.list_zoo_models(pattern="brightness") == ["brightness/1", "brightness/2"]
    model = mz.load_zoo_model("brightness")  # the newest number
    assert model.name == "brightness/2" and model.runner is ResultRunner
    paths = write_good_images(str(home / "photos"), n=3)
    dataset = mz.Dataset.from_images(paths, name="vessl-fields", overwrite=True)
    try:
        dataset.apply_model(model, label_field="mnist", num_workers=0)
        for sample in dataset:
            _, confidence = _expected(sample.filepath)
            assert sample["mnist_result"] == int(confidence * 255.0 > 100)   # {"result": n} -> a plain field
    finally:
        mz.delete_dataset("vessl-fields")
    assert mz.delete_zoo_model("brightness/2") is True
    assert mz.load_zoo_model("brightness").name == "brightness/1"
    assert mz.list_zoo_models(pattern="brightness") == ["brightness/1"]
    again = vessl.register_model("brightness", runner_cls=ResultRunner, artifacts={"out/": "config/"})
    assert again.number == 3   # a deleted number never names another model


def test_save_model_props_reach_load_model_and_files_land_in_the_volume(home):
    reg = vessl.register_model("saver", runner_cls=SavesItself, model_instance={"scale": 3})
    model = mz.load_zoo_model(reg.name)
    assert model.model == {"scale": 3} and model.predict(b"abcd") == 12
    assert os.path.isfile(os.path.join(model.volume, "weights.json"))
    assert model.manifest["model"] == {"save_type": "save_model", "save_output": {"path": "weights.json"}}


# -- register_torch_model ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_register_torch_model_round_trips_a_seeded_resnet18_exactly(home):
    import torch
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=10).eval()
    with pytest.raises(vessl.InvalidParamsError, match="builder="):   # ResNet() needs arguments: say what to pass
        vessl.register_torch_model("resnet", None, net, preprocess_data=to_tensor)
    reg = vessl.register_torch_model(
        "resnet", None, net, preprocess_data=to_tensor, requirements=["torchvision"],
        builder=torchvision.models.resnet18, builder_kwargs={"num_classes": 10},
    )
    entry = mz.get_zoo_model_info(reg.name)
    assert set(entry.requirements.packages) == {"torchvision", "torch"} and not os.listdir(
        os.path.join(os.path.dirname(entry.origin), "volume"))
    assert not [f for f in os.listdir(os.path.dirname(entry.origin)) if f.endswith(".pkl")]  # nothing pickled
    model = mz.load_zoo_model("resnet/1")
    assert model.model is not net and model.model.training is False
    paths = write_good_images(str(home / "photos"), n=3)
    with torch.no_grad():
        expected = {p: net(to_tensor(open(p, "rb").read())).numpy() for p in paths}
    for p in paths:
        got = model.predict(open(p, "rb").read())
        assert got.dtype == np.float32 and np.array_equal(got, expected[p])
    dataset = mz.Dataset.from_images(paths, name="vessl-torch", overwrite=True)
    try:
        dataset.apply_model(model, label_field="logits", num_workers=0)
        for sample in dataset:
            assert np.array_equal(sample.logits, expected[sample.filepath])
    finally:
        mz.delete_dataset("vessl-torch")


def test_register_torch_model_refuses_what_it_cannot_rebuild(home):
    import torch

    from modelzoo.testing import tiny_classifier

    class Local(torch.nn.Linear):
        pass

    with pytest.raises(vessl.InvalidParamsError, match="must be importable"):
        vessl.register_torch_model("local", None, Local(2, 2))
    with pytest.raises(vessl.InvalidParamsError, match="torch.nn.Module"):
        vessl.register_torch_model("local", None, object())
    with pytest.raises(vessl.InvalidParamsError, match="does not take this module's state dict"):
        vessl.register_torch_model("tiny", None, tiny_classifier(num_classes=5), builder_kwargs={"num_classes": 3})
    assert local.numbers("local") == [] and local.numbers("tiny") == []  # nothing registered


# -- trust -------------------------------------------------------------------------------------------------
REGISTER_MAIN = """
    import modelzoo.vessl as vessl

    class Doubler(vessl.RunnerBase):                 # in __main__: stored as a pickle
        @staticmethod
        def predict(model, data):
            return model["k"] * len(data)

    print("REGISTERED", vessl.register_model("doubler", runner_cls=Doubler, model_instance={"k": 2}))
"""

LOAD_MAIN = """
    import modelzoo as mz
    from modelzoo.vessl import UntrustedModelError
    try:
        print("LOADED", mz.load_zoo_model("doubler/1").predict(b"abc"))
    except UntrustedModelError as e:
        print("REFUSED", e)
        print("TRUSTED", mz.load_zoo_model("doubler/1", trust=True).predict(b"abc"))
"""


@pytest.mark.slow
def test_pickles_load_when_this_user_signed_them_else_need_trust(home):
    env = {"MODELZOO_HOME": os.environ["MODELZOO_HOME"], vessl.ENV_TRUST_KEY: os.environ[vessl.ENV_TRUST_KEY]}
    out = _child(REGISTER_MAIN, **env)
    assert out.returncode == 0, out.stderr
    assert "REGISTERED doubler/1" in out.stdout
    same_user = _child(LOAD_MAIN, **env)
    assert same_user.returncode == 0, same_user.stderr
    assert "LOADED 6" in same_user.stdout                       # signed with this user's key
    other_key = _child(LOAD_MAIN, **{**env, vessl.ENV_TRUST_KEY: str(home / "someone-else.key")})
    assert "REFUSED" in other_key.stdout and "unpickling runs arbitrary code" in other_key.stdout
    assert "vessl.model.pkl" in other_key.stdout and "vessl.runner.pkl" in other_key.stdout
    assert "TRUSTED 6" in other_key.stdout
    # a pickle changed after registration is refused, even for the same user
    entry = os.path.dirname(mz.get_zoo_model_info("doubler/1").origin)
    with open(os.path.join(entry, "vessl.model.pkl"), "ab") as f:
        f.write(b"\0")
    tampered = _child(LOAD_MAIN, **env)
    assert "REFUSED" in tampered.stdout


# -- refusals ---------------------------------------------------------------------------------------------
def test_save_model_without_load_model_is_refused_at_registration(home):
    with pytest.raises(vessl.RunnerDefinitionError, match="overrides save_model but not load_model"):
        vessl.register_model("saves-only", runner_cls=SavesOnly, model_instance={"a": 1})

    class NoPredict(vessl.RunnerBase):
        @staticmethod
        def load_model(props, artifacts):
            return None

    with pytest.raises(vessl.RunnerDefinitionError, match="must override predict"):
        vessl.register_model("nopredict", runner_cls=NoPredict)

    class WithSelf(vessl.RunnerBase):
        def predict(self, model, data):
            return data

    with pytest.raises(vessl.RunnerDefinitionError, match="no self"):
        vessl.register_model("withself", runner_cls=WithSelf, model_instance=1)
    class PredictOnly(vessl.RunnerBase):
        @staticmethod
        def predict(model, data):
            return data

    with pytest.raises(vessl.RunnerDefinitionError, match="nothing to load"):
        vessl.register_model("nothing", runner_cls=PredictOnly)
    assert local.local_entries() == []  # nothing registered (torchvision/... names are another source's)


@pytest.mark.parametrize("artifacts, message", [
    ({"out/*.json": "config/*"}, "glob other than one trailing"),
    ({"o*t/classes.json": "config/classes.json"}, "glob other than one trailing"),
    ({"out/*": "config/"}, "on both sides"),
    ({"out/classes.json": "../escape.json"}, "stay inside the model's volume"),
    ({"out/classes.json": "/etc/escape.json"}, "stay inside the model's volume"),
    ({"missing.pt": "missing.pt"}, "does not exist"),
])
def test_bad_artifacts_are_refused_before_anything_is_stored(home, artifacts, message):
    with pytest.raises(vessl.ArtifactError, match=message):
        vessl.register_model("brightness", runner_cls=BrightnessRunner, artifacts=artifacts)
    assert mz.list_zoo_models(pattern="brightness") == []
    assert not os.path.exists(home / "escape.json")


def test_a_trailing_glob_copies_every_match(home):
    os.makedirs("ckpt")
    for name in ("a.pt", "b.pt"):
        with open(os.path.join("ckpt", name), "w") as f:
            f.write(name)
    reg = vessl.register_model("brightness", runner_cls=BrightnessRunner,
                               artifacts={"ckpt/*": "weights/*", "out/classes.json": "config/classes.json"})
    volume = mz.load_zoo_model(reg.name).volume
    assert sorted(os.listdir(os.path.join(volume, "weights"))) == ["a.pt", "b.pt"]
    assert open(os.path.join(volume, "weights", "b.pt")).read() == "b.pt"


def test_a_duplicate_number_is_refused_unless_overwrite(home):
    arts = {"out/classes.json": "config/classes.json"}
    vessl.register_model("brightness", 1, runner_cls=BrightnessRunner, artifacts=arts)
    with pytest.raises(vessl.NumberTakenError, match=r"'brightness/1' already exists.*'brightness/2'"):
        vessl.register_model("brightness", 1, runner_cls=ResultRunner, artifacts=arts)
    assert mz.load_zoo_model("brightness/1").runner is BrightnessRunner
    vessl.register_model("brightness", 1, runner_cls=ResultRunner, artifacts=arts, overwrite=True)
    assert mz.load_zoo_model("brightness/1").runner is ResultRunner
    assert mz.list_zoo_models(pattern="brightness") == ["brightness/1"]


def test_unknown_repository_or_number_suggests_what_exists(home):
    vessl.register_model("brightness", runner_cls=BrightnessRunner, artifacts={"out/": "config/"})
    with pytest.raises(ModelNotFoundError) as e:
        mz.load_zoo_model("brightness/7")
    assert "repository 'brightness' has 'brightness/1'" in str(e.value)
    with pytest.raises(ModelNotFoundError, match="Did you mean 'brightness/1'"):
        mz.load_zoo_model("brigthness/1")
    with pytest.raises(vessl.InvalidParamsError, match="repository_name 'Bad Name'"):
        vessl.register_model("Bad Name", runner_cls=BrightnessRunner, artifacts={"out/": "config/"})
    with pytest.raises(mz.ConfigError, match="Did you mean 'organization_name'"):
        vessl.register_model("brightness", runner_cls=BrightnessRunner, organisation_name="x")


def test_a_typed_runner_validates_requests_with_its_pydantic_types(home):
    from pydantic import BaseModel, ValidationError

    class In(BaseModel):
        text: str

    class Out(BaseModel):
        length: int

    class Typed(vessl.RunnerBase[In, Out]):
        @staticmethod
        def load_model(props, artifacts):
            return len

        @staticmethod
        def predict(model, data):
            return {"length": model(data.text)}

    reg = vessl.register_model("typed", runner_cls=Typed)
    model = mz.load_zoo_model(reg.name)   # same process, same user: the pickled class is signed
    assert model.request_schema is In and model.response_schema is Out
    assert model.predict({"text": "hello"}) == Out(length=5)
    with pytest.raises(ValidationError):
        model.predict({"text": 3})


def test_publish_takes_the_next_number_when_another_process_wins_the_race(home):
    """Two registrations computing the same next number: the one whose rename
    comes second gets the number after (simulated here by publishing a
    competitor from inside the first one's write_entry)."""
    from modelzoo.zoo import local

    calls = []

    def competitor(staging, number):
        with open(os.path.join(staging, "who"), "w") as f:
            f.write("competitor")

    def write(staging, number):
        calls.append(number)
        with open(os.path.join(staging, "who"), "w") as f:
            f.write("first")
        if len(calls) == 1:  # another process publishes this number meanwhile
            assert local.publish(local.staging_dir("race"), "race", None, False, competitor) == number

    assert local.publish(local.staging_dir("race"), "race", None, False, write) == 2
    assert calls == [1, 2]
    assert open(os.path.join(local.entry_dir("race", 1), "who")).read() == "competitor"
    assert open(os.path.join(local.entry_dir("race", 2), "who")).read() == "first"
    assert not [n for n in os.listdir(os.path.join(local.local_root(), "race")) if n.startswith(".")]


def test_answers_map_to_labels_only_when_unambiguous():
    import torch

    from modelzoo.vessl.outputs import to_stored

    dets = to_stored([{"label": "cat", "bounding_box": [0.1, 0.2, 0.3, 0.4], "confidence": 0.9},
                      {"label": "dog", "bounding_box": [0.5, 0.5, 0.2, 0.2]}], "m/1")
    assert isinstance(dets, mz.Detections) and [d.label for d in dets.detections] == ["cat", "dog"]
    assert dets.detections[0].bounding_box == [0.1, 0.2, 0.3, 0.4] and dets.detections[1].confidence is None
    cls = to_stored({"label": "cat", "confidence": 0.75}, "m/1")
    assert isinstance(cls, mz.Classification) and (cls.label, cls.confidence) == ("cat", 0.75)
    many = to_stored([{"label": "a"}, {"label": "b", "confidence": 0.5}], "m/1")
    assert isinstance(many, mz.Classifications) and [c.label for c in many.classifications] == ["a", "b"]
    # ambiguous: extra keys, mixed kinds, a non-string label, an empty list -> plain data
    assert to_stored({"label": "cat", "score": 0.5}, "m/1") == {"label": "cat", "score": 0.5}
    mixed = to_stored([{"label": "a"}, {"label": "b", "bounding_box": [0, 0, 1, 1]}], "m/1")
    assert isinstance(mixed, list) and isinstance(mixed[0], mz.Classification) and isinstance(mixed[1], mz.Detection)
    assert to_stored({"label": 3}, "m/1") == {"label": 3}
    assert to_stored([], "m/1") == []
    nested = to_stored({"top": {"label": "cat"}, "n": torch.tensor([1.5, 2.0])}, "m/1")
    assert isinstance(nested["top"], mz.Classification) and np.array_equal(nested["n"], np.array([1.5, 2.0], np.float32))
    with pytest.raises(TypeError, match="'m/1' answered object"):
        to_stored(object(), "m/1")


# -- VESSL's MNIST example (vessl-ai/examples, deprecated/mnist/pytorch/model.py), import changed ----------
MNIST_EXAMPLE = '''
import argparse
from io import BytesIO

import numpy as np
import torch
import torch.nn as nn
import modelzoo.vessl as vessl
from PIL import Image


class Net(nn.Module):
    def __init__(self):
        super(Net, self).__init__()
        self.conv = nn.Conv2d(1, 32, 3, 1)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.drop1 = nn.Dropout2d(0.25)
        self.drop2 = nn.Dropout2d(0.5)
        self.fc1 = nn.Linear(5408, 128)
        self.fc2 = nn.Linear(128, 10)
        self.softmax = nn.LogSoftmax(1)

    def forward(self, x):
        x = self.relu(self.conv(x))
        x = self.pool(x)
        x = self.drop1(x)
        x = torch.flatten(x, 1)
        x = self.fc1(x)
        x = self.relu(x)
        x = self.drop2(x)
        x = self.fc2(x)
        return self.softmax(x)


class MyRunner(vessl.RunnerBase):
    @staticmethod
    def load_model(props, artifacts):
        model = Net()

        if torch.cuda.is_available():
            device = torch.device("cuda")
            model.load_state_dict(torch.load("model.pt", map_location=device))
            model.to(device)
        elif torch.backends.mps.is_available():
            model.load_state_dict(torch.load("model.pt", map_location="mps"))
        else:
            device = torch.device('cpu')
            model.load_state_dict(torch.load("model.pt", map_location="cpu"))

        model.eval()
        return model

    @staticmethod
    def preprocess_data(img_data):
        # receive byte data and change to image data
        image = Image.open(BytesIO(img_data))

        # change image data to numpy array
        pix = np.array(image)
        pix = pix / 255.0
        data = pix.reshape(-1, 28, 28)

        # change datatype to tensor by using TensorDataset
        infer_torch_data = torch.utils.data.TensorDataset(
            torch.from_numpy(data).unsqueeze(1)
        )

        # load tensor data to dataloader iteration
        infer_dataloader = torch.utils.data.DataLoader(
            infer_torch_data, batch_size=128, shuffle=False
        )

        # save data from dataloader iteration, and change datatype of data in tensor to float(?)
        for data in infer_dataloader:
            infer_data = data[0].float()

        return infer_data

    @staticmethod
    def predict(model, data):
        with torch.no_grad():
            return model(data).argmax(dim=1, keepdim=True)

    @staticmethod
    def postprocess_data(data):
        return {"result": data.item()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="PyTorch MNIST Model Register")
    parser.add_argument("--checkpoint", type=str, default="./output/model.pt", help="checkpoint path")
    parser.add_argument("--model-repository", type=str, help="Model repository name to save model in VESSL")
    args = parser.parse_args()

    print("=> Registering trained model to VESSL")
    model = vessl.create_model(repository_name=args.model_repository)
    vessl.upload_model_volume_file(
        repository_name=args.model_repository,
        model_number=model.number,
        source_path=args.checkpoint,
        dest_path="model.pt",
    )
    vessl.register_model(
        repository_name=args.model_repository,
        model_number=model.number,
        runner_cls=MyRunner,
        requirements=["torch"],   # the example says "torch<2.0.0"; modelzoo checks requirements at load
    )
'''


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:dropout2d")  # the example's Dropout2d gets 2-D input (its own code)
def test_vessls_mnist_example_registers_in_a_script_and_labels_real_photos(home):
    import importlib.util

    import torch
    from PIL import Image

    from tests.images import PHOTOS, photo

    with open("mnist_model.py", "w") as f:
        f.write(MNIST_EXAMPLE)
    spec = importlib.util.spec_from_file_location("mnist_reference", "mnist_model.py")
    reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference)
    torch.manual_seed(0)
    net = reference.Net().eval()
    torch.save(net.state_dict(), "out/model.pt")
    out = subprocess.run([sys.executable, "mnist_model.py", "--checkpoint", "out/model.pt", "--model-repository", "mnist"],
                         env=child_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert mz.list_zoo_models(pattern="mnist") == ["mnist/1"]
    paths = []
    for name in PHOTOS:
        paths.append(str(home / f"{name}.png"))
        Image.fromarray(photo(name)).convert("L").resize((28, 28)).save(paths[-1])   # MNIST-sized grayscale
    dataset = mz.Dataset.from_images(paths, name="vessl-mnist", overwrite=True)
    try:
        dataset.apply_model(mz.load_zoo_model("mnist"), label_field="digit", num_workers=0)
        for sample in dataset:
            pix = np.asarray(Image.open(sample.filepath), dtype=np.float64) / 255.0
            with torch.no_grad():
                expected = int(net(torch.from_numpy(pix).float().reshape(1, 1, 28, 28)).argmax())
            assert sample.digit_result == expected
    finally:
        mz.delete_dataset("vessl-mnist")


def test_upload_goes_only_to_a_reserved_number(home):
    reserved = vessl.create_model("brightness")
    assert reserved.number == 1 and mz.list_zoo_models(pattern="brightness") == []   # reserved, not a model yet
    vessl.upload_model_volume_file("brightness", 1, "out/classes.json", "config/classes.json")
    with pytest.raises(vessl.ArtifactError, match="stay inside"):
        vessl.upload_model_volume_file("brightness", 1, "out/classes.json", "../x.json")
    vessl.register_model("brightness", 1, runner_cls=BrightnessRunner)    # no overwrite needed; the file is kept
    assert mz.load_zoo_model("brightness/1").model == CLASSES
    with pytest.raises(vessl.InvalidParamsError, match="is registered, and its files are fixed"):
        vessl.upload_model_volume_file("brightness", 1, "out/classes.json", "config/classes.json")
    with pytest.raises(vessl.InvalidParamsError, match="does not exist"):
        vessl.upload_model_volume_file("brightness", 5, "out/classes.json", "config/classes.json")
    assert vessl.create_model("brightness").number == 2
