"""``modelzoo serve`` reads only what it is given (issue #20, item 3, and its low findings).

Each finding of the review is replayed against a real server on loopback: in
this process (``ModelServer`` in a thread) for the single findings, and as a
``modelzoo serve`` process for the one test that throws everything at once
and for SIGTERM with a decode stuck in flight. Synchronised on the server's
own ``/readyz`` and ``/info`` (polled with deadlines) and on sockets being
closed, never on sleeps.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import queue
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List

import httpx
import numpy as np
import pydantic
import pytest
from PIL import Image

from modelzoo.errors import ConfigError
from modelzoo.serving.limits import Limits
from modelzoo.serving.server import ModelServer
from modelzoo.torch_image import TorchImageModel
from tests.images import write_photos
from tests.serve_models import CLASSIFIER, ByteCounter, Echo, Repeater, StuckReader
from tests.test_serve import DEADLINE_S, Served

NAME = "tiny-classifier"


def _poll(predicate, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _sha(path: str) -> Dict[str, Any]:
    data = open(path, "rb").read()
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _png(width: int, height: int) -> bytes:
    """A PNG of ``width x height`` one-bit pixels: a few KB of file, any number of pixels."""
    out = io.BytesIO()
    Image.new("1", (width, height)).save(out, "PNG")
    return out.getvalue()


def _recv_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _json_answer(raw: bytes) -> Any:
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), raw[:300]
    return int(head.split()[1]), json.loads(body)


@pytest.fixture
def files(tmp_path) -> Dict[str, str]:
    """An allowed folder with a photograph, a FIFO, a symlink out of it, and a folder beside it."""
    allowed = tmp_path / "allowed"
    [photo] = write_photos(str(allowed), ["coffee"])
    os.mkfifo(allowed / "fifo")
    os.symlink("/etc/hostname", allowed / "escape")
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.txt"
    secret.write_text("not for you")
    os.symlink(secret, allowed / "escape-to-sibling")
    return {"root": str(allowed), "photo": photo, "fifo": str(allowed / "fifo"), "escape": str(allowed / "escape"),
            "sibling": str(allowed / "escape-to-sibling"), "secret": str(secret)}


# -- path inputs -------------------------------------------------------------------------------

def test_paths_are_refused_unless_the_server_was_given_folders(files):
    with ModelServer(ByteCounter(), name="bytes", port=0) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        r = http.post("/predict", json={"path": files["photo"]})
        assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["path"]
        assert "--allow-paths" in r.json()["detail"]
        r = http.post("/predict", json={"path": "/etc/hostname"})  # what the review read with an echoing model
        assert r.status_code == 422
        data = open(files["photo"], "rb").read()
        r = http.post("/predict", json={"image": base64.b64encode(data).decode()})  # the image itself still works
        assert r.json() == _sha(files["photo"])
    with pytest.raises(ConfigError, match="list of the folders"):
        ModelServer(ByteCounter(), allow_paths=True)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="not an existing folder"):
        ModelServer(ByteCounter(), allow_paths=[files["photo"]])


def test_only_regular_files_under_the_allowed_folders_are_read(files):
    limits = Limits(max_file_bytes=1_000_000)
    with ModelServer(ByteCounter(), name="bytes", port=0, allow_paths=[files["root"], "/dev"], limits=limits) as server, \
            httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.post("/predict", json={"path": files["photo"]}).json() == _sha(files["photo"])
        refused = {
            files["escape"]: "outside the folders",              # a symlink pointing out of the folder
            files["sibling"]: "outside the folders",
            files["secret"]: "outside the folders",
            files["root"] + "/../outside/secret.txt": "outside the folders",
            files["fifo"]: "not a regular file",                  # would block the reader forever
            "/dev/zero": "not a regular file",                    # would be read without end
            files["root"]: "not a regular file",
            files["root"] + "/missing.jpg": "file not found",
        }
        for path, reason in refused.items():
            r = http.post("/predict", json={"path": path})
            assert r.status_code == 422, (path, r.text)
            assert reason in r.json()["detail"] and r.json()["errors"][0]["loc"] == ["path"], (path, r.text)
        # over the size limit: refused from its size, before a byte is read (a sparse 8 GB file)
        huge = os.path.join(files["root"], "huge.bin")
        with open(huge, "wb") as f:
            f.truncate(8 << 30)
        r = http.post("/predict", json={"path": huge})
        assert r.status_code == 413 and "8589934592 bytes" in r.json()["detail"] and "--max-file-bytes" in r.json()["detail"]


def test_a_model_that_opens_files_itself_gets_the_checked_real_path(files, tmp_path):
    link = os.path.join(files["root"], "link-to-photo.jpg")
    os.symlink(files["photo"], link)
    with ModelServer(Echo(), name="echo", port=0, allow_paths=[files["root"]]) as server, \
            httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.post("/predict", json={"path": link}).json() == os.path.realpath(files["photo"])
        assert http.post("/predict", json={"path": files["fifo"]}).status_code == 422
        assert http.post("/predict", json={"path": files["escape"]}).status_code == 422


# -- pixels, content types, JSON, errors ---------------------------------------------------------

@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # Pillow warns; the server refuses
def test_an_image_over_the_pixel_limit_is_refused_from_its_header():
    bomb = _png(13000, 13000)  # about 20 KB; 169 million pixels (Pillow itself only warns)
    assert len(bomb) < 100_000
    model = TorchImageModel(CLASSIFIER)
    with ModelServer(model, name=NAME, port=0) as server, httpx.Client(base_url=server.url, timeout=60) as http:
        r = http.post("/predict", content=bomb, headers={"Content-Type": "image/png"})
        assert r.status_code == 413 and "13000x13000" in r.json()["detail"] and "--max-pixels" in r.json()["detail"]
        r = http.post("/predict", json={"image": base64.b64encode(bomb).decode()})
        assert r.status_code == 413
        small = _png(64, 48)
        expected = model.predict(np.asarray(Image.open(io.BytesIO(small)).convert("RGB")))
        r = http.post("/predict", content=small, headers={"Content-Type": "image/png"})
        assert r.status_code == 200 and r.json()["label"] == expected.label
    # configurable, and applied to a model that decodes by itself too (bytes in)
    with ModelServer(ByteCounter(), name="bytes", port=0, limits=Limits(max_pixels=64 * 48 - 1)) as server, \
            httpx.Client(base_url=server.url, timeout=60) as http:
        r = http.post("/predict", content=_png(64, 48), headers={"Content-Type": "image/png"})
        assert r.status_code == 413 and "3072 pixels, over the limit of 3071" in r.json()["detail"]
        r = http.post("/predict", content=b"not an image", headers={"Content-Type": "application/octet-stream"})
        assert r.json() == {"bytes": 12, "sha256": hashlib.sha256(b"not an image").hexdigest()}


def test_a_body_needs_a_json_or_image_content_type():
    with ModelServer(Repeater(), name="repeater", port=0) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        body = json.dumps({"text": "ab", "repeat": 2}).encode()
        # what a web page can send without a CORS preflight: no content type, text/plain, a form
        for ctype in (None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
            headers = {} if ctype is None else {"Content-Type": ctype}
            r = http.post("/predict", content=body, headers=headers)
            assert r.status_code == 415, (ctype, r.text)
            assert "application/json" in r.json()["detail"]
        assert http.post("/predict", content=body, headers={"Content-Type": "application/json"}).json() == \
            {"text": "abab", "length": 4}
        assert http.post("/predict", content=body, headers={"Content-Type": "application/vnd.x+json"}).status_code == 200


def test_deeply_nested_json_and_every_other_error_is_a_json_answer():
    nested = b"[" * 100_000 + b"]" * 100_000
    with ModelServer(Repeater(), name="repeater", port=0) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        r = http.post("/predict", content=nested, headers={"Content-Type": "application/json"})
        assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body"] and "nested" in r.json()["detail"]
        r = http.post("/predict", content=b'{"text": ' + b"[" * 100_000, headers={"Content-Type": "application/json"})
        assert r.status_code == 422
        assert http.get("/nowhere").json() == {"detail": "Not Found"}
        assert http.get("/predict").status_code == 405 and "detail" in http.get("/predict").json()
        host, port = server.url.rsplit(":", 1)
        with socket.create_connection((host[len("http://"):], int(port)), timeout=30) as sock:
            sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            status, answer = _json_answer(_recv_all(sock))
        assert status == 400 and "not a valid HTTP/1.1 request" in answer["detail"]
    with ModelServer(ByteCounter(), name="bytes", port=0) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        r = http.post("/predict", content=nested, headers={"Content-Type": "application/json"})
        assert r.status_code == 422


def test_a_loopback_server_answers_only_its_own_host_names():
    """A DNS-rebinding page (its own name, resolved to 127.0.0.1) is same-origin for the browser:
    it can send JSON, but its Host header still names it."""
    with ModelServer(Repeater(), name="repeater", port=0) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        port = server.port
        for host in (f"attacker.example:{port}", "attacker.example", f"192.168.1.5:{port}"):
            r = http.post("/predict", json={"text": "a"}, headers={"Host": host})
            assert r.status_code == 400 and "Host header" in r.json()["detail"], host
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}"):
            assert http.post("/predict", json={"text": "a"}, headers={"Host": host}).status_code == 200, host


class Numbers(pydantic.BaseModel):
    x: int


def test_a_schema_violation_is_422_for_a_bundle_too():
    from modelzoo.bundles import ModelBundle

    bundle = ModelBundle("doubler", model=2, load_predict_fn=lambda model: (lambda x: model * x),
                         request_schema=Numbers, input="request")
    with ModelServer(bundle.to_model(), name="doubler", port=0) as server, \
            httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.post("/predict", json={"x": 21}).json() == 42
        r = http.post("/predict", json={"x": "many"})
        assert r.status_code == 422, r.text
        assert "field 'x'" in r.json()["detail"] and "Numbers" in r.json()["detail"]


# -- time: slow clients, slow decodes ----------------------------------------------------------

def _connect(url: str) -> socket.socket:
    host, port = url[len("http://"):].rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=DEADLINE_S)


def test_slow_clients_are_timed_out_with_a_json_408():
    limits = Limits(header_timeout_s=0.5, body_timeout_s=0.5)
    with ModelServer(Repeater(), name="repeater", port=0, limits=limits) as server:
        half_head = _connect(server.url)
        half_head.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty")
        half_body = _connect(server.url)
        half_body.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                          b"Content-Length: 1000\r\n\r\n{\"text\": ")
        silent = _connect(server.url)
        try:
            status, answer = _json_answer(_recv_all(half_head))   # returns once the server closes it
            assert status == 408 and "--header-timeout-s" in answer["detail"]
            status, answer = _json_answer(_recv_all(half_body))
            assert status == 408 and "--body-timeout-s" in answer["detail"]
            assert _recv_all(silent) == b""                        # connected, never sent a byte: closed
        finally:
            for sock in (half_head, half_body, silent):
                sock.close()
        # a client that keeps up is answered, and keep-alive still works
        with httpx.Client(base_url=server.url, timeout=30) as http:
            for _ in range(2):
                assert http.post("/predict", json={"text": "a"}).json() == {"text": "a", "length": 1}


def _unblock(fifo: str) -> None:
    """Lets a reader stuck opening ``fifo`` go (it reads one byte)."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # no reader left
        return
    try:
        os.write(fd, b"x")
    finally:
        os.close(fd)


