"""``modelzoo serve``: a real server process on loopback, real photographs over
HTTP, compared with the model in this process; then the same command as a
Launch runnable bundle; stopped by signals, leaving no process behind.

Synchronised on the process's output (its address), ``/readyz`` and ``/info``
(polled with deadlines), never on sleeps.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List

import httpx
import numpy as np
import pytest
from PIL import Image

import modelzoo as mz
from modelzoo.bundles import LaunchClient
from modelzoo.bundles.runnable import running_pids
from modelzoo.serving.server import ModelServer
from modelzoo.torch_image import TorchImageModel
from tests.images import photo, write_bad_images, write_photos
from tests.processes import REPO, child_env
from tests.serve_models import CLASSIFIER, Repeater
from tests.served import DEADLINE_S, Served

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "camera", "coins")
NAME = "picky-tiny-classifier"


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> List[str]:
    return write_photos(str(tmp_path_factory.mktemp("serve-photos")), PHOTOS)


@pytest.fixture(scope="module")
def references(files) -> Dict[str, Any]:
    """What the model says of each photograph alone, in this process (decoded here, by PIL)."""
    model = TorchImageModel(CLASSIFIER)
    return {p: model.predict(np.asarray(Image.open(p).convert("RGB"))) for p in files}


@pytest.fixture
def manifest(tmp_path) -> str:
    path = tmp_path / "serve-manifest.json"
    entry = {
        "name": NAME, "version": "1.0", "description": "the tiny seeded classifier, refusing tiny images",
        "source": "tests/serve_models.py", "license": "Apache-2.0", "size_bytes": 0,
        "tags": ["classification", "test"], "requirements": {"packages": ["torch"], "cpu": True, "gpu": True},
        "weights": None, "date_added": "2026-01-01", "training_data": "none",
        "model": {"type": "tests.serve_models.PickyClassifier", "config": CLASSIFIER},
    }
    path.write_text(json.dumps({"manifest_version": 1, "models": [entry]}))
    return str(path)


def _env(manifest: str, tmp_path) -> Dict[str, str]:
    return child_env(MODELZOO_MANIFEST_PATHS=manifest, MODELZOO_HOME=str(tmp_path / "home"), PORT=None)


def _form(i: int, path: str) -> Dict[str, Any]:
    """httpx arguments sending the photograph as raw bytes, base64 JSON, or a path."""
    data = open(path, "rb").read()
    if i % 3 == 0:
        ctype = "image/jpeg" if path.endswith(".jpg") else "image/png"
        return {"content": data, "headers": {"Content-Type": ctype}}
    if i % 3 == 1:
        return {"json": {"image": base64.b64encode(data).decode()}}
    return {"json": {"path": path}}


def _post_all(url: str, requests: List[Dict[str, Any]]) -> List[httpx.Response]:
    with httpx.Client(timeout=120) as client, ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(lambda kw: client.post(url + "/predict", **kw), requests))


def _same(answer: Dict[str, Any], ref: Any) -> bool:
    label = mz.labels.Label.from_dict(answer)
    return label.label == ref.label and abs(label.confidence - ref.confidence) < 1e-5


def _poll(predicate, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.mark.slow
def test_serve_process_answers_concurrent_photographs_like_predict_and_stops_on_sigint(
    files, references, manifest, tmp_path
):
    bad = write_bad_images(str(tmp_path / "bad"))
    tiny = str(tmp_path / "tiny.png")
    Image.fromarray(photo("coffee")).convert("RGB").resize((12, 9)).save(tiny)
    # batches go only when full (8) or at shutdown: what shares a batch is deterministic
    roots = sorted({os.path.dirname(p) for p in files} | {os.path.dirname(bad["missing"]), str(tmp_path)})
    server = Served([NAME, "--max-batch-size", "8", "--max-wait-ms", "600000",
                     "--max-body-bytes", str(2 * 1024 * 1024), "--allow-paths", *roots], _env(manifest, tmp_path))
    try:
        # 16 concurrent requests, three ways of sending an image: two full batches
        sent = [files[i % len(files)] for i in range(16)]
        answers = _post_all(server.url, [_form(i, p) for i, p in enumerate(sent)])
        assert [r.status_code for r in answers] == [200] * 16, [r.text for r in answers]
        for path, r in zip(sent, answers):
            assert _same(r.json(), references[path]), (path, r.json(), references[path])
        assert server.info()["stats"]["batch_sizes"] == {"8": 2}

        # one image the model refuses, in a batch of 8: 500 for it only, its batch-mates answered
        mixed = [_form(i, files[i]) for i in range(7)] + [_form(2, tiny)]
        answers = _post_all(server.url, mixed)
        assert [r.status_code for r in answers[:7]] == [200] * 7
        for i, r in enumerate(answers[:7]):
            assert _same(r.json(), references[files[i]])
        assert answers[7].status_code == 500
        assert answers[7].json()["detail"] == "ValueError: image too small: 12x9 pixels, needs at least 16 on each side"
        assert server.info()["stats"]["retried_batches"] == 1

        # malformed requests: 422 naming the field, 413 over the limit, 415 for other content
        post = lambda **kw: httpx.post(server.url + "/predict", timeout=30, **kw)  # noqa: E731
        r = post(json={"image": "not base64!"})
        assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["image"]
        r = post(json={"path": bad["missing"]})
        assert r.status_code == 422 and "missing.jpg" in r.json()["detail"] and r.json()["errors"][0]["loc"] == ["path"]
        r = post(json={"picture": "x"})
        assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["picture"]
        r = post(content=open(bad["corrupt_jpeg"], "rb").read(), headers={"Content-Type": "image/jpeg"})
        assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["image"]
        r = post(content=b"{not json", headers={"Content-Type": "application/json"})
        assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body"]
        r = post(content=os.urandom(3 * 1024 * 1024), headers={"Content-Type": "image/jpeg"})
        assert r.status_code == 413 and "2097152" in r.json()["detail"]
        r = post(content=b"hello", headers={"Content-Type": "text/plain"})
        assert r.status_code == 415

        doc = httpx.get(server.url + "/openapi.json", timeout=30).json()
        body = doc["paths"]["/predict"]["post"]["requestBody"]["content"]
        assert set(body) == {"application/json", "image/*", "application/octet-stream"}
        assert set(doc["components"]["schemas"]["ImageRequest"]["properties"]) == {"image", "path"}

        # Ctrl-C with a request in flight (queued, waiting for batch-mates): it is answered, then the process exits
        in_flight: "queue.Queue[httpx.Response]" = queue.Queue()
        threading.Thread(
            target=lambda: in_flight.put(httpx.post(server.url + "/predict", timeout=120, **_form(2, files[1])))
        ).start()
        _poll(lambda: server.info()["pending"] == 1, "the request to be queued")
        server.proc.send_signal(signal.SIGINT)
        answer = in_flight.get(timeout=DEADLINE_S)
        assert answer.status_code == 200 and _same(answer.json(), references[files[1]])
        assert server.proc.wait(timeout=DEADLINE_S) == 0
        assert "stopped (SIGINT)" in "".join(server.output)
    finally:
        server.kill()
    assert server.proc.poll() is not None


@pytest.mark.slow
def test_served_model_is_a_runnable_bundle_applied_to_a_dataset(files, references, manifest, tmp_path, bundle_home):
    client = LaunchClient()
    bundle_id = client.create_model_bundle_from_runnable_image_v2(
        model_bundle_name="served-tiny", request_schema=None, response_schema=None, repository="-", tag="-",
        # no --port: `modelzoo serve` takes $PORT, as a runnable image does
        command=[sys.executable, "-m", "modelzoo", "serve", NAME, "--max-wait-ms", "1",
                 "--allow-paths", os.path.dirname(files[0])],
        env={"PYTHONPATH": str(REPO), "MODELZOO_MANIFEST_PATHS": manifest},
        readiness_initial_delay_seconds=DEADLINE_S, input_fields={"path": "filepath"},
    ).model_bundle_id
    bundle = client.get_model_bundle_v2(bundle_id)
    dataset = mz.Dataset.from_images(files, name="served-bundle", overwrite=True)
    try:
        with bundle.to_model() as model:         # each request: {"path": sample.filepath}
            [pid] = running_pids()
            report = dataset.apply_model(model, label_field="served", num_workers=0)
        assert report.processed == len(files) and report.failed == 0
        for sample in dataset:
            ref = references[sample.filepath]
            assert sample["served_label"] == ref.label
            assert sample["served_confidence"] == pytest.approx(ref.confidence, abs=1e-5)
        assert running_pids() == []
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)                       # stopped (SIGTERM) and reaped
    finally:
        dataset.delete()


def test_a_typed_model_in_a_thread_validates_requests_with_its_schema():
    model = Repeater()
    with ModelServer(model, name="repeater", port=0, max_batch_size=4, max_wait_ms=60_000) as server:
        assert server.url.startswith("http://127.0.0.1:")
        with httpx.Client(base_url=server.url, timeout=60) as http:
            assert http.get("/readyz").json() == {"status": "ready", "model": "repeater"}
            requests = [{"text": "ab", "repeat": 2}] * 3 + [{"text": "boom", "repeat": 2}] + [{"text": "x"}] * 4
            with ThreadPoolExecutor(8) as pool:
                answers = list(pool.map(lambda body: http.post("/predict", json=body), requests))
            assert [r.json() for r in answers[:3]] == [{"text": "abab", "length": 4}] * 3
            assert answers[3].status_code == 500 and answers[3].json()["detail"] == "RuntimeError: boom is not a word"
            assert [r.json() for r in answers[4:]] == [{"text": "x", "length": 1}] * 4
            r = http.post("/predict", json={"text": "", "repeat": 9})
            assert r.status_code == 422
            assert {tuple(e["loc"]) for e in r.json()["errors"]} == {("text",), ("repeat",)}
            assert "field 'repeat'" in r.json()["detail"] and "Prompt" in r.json()["detail"]
            doc = http.get("/openapi.json").json()
            post = doc["paths"]["/predict"]["post"]
            assert post["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Prompt"}
            assert post["responses"]["200"]["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/Reply"
            assert doc["components"]["schemas"]["Prompt"]["properties"]["repeat"]["maximum"] == 4
    # stopped: the batcher is closed, the model left, no thread left
    assert server.batcher.closed
    assert not [t for t in threading.enumerate() if t.name.startswith(("modelzoo-batcher", "modelzoo-serve"))]
    assert all(len({a.repeat for a in batch}) == 1 for batch in model.batches)
    with pytest.raises(httpx.TransportError):
        httpx.get(server.url + "/readyz", timeout=5)


def test_serve_refuses_an_unknown_model_and_bad_settings(capsys, zoo_env):
    from modelzoo.cli import main

    assert main(["serve", "mobilenet-v2-imagenet", "--port", "0"]) == 1
    err = capsys.readouterr().err
    assert "Unknown zoo model 'mobilenet-v2-imagenet'" in err and "mobilenet-v2-imagenet-torch" in err
    assert main(["serve", "digits-cnn-torch", "--max-batch-size", "0"]) == 2
    assert "must be >= 1" in capsys.readouterr().err


def test_a_tungsten_model_is_served_with_its_options_validated_and_batches_option_pure():
    from tests.serve_models import tungsten_generator

    generator_cls, batches = tungsten_generator()
    model = generator_cls()
    bodies = [{"prompt": "x" * (i + 1), "width": [32, 64][i % 2]} for i in range(8)]
    with ModelServer(model, name="generator", port=0, max_batch_size=4, max_wait_ms=60_000) as server:
        with httpx.Client(base_url=server.url, timeout=60) as http, ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda body: http.post("/predict", json=body), bodies))
            refused = http.post("/predict", json={"prompt": "p", "width": 48})
            schema = http.get("/openapi.json").json()["components"]["schemas"]
    for body, r in zip(bodies, answers):
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["prompt_length"] == len(body["prompt"])
        image = model.response_schema.model_validate(out).image.to_pil_image()   # the JSON round-trips
        assert image.size == (body["width"], 32) and image.getpixel((0, 0)) == (len(body["prompt"]), 0, 0)
    assert refused.status_code == 422 and refused.json()["errors"][0]["loc"] == ["width"]
    assert "GenInput" in schema and schema["GenInput"]["properties"]["width"].get("default") == 32
    assert sum(len(b) for b in batches) == 8 and all(len(set(b)) == 1 and len(b) <= 4 for b in batches)
