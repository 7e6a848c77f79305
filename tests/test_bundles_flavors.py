"""Bundle flavors that leave the process or the dataset: the Nucleus detector of the Launch
docs over real photographs (and its export, read back by the real Nucleus client), runnable
command bundles (a stdlib HTTP server written here), and Triton-enhanced ones."""

import json
import os
import sys
import textwrap
import time

import numpy as np
import pytest

import modelzoo as mz
from modelzoo.bundles import BundleConfigError, BundleServerError, LaunchClient, export_nucleus
from modelzoo.bundles.runnable import running_pids
from tests.images import write_good_images


@pytest.fixture
def photos(tmp_path_factory, request):
    paths = write_good_images(str(tmp_path_factory.mktemp("flavor-photos")), n=4, size=(160, 120))
    ds = mz.Dataset(f"flavors-{request.node.name}"[:60], overwrite=True)
    ds.add_images(paths)
    yield ds
    ds.delete()


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purpose
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _wait_dead(pid, within=10.0):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return True
        time.sleep(0.05)
    return False


# -- Nucleus ---------------------------------------------------------------------------------------
def _detector():
    import torch
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, num_classes=5, box_score_thresh=0.0, box_detections_per_img=8
    )
    return model.eval()


def test_nucleus_detector_bundle_from_the_docs_over_photographs(bundle_home, photos, tmp_path):
    import torch
    import torchvision.transforms as T
    from PIL import Image

    detector = _detector()

    # The docs' object-detection bundle (its elided lines filled in), around a seeded detector.
    def load_model_fn():
        return detector

    def load_predict_fn(model):
        device = torch.device("cpu")

        def preprocess(img_bytes):
            import io
            img = Image.open(io.BytesIO(img_bytes)).convert("RGB")
            return T.ToTensor()(img)

        def predict(img_bytes):
            tensor = preprocess(img_bytes)
            with torch.no_grad():
                model_output = model([tensor.to(device)])
            return postprocess(model_output)

        def postprocess(model_output):
            raw_boxes = model_output[0]["boxes"].cpu().numpy()  # in x1, y1, x2, y2 format
            raw_labels = model_output[0]["labels"].cpu().numpy()
            raw_scores = model_output[0]["scores"].cpu().numpy()
            box_objects = []
            for box, label, score in zip(raw_boxes, raw_labels, raw_scores):
                box_objects.append({
                    "geometry": {
                        "x": float(box[0]),
                        "y": float(box[1]),
                        "width": float(box[2] - box[0]),
                        "height": float(box[3] - box[1]),
                    },
                    "type": "box",
                    "label": str(label),
                    "confidence": float(score),
                })
            return box_objects

        return predict

    client = LaunchClient()
    bundle_id = client.create_model_bundle_from_callable_v2(
        model_bundle_name="nucleus-detector", load_model_fn=load_model_fn, load_predict_fn=load_predict_fn,
        request_schema=None, response_schema=None, pytorch_image_tag="1.7.1-cuda11.0-cudnn8-runtime",
    ).model_bundle_id
    model = client.get_model_bundle_v2(bundle_id).to_model(output="detections")  # input: the file's bytes
    report = photos.apply_model(model, label_field="boxes", num_workers=1)
    assert report.processed == 4 and report.failed == 0
    total = 0
    for sample in photos:
        img = Image.open(sample.filepath).convert("RGB")
        w, h = img.size
        with torch.no_grad():
            out = detector([T.ToTensor()(img)])[0]
        expected = [
            (str(int(label)), [x1 / w, y1 / h, (x2 - x1) / w, (y2 - y1) / h], float(score))
            for (x1, y1, x2, y2), label, score in zip(out["boxes"].tolist(), out["labels"], out["scores"])
        ]
        got = [(d.label, d.bounding_box, d.confidence) for d in sample.boxes.detections]
        assert [g[0] for g in got] == [e[0] for e in expected]
        np.testing.assert_allclose([g[1] for g in got], [e[1] for e in expected], atol=1e-6)
        np.testing.assert_allclose([g[2] for g in got], [e[2] for e in expected], atol=1e-6)
        total += len(got)
    assert total > 0

    # ... and back: one JSON line per box, loadable by the real Nucleus client
    from nucleus.prediction import BoxPrediction

    path = str(tmp_path / "boxes.jsonl")
    assert photos.export_nucleus(path, "boxes") == total
    view = photos.limit(1)
    assert view.export_nucleus(str(tmp_path / "one.jsonl"), "boxes") == len(photos.first().boxes.detections)
    records = [json.loads(line) for line in open(path)]
    first = photos.first()
    pred = BoxPrediction.from_json(records[0])
    assert pred.reference_id == os.path.basename(first.filepath)
    d0 = first.boxes.detections[0]
    assert pred.label == d0.label and pred.confidence == pytest.approx(d0.confidence)
    assert pred.x == pytest.approx(d0.bounding_box[0] * first.metadata.width)
    assert pred.width == pytest.approx(d0.bounding_box[2] * first.metadata.width)
    for record in records:
        BoxPrediction.from_json(record)  # every record loads
    # the reason for reference_id: without it the client refuses the box
    bare = dict(records[0])
    del bare["reference_id"]
    with pytest.raises(Exception, match="reference_id|dataset_item_id"):
        BoxPrediction.from_json(bare)