def test_a_stuck_decode_holds_neither_readiness_nor_other_requests(files, tmp_path, monkeypatch):
    gate = str(tmp_path / "gate")
    os.mkfifo(gate)
    monkeypatch.setenv("MODELZOO_TEST_GATE", gate)
    limits = Limits(decode_workers=2, decode_timeout_s=1.0)
    answers: "queue.Queue[httpx.Response]" = queue.Queue()
    with ModelServer(StuckReader(), name="stuck", port=0, allow_paths=[files["root"]], limits=limits) as server, \
            httpx.Client(base_url=server.url, timeout=30) as http:
        try:
            threading.Thread(target=lambda: answers.put(http.post("/predict", json={"path": files["photo"]}))).start()
            _poll(lambda: http.get("/info").json()["decoding"] == 1, "the decode to be stuck")
            assert http.get("/readyz").json()["status"] == "ready"
            r = http.post("/predict", content=b"abc", headers={"Content-Type": "image/png"})  # another request
            assert r.status_code == 422 and "path to an image file" in r.json()["detail"]
            stuck = answers.get(timeout=DEADLINE_S)   # the stuck one: 503 after decode_timeout_s
            assert stuck.status_code == 503 and "--decode-timeout-s" in stuck.json()["detail"]
        finally:
            _unblock(gate)


def _manifest(tmp_path, name: str, model_type: str, config: Any = None) -> str:
    config = config if config is not None else {}
    path = tmp_path / f"{name}-manifest.json"
    entry = {
        "name": name, "version": "1.0", "description": "a test model", "source": "tests/serve_models.py",
        "license": "Apache-2.0", "size_bytes": 0, "tags": ["test"],
        "requirements": {"packages": [], "cpu": True, "gpu": True}, "weights": None, "date_added": "2026-01-01",
        "training_data": "none", "model": {"type": model_type, "config": config},
    }
    path.write_text(json.dumps({"manifest_version": 1, "models": [entry]}))
    return str(path)


def _env(manifest: str, tmp_path, **extra: str) -> Dict[str, str]:
    from tests.processes import child_env

    return child_env(MODELZOO_MANIFEST_PATHS=manifest, MODELZOO_HOME=str(tmp_path / "home"), PORT=None, **extra)


def test_sigterm_stops_the_server_at_once_with_a_decode_stuck_in_flight(files, tmp_path):
    gate = str(tmp_path / "gate")
    os.mkfifo(gate)
    env = _env(_manifest(tmp_path, "stuck", "tests.serve_models.StuckReader"), tmp_path, MODELZOO_TEST_GATE=gate)
    server = Served(["stuck", "--port", "0", "--allow-paths", files["root"]], env)
    answers: "queue.Queue[Any]" = queue.Queue()
    try:
        def post() -> None:
            try:
                answers.put(httpx.post(server.url + "/predict", json={"path": files["photo"]}, timeout=DEADLINE_S))
            except httpx.HTTPError as e:
                answers.put(e)

        threading.Thread(target=post, daemon=True).start()
        _poll(lambda: server.info()["decoding"] == 1, "the decode to be stuck")
        server.proc.send_signal(signal.SIGTERM)
        # before: the FIFO held the process until it was written to, whatever the signal
        assert server.proc.wait(timeout=DEADLINE_S) == 0
        answer = answers.get(timeout=DEADLINE_S)
        assert isinstance(answer, httpx.Response) and answer.status_code == 503, answer
        assert "stopping" in answer.json()["detail"]
        assert "stopped (SIGTERM)" in "".join(server.output)
    finally:
        server.kill()
        _unblock(gate)