def test_export_carries_class_pdf_from_stored_logits(bundle_home, photos, tmp_path):
    from nucleus.prediction import BoxPrediction

    det = mz.Detection(label="cat", bounding_box=[0.1, 0.2, 0.5, 0.25], confidence=0.9,
                       attributes={"logits": [2.0, 0.0]})
    sample = photos.first()
    sample.add_labels(mz.Detections(detections=[det]), "gt")
    sample.save()
    path = str(tmp_path / "gt.jsonl")
    assert export_nucleus(photos, path, "gt", classes=["cat", "dog"], reference_id="id") == 1
    record = json.loads(open(path).read())
    pdf = BoxPrediction.from_json(record).class_pdf
    assert pdf["cat"] == pytest.approx(np.exp(2) / (np.exp(2) + 1)) and sum(pdf.values()) == pytest.approx(1)
    assert record["reference_id"] == str(sample.id)
    assert record["geometry"] == {"x": 16.0, "y": 24.0, "width": 80.0, "height": 30.0}  # 160 x 120 pixels


# -- runnable commands -------------------------------------------------------------------------------
SERVER = textwrap.dedent('''
    import json, os, sys
    from http.server import BaseHTTPRequestHandler, HTTPServer

    mode = os.environ.get("MODE", "ok")
    open(os.environ["PID_FILE"], "w").write(str(os.getpid()))
    sys.stderr.write("server booting in mode " + mode + "\\n"); sys.stderr.flush()
    if mode == "exit":
        sys.stderr.write("cannot load weights: boom\\n")
        sys.exit(3)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            ok = self.path == "/readyz" and mode == "ok"
            self.send_response(200 if ok else 503)
            self.end_headers()

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if body["filepath"].endswith(".png"):
                self.send_response(500); self.end_headers(); self.wfile.write(b"no png here"); return
            out = json.dumps({"n_bytes": os.path.getsize(body["filepath"]), "greeting": os.environ["TEST_KEY"]})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(out.encode())

    HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
''')


def _runnable(client, tmp_path, name, mode, **kw):
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    pid_file = tmp_path / f"{name}.pid"
    params = dict(
        model_bundle_name=name, request_schema=None, response_schema=None, repository="my-repo", tag="v1",
        command=[sys.executable, str(script), "$PORT"],
        env={"TEST_KEY": "test_value", "MODE": mode, "PID_FILE": str(pid_file)},
        readiness_initial_delay_seconds=0, readiness_timeout_seconds=20 if mode == "ok" else 1.5,
        input_fields={"filepath": "filepath"},
    )
    params.update(kw)
    bundle_id = client.create_model_bundle_from_runnable_image_v2(**params).model_bundle_id
    return client.get_model_bundle_v2(bundle_id), pid_file


def test_runnable_command_bundle_applied_to_a_dataset(bundle_home, photos, tmp_path):
    bundle, pid_file = _runnable(LaunchClient(), tmp_path, "http-sizer", "ok")
    assert bundle.flavor.repository == "my-repo" and bundle.flavor.env["TEST_KEY"] == "test_value"
    report = photos.apply_model(bundle.to_model(), label_field="remote", num_workers=0)
    pid = int(pid_file.read_text())
    assert _wait_dead(pid), f"server {pid} still running after apply_model"
    assert pid not in running_pids()
    pngs = [s for s in photos if s.filepath.endswith(".png")]
    assert report.failed == len(pngs) == 2 and "answered 500: no png here" in report.failures[0].message
    for sample in photos:
        if not sample.filepath.endswith(".png"):
            assert sample["remote_n_bytes"] == os.path.getsize(sample.filepath)
            assert sample["remote_greeting"] == "test_value"