# -- everything at once --------------------------------------------------------------------------

def _slow_clients(url: str, n: int) -> List[socket.socket]:
    """``n`` connections that send half a request and stall (half of them in the head, half in the body)."""
    socks = []
    for i in range(n):
        sock = _connect(url)
        if i % 2:
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/js")
        else:
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100000\r\n\r\n{\"path\": ")
        socks.append(sock)
    return socks


@pytest.mark.slow
def test_the_server_survives_fifos_dev_zero_a_pixel_bomb_nested_json_and_slow_clients(files, tmp_path):
    fifos = []
    for i in range(42):
        fifo = os.path.join(files["root"], f"fifo-{i}")
        os.mkfifo(fifo)
        fifos.append(fifo)
    expected = TorchImageModel(CLASSIFIER).predict(np.asarray(Image.open(files["photo"]).convert("RGB")))
    env = _env(_manifest(tmp_path, NAME, "tests.serve_models.PickyClassifier", CLASSIFIER), tmp_path)
    # the slow clients' head deadline is long: they are all still stalled while the rest runs
    server = Served([NAME, "--port", "0", "--allow-paths", files["root"], "--header-timeout-s", "600",
                     "--body-timeout-s", "600"], env)
    slow: List[socket.socket] = []
    try:
        # once before, so that the model's first call (torch's warm-up) is not what the 5 s below measure
        assert httpx.post(server.url + "/predict", json={"path": files["photo"]}, timeout=DEADLINE_S).status_code == 200
        slow = _slow_clients(server.url, 50)
        attacks: List[Dict[str, Any]] = [{"json": {"path": fifo}} for fifo in fifos] + [
            {"json": {"path": "/dev/zero"}},
            {"content": _png(13000, 13000), "headers": {"Content-Type": "image/png"}},
            {"content": b"[" * 200_000 + b"]" * 200_000, "headers": {"Content-Type": "application/json"}},
        ]
        with httpx.Client(base_url=server.url, timeout=DEADLINE_S,
                          limits=httpx.Limits(max_connections=len(attacks) + 2)) as http, \
                ThreadPoolExecutor(len(attacks)) as pool:
            pending = [pool.submit(http.post, "/predict", **kw) for kw in attacks]
            assert httpx.get(server.url + "/readyz", timeout=5).json()["status"] == "ready"
            valid = httpx.post(server.url + "/predict", json={"path": files["photo"]}, timeout=5)
            assert valid.status_code == 200, valid.text
            assert valid.json()["label"] == expected.label
            assert valid.json()["confidence"] == pytest.approx(expected.confidence, abs=1e-5)
            answers = [f.result() for f in pending]
        statuses = [r.status_code for r in answers]
        assert statuses == [422] * 42 + [422, 413, 422], [r.text for r in answers]
        assert all("not a regular file" in r.json()["detail"] for r in answers[:42])
        assert "outside the folders" in answers[42].json()["detail"]
        assert "13000x13000" in answers[43].json()["detail"]
        assert "nested" in answers[44].json()["detail"]
        # the slow clients are all still connected (nothing was answered to them), and the server still answers
        for sock in slow:
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                sock.recv(1)
        assert httpx.post(server.url + "/predict", json={"path": files["photo"]}, timeout=5).status_code == 200
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=DEADLINE_S) == 0
    finally:
        for sock in slow:
            sock.close()
        server.kill()


# -- imported files (item 5): COCO -----------------------------------------------------------------

def _coco(tmp_path, n_images: int = 2) -> Dict[str, Any]:
    """``n_images`` real photographs in ``tmp_path/images`` and a COCO dict with a box on each."""
    images_dir = tmp_path / "images"
    paths = write_photos(str(images_dir), ["astronaut", "chelsea", "coffee", "rocket"][:n_images])
    images, anns = [], []
    for i, path in enumerate(paths, start=1):
        w, h = Image.open(path).size
        images.append({"id": i, "file_name": os.path.basename(path), "width": w, "height": h})
        anns.append({"id": 100 + i, "image_id": i, "category_id": 1, "bbox": [1, 2, 30, 20], "iscrowd": 0})
    return {"dir": str(images_dir), "data": {"images": images, "annotations": anns,
                                              "categories": [{"id": 1, "name": "thing"}]}}


def _write(tmp_path, data: Dict[str, Any], name: str = "instances.json") -> str:
    path = str(tmp_path / name)
    with open(path, "w") as f:
        json.dump(data, f)
    return path


def test_coco_file_names_stay_inside_the_images_folder(tmp_path):
    import modelzoo as mz
    from modelzoo.errors import FormatError

    coco = _coco(tmp_path)
    for escape in ("../../../../etc/passwd", "/etc/passwd", "sub/../../outside.jpg"):
        data = json.loads(json.dumps(coco["data"]))
        data["images"].append({"id": 9, "file_name": escape, "width": 10, "height": 10})
        data["annotations"].append({"id": 900, "image_id": 9, "category_id": 1, "bbox": [0, 0, 1, 1]})
        path = _write(tmp_path, data)
        with pytest.raises(FormatError) as e:
            mz.Dataset.from_coco(path, coco["dir"], name="coco-escape", overwrite=True)
        assert (e.value.path, e.value.section, e.value.index, e.value.key) == (path, "images", 2, "file_name")
        assert "instances.json: images[2]['file_name']" in str(e.value) and "skip_unknown=True" in str(e.value)
        assert "coco-escape" not in mz.list_datasets()
    ds = mz.Dataset.from_coco(path, coco["dir"], name="coco-escape", skip_unknown=True, overwrite=True)
    try:
        assert ds.coco_report.skipped_outside_images_dir == 1 and ds.coco_report.annotations == 2
        assert "1 images outside the images folder skipped" in str(ds.coco_report)
        assert sorted(ds.values("filepath")) == sorted(os.path.join(coco["dir"], im["file_name"])
                                                       for im in coco["data"]["images"])
    finally:
        ds.delete()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools' own, under numpy 2