def test_runnable_that_never_gets_ready_fails_with_its_stderr(bundle_home, tmp_path):
    bundle, pid_file = _runnable(LaunchClient(), tmp_path, "never-ready", "never")
    t0 = time.monotonic()
    with pytest.raises(BundleServerError) as e:
        with bundle.to_model():
            pass
    assert 1.4 < time.monotonic() - t0 < 15
    assert "did not answer GET /readyz" in str(e.value) and "server booting in mode never" in str(e.value)
    assert _wait_dead(int(pid_file.read_text()))
    assert running_pids() == []


def test_runnable_that_exits_reports_its_code_and_stderr(bundle_home, tmp_path):
    bundle, pid_file = _runnable(LaunchClient(), tmp_path, "exits", "exit")
    with pytest.raises(BundleServerError) as e:
        bundle.to_model().predict({"filepath": "x.jpg"})
    assert e.value.returncode == 3 and "exited with code 3" in str(e.value)
    assert "cannot load weights: boom" in e.value.stderr_tail
    assert _wait_dead(int(pid_file.read_text()))


# -- Triton-enhanced ---------------------------------------------------------------------------------
TRITON_PARAMS = dict(
    triton_model_repository="s3://bucket/models", triton_model_replicas={"resnet": "2"}, triton_num_cpu=4.0,
    triton_commit_tag="23.05", triton_storage="10Gi", triton_memory="8Gi", triton_readiness_initial_delay_seconds=0,
)


def test_triton_bundle_records_its_fields_and_needs_tritonserver(bundle_home, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    client = LaunchClient()
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    bundle_id = client.create_model_bundle_from_triton_enhanced_runnable_image_v2(
        model_bundle_name="triton", request_schema=None, response_schema=None, repository="r", tag="t",
        command=[sys.executable, str(script), "$PORT"], env={}, readiness_initial_delay_seconds=0, **TRITON_PARAMS,
    ).model_bundle_id
    flavor = client.get_model_bundle_v2(bundle_id).flavor
    for key, value in TRITON_PARAMS.items():
        assert getattr(flavor, key) == value
    with pytest.raises(BundleConfigError, match="'tritonserver' on PATH"):
        with client.get_model_bundle_v2(bundle_id).to_model():
            pass


def test_triton_bundle_starts_tritonserver_beside_the_command(bundle_home, tmp_path, monkeypatch):
    """A stand-in ``tritonserver`` (a stdlib server answering /v2/health/ready): the real one is not here."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "tritonserver"
    fake.write_text(f"#!{sys.executable}\n" + textwrap.dedent('''
        import os, sys
        from http.server import BaseHTTPRequestHandler, HTTPServer
        port = int([a for a in sys.argv if a.startswith("--http-port=")][0].split("=")[1])
        open(os.environ["TRITON_PID_FILE"], "w").write(str(os.getpid()))
        class H(BaseHTTPRequestHandler):
            def log_message(self, *a): pass
            def do_GET(self):
                self.send_response(200 if self.path == "/v2/health/ready" else 404); self.end_headers()
        HTTPServer(("127.0.0.1", port), H).serve_forever()
    '''))
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("TRITON_PID_FILE", str(tmp_path / "triton.pid"))
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    pid_file = tmp_path / "cmd.pid"
    client = LaunchClient()
    bundle_id = client.create_model_bundle_from_triton_enhanced_runnable_image_v2(
        model_bundle_name="triton-ok", request_schema=None, response_schema=None, repository="r", tag="t",
        command=[sys.executable, str(script), "$PORT"],
        env={"MODE": "ok", "PID_FILE": str(pid_file), "TEST_KEY": "k"}, readiness_initial_delay_seconds=0,
        readiness_timeout_seconds=20, input_fields={"filepath": "filepath"}, **TRITON_PARAMS,
    ).model_bundle_id
    jpg = write_good_images(str(tmp_path / "imgs"), n=1)[0]
    with client.get_model_bundle_v2(bundle_id).to_model() as model:
        assert model.predict({"filepath": jpg})["n_bytes"] == os.path.getsize(jpg)
        triton_pid = int((tmp_path / "triton.pid").read_text())
        assert _pid_alive(triton_pid)
    assert _wait_dead(triton_pid) and _wait_dead(int(pid_file.read_text()))


def test_detection_to_nucleus_with_reference_id_loads_in_the_nucleus_client():
    from nucleus.prediction import BoxPrediction

    det = mz.Detection(label="cat", bounding_box=[0.1, 0.2, 0.5, 0.25], confidence=0.5)
    pred = BoxPrediction.from_json(det.to_nucleus(200, 100, reference_id="cat.jpg"))
    assert (pred.reference_id, pred.x, pred.y, pred.width, pred.height) == ("cat.jpg", 20.0, 20.0, 100.0, 25.0)