def test_coco_masks_must_match_their_images_size_before_decoding(tmp_path):
    import pycocotools.mask as mu

    import modelzoo as mz
    from modelzoo.errors import FormatError

    coco = _coco(tmp_path)
    image = coco["data"]["images"][0]
    w, h = image["width"], image["height"]
    # the review's 300-byte RLE declaring 30000 x 30000 pixels (1.0 GB once decoded)
    bomb = {"size": [30000, 30000], "counts": mu.encode(np.asfortranarray(np.ones((1, 1), np.uint8)))["counts"].decode()}
    good = mu.encode(np.asfortranarray(np.pad(np.ones((10, 10), np.uint8), ((2, h - 12), (1, w - 11)))))
    cases = {
        "the RLE's size [30000, 30000]": bomb,
        f"the RLE's runs cover {(h + 1) * w} pixels": {
            "size": [h, w], "counts": [0, (h + 1) * w]},                      # writes past pycocotools' buffer
        "outside COCO's alphabet": {"size": [h, w], "counts": "~~~~"},
        "far outside": [[0, 0, 1e9, 0, 1e9, 1e9]],                          # time and memory in its length
        "at least 3 points": [[1, 2, 30, 2]],                                # pycocotools reads 4 numbers as a box
        "not a finite number": [[0, 0, 10, float("nan"), 10, 10]],
    }
    for reason, segmentation in cases.items():
        data = json.loads(json.dumps(coco["data"]))
        data["annotations"][0]["segmentation"] = segmentation
        with pytest.raises(FormatError) as e:
            mz.Dataset.from_coco(_write(tmp_path, data), coco["dir"], name="coco-masks", overwrite=True)
        assert "annotations[0]['segmentation']" in str(e.value) and reason in str(e.value), str(e.value)
    # what does match its image is decoded as pycocotools decodes it
    data = json.loads(json.dumps(coco["data"]))
    data["annotations"][0]["segmentation"] = {"size": [h, w], "counts": good["counts"].decode()}
    data["annotations"][0]["bbox"] = [1, 2, 10, 10]
    data["annotations"] = data["annotations"][:1]
    ds = mz.Dataset.from_coco(_write(tmp_path, data), coco["dir"], name="coco-masks", overwrite=True)
    try:
        mask = ds.first().ground_truth.detections[0].mask
        np.testing.assert_array_equal(mask, mu.decode(good)[2:12, 1:11].astype(bool))
    finally:
        ds.delete()


@pytest.mark.parametrize("section, index, key, change, reason", [
    ("images", 0, "width", lambda d: d["images"][0].pop("width"), "missing"),                   # was KeyError
    ("images", 1, "height", lambda d: d["images"][1].update(height=0), ">= 1"),                 # was ZeroDivisionError
    ("images", 0, "file_name", lambda d: d["images"][0].update(file_name=None), "a file name"),
    ("images", 1, "id", lambda d: d["images"][1].update(id=1), "used by another image"),
    ("categories", 0, "name", lambda d: d["categories"][0].pop("name"), "missing"),           # was KeyError
    ("annotations", 1, "bbox", lambda d: d["annotations"][1].update(bbox=[1, 2, 3]), "4 finite numbers"),
    ("annotations", 0, "bbox", lambda d: d["annotations"][0].update(bbox=["a", 0, 1, 1]), "4 finite numbers"),
    ("annotations", 0, "keypoints", lambda d: d["annotations"][0].update(keypoints=[1, 2, 2, 4]), "in threes"),
    ("annotations", 1, "image_id", lambda d: d["annotations"][1].pop("image_id"), "missing"),
    ("annotations", 0, "score", lambda d: d["annotations"][0].update(score="high"), "a number"),
])
def test_malformed_coco_entries_name_the_file_the_entry_and_the_key(tmp_path, section, index, key, change, reason):
    import modelzoo as mz
    from modelzoo.errors import FormatError

    coco = _coco(tmp_path)
    data = coco["data"]
    change(data)
    path = _write(tmp_path, data)
    with pytest.raises(FormatError) as e:
        mz.Dataset.from_coco(path, coco["dir"], name="coco-malformed", overwrite=True)
    assert (e.value.path, e.value.section, e.value.index, e.value.key) == (path, section, index, key)
    assert str(e.value).startswith(f"{path}: {section}[{index}]['{key}']: ") and reason in str(e.value)
    assert isinstance(e.value, mz.DatasetError) and "coco-malformed" not in mz.list_datasets()


def test_a_coco_import_is_whole_or_nothing(tmp_path):
    import modelzoo as mz
    from modelzoo.errors import FormatError
    from modelzoo.formats import import_coco

    coco = _coco(tmp_path)
    ds = mz.Dataset("coco-whole", overwrite=True)
    try:
        ds.add_samples([mz.Sample(filepath=os.path.join(coco["dir"], "before.jpg"))])
        ds.info["mine"] = 1
        ds.save_info()
        # the review's 400,000 categories: refused before a sample is written (were: samples, then a failure)
        data = json.loads(json.dumps(coco["data"]))
        data["categories"] += [{"id": i, "name": f"category number {i}", "supercategory": "many"}
                               for i in range(2, 400_002)]
        with pytest.raises(FormatError, match="400001 categories take .* bytes") as e:
            import_coco(ds, _write(tmp_path, data), coco["dir"])
        assert e.value.section == "categories"
        assert len(ds) == 1 and mz.load_dataset("coco-whole").info == {"mine": 1}
        # a failure while writing (an image whose sample is over the database's 16 MB document limit,
        # after a first batch of 500 was written): what was added is removed again
        data = json.loads(json.dumps(coco["data"]))
        data["images"] = [dict(data["images"][0], id=i, file_name="astronaut.jpg") for i in range(1, 502)]
        data["annotations"] = [{"id": "x" * 17_000_000, "image_id": 501, "category_id": 1, "bbox": [1, 2, 3, 4]}]
        with pytest.raises(Exception, match="(?i)too large|BSONObj size"):
            import_coco(ds, _write(tmp_path, data), coco["dir"])
        assert len(ds) == 1 and ds.values("filepath") == [os.path.join(coco["dir"], "before.jpg")]
        assert mz.load_dataset("coco-whole").info == {"mine": 1} and "coco_categories" not in ds.info
    finally:
        ds.delete()
