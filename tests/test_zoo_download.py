"""Weights downloads from a real HTTP server on 127.0.0.1: resume after an
interrupted transfer, checksum mismatch, 404, offline and unreachable errors,
file:// sources, and the atomic rename into the cache."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import socket
import threading
from typing import Dict, List, Optional

import pytest
import torch

from modelzoo import zoo
from modelzoo.errors import ChecksumError, DownloadError
from modelzoo.zoo import weights
from modelzoo.zoo.nets import digits_cnn


class _Server:
    """Serves ``files`` with Range support; ``cut_after[path] = n`` makes the next
    full response for ``path`` stop after ``n`` bytes (a dropped connection)."""

    def __init__(self) -> None:
        self.files: Dict[str, bytes] = {}
        self.cut_after: Dict[str, int] = {}
        self.requests: List[Dict[str, Optional[str]]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                server.requests.append({"path": self.path, "range": self.headers.get("Range")})
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404, "Not Found")
                    return
                start = 0
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes="):
                    start = int(rng[len("bytes="):].split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                cut = server.cut_after.pop(self.path, None)
                if cut is not None:
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.close()


pytestmark = pytest.mark.usefixtures("zoo_env")


@pytest.fixture(scope="module")
def weights_bytes() -> bytes:
    torch.manual_seed(0)
    buf = io.BytesIO()
    torch.save(digits_cnn().state_dict(), buf)
    data = buf.getvalue()
    assert len(data) > 50_000  # several 1 MiB-or-less reads: enough to cut in the middle
    return data


CONFIG = {
    "entrypoint_fcn": "modelzoo.zoo.nets.digits_cnn",
    "output_processor_cls": "ClassifierOutputProcessor",
    "classes": [str(i) for i in range(10)],
    "image_size": 8,
    "optimize": False,
}


def _register(name: str, url: str, data: bytes, sha: Optional[str] = None) -> zoo.ZooModelInfo:
    return zoo.register_zoo_model(
        name, CONFIG, size_bytes=len(data),
        weights={"url": url, "sha256": sha or hashlib.sha256(data).hexdigest(), "filename": f"{name}.pth"},
    )


def test_download_verifies_and_renames_atomically(server, weights_bytes):
    server.files["/w/ok.pth"] = weights_bytes
    info = _register("dl-ok", server.url("/w/ok.pth"), weights_bytes)
    assert not zoo.is_zoo_model_downloaded("dl-ok")
    path = zoo.download_zoo_model("dl-ok", progress=False)
    assert path == weights.cache_path(info) and path.startswith(os.environ[zoo.ENV_HOME])
    assert open(path, "rb").read() == weights_bytes
    assert not os.path.exists(path + ".part")
    assert zoo.is_zoo_model_downloaded("dl-ok")
    model = zoo.load_zoo_model("dl-ok")
    assert model.config.weights_path == path
    assert len(server.requests) == 1  # loading did not download again
    assert zoo.delete_zoo_model("dl-ok") and not os.path.exists(path)
    assert not zoo.delete_zoo_model("dl-ok")


def test_interrupted_transfer_resumes_with_range(server, weights_bytes):
    server.files["/w/flaky.pth"] = weights_bytes
    server.cut_after["/w/flaky.pth"] = 20_000
    _register("dl-flaky", server.url("/w/flaky.pth"), weights_bytes)
    path = zoo.download_zoo_model("dl-flaky", progress=False)
    assert open(path, "rb").read() == weights_bytes
    assert [r["range"] for r in server.requests] == [None, "bytes=20000-"]


def test_interrupted_transfer_is_kept_and_resumed_on_the_next_call(server, weights_bytes, monkeypatch):
    server.files["/w/flaky2.pth"] = weights_bytes
    server.cut_after["/w/flaky2.pth"] = 30_000
    info = _register("dl-flaky2", server.url("/w/flaky2.pth"), weights_bytes)
    with pytest.raises(DownloadError) as e:
        weights.download_weights(info, progress=False, retries=0)
    part = weights.cache_path(info) + ".part"
    assert "interrupted" in str(e.value) and part in str(e.value)
    assert os.path.getsize(part) == 30_000
    path = zoo.download_zoo_model("dl-flaky2", progress=False)
    assert open(path, "rb").read() == weights_bytes
    assert server.requests[-1]["range"] == "bytes=30000-"


def test_checksum_mismatch_sets_the_file_aside(server, weights_bytes):
    server.files["/w/evil.pth"] = weights_bytes + b"tampered"
    expected = hashlib.sha256(weights_bytes).hexdigest()
    actual = hashlib.sha256(weights_bytes + b"tampered").hexdigest()
    info = _register("dl-evil", server.url("/w/evil.pth"), weights_bytes, sha=expected)
    with pytest.raises(ChecksumError) as e:
        zoo.load_zoo_model("dl-evil", progress=False)
    msg = str(e.value)
    assert expected in msg and actual in msg
    assert (e.value.expected, e.value.actual) == (expected, actual)
    dest = weights.cache_path(info)
    assert not os.path.exists(dest) and not os.path.exists(dest + ".part")
    assert os.path.exists(dest + ".part.sha256-mismatch") and ".sha256-mismatch" in msg


def test_404_names_the_url_and_the_manual_path(server, weights_bytes):
    info = _register("dl-missing", server.url("/w/missing.pth"), weights_bytes)
    with pytest.raises(DownloadError) as e:
        zoo.load_zoo_model("dl-missing")
    msg = str(e.value)
    assert "404" in msg and server.url("/w/missing.pth") in msg and weights.cache_path(info) in msg
    assert "\n" not in msg


def test_offline_error_names_the_url_and_the_manual_path(server, weights_bytes, monkeypatch):
    monkeypatch.setenv(zoo.ENV_OFFLINE, "1")
    server.files["/w/ok.pth"] = weights_bytes
    info = _register("dl-offline", server.url("/w/ok.pth"), weights_bytes)
    with pytest.raises(DownloadError) as e:
        zoo.load_zoo_model("dl-offline")
    msg = str(e.value)
    assert zoo.ENV_OFFLINE in msg and server.url("/w/ok.pth") in msg and weights.cache_path(info) in msg
    assert server.requests == []
    # placing the file by hand at the path the error names makes it work offline
    os.makedirs(os.path.dirname(weights.cache_path(info)), exist_ok=True)
    with open(weights.cache_path(info), "wb") as f:
        f.write(weights_bytes)
    assert zoo.load_zoo_model("dl-offline").config.weights_path == weights.cache_path(info)


def test_unreachable_server_is_a_download_error(weights_bytes):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    info = _register("dl-unreachable", f"http://127.0.0.1:{port}/w.pth", weights_bytes)
    with pytest.raises(DownloadError) as e:
        zoo.download_zoo_model("dl-unreachable")
    assert "unreachable" in str(e.value) and weights.cache_path(info) in str(e.value)


def test_file_url_source(tmp_path, weights_bytes):
    src = tmp_path / "weights" / "w.pth"
    src.parent.mkdir()
    src.write_bytes(weights_bytes)
    info = _register("dl-file", src.as_uri(), weights_bytes)
    path = zoo.download_zoo_model("dl-file")
    assert path == weights.cache_path(info) and open(path, "rb").read() == weights_bytes
    _register("dl-file-missing", (tmp_path / "nope.pth").as_uri(), weights_bytes)
    with pytest.raises(DownloadError, match="does not exist.*place it at"):
        zoo.download_zoo_model("dl-file-missing")


def test_weights_path_env_is_searched_before_downloading(server, weights_bytes, tmp_path, monkeypatch):
    d = tmp_path / "shared-weights"
    d.mkdir()
    (d / "some-name.bin").write_bytes(weights_bytes)
    monkeypatch.setenv(zoo.ENV_WEIGHTS_PATH, str(d))
    server.files["/w/ok.pth"] = weights_bytes
    _register("dl-shared", server.url("/w/ok.pth"), weights_bytes)
    assert zoo.download_zoo_model("dl-shared") == str(d / "some-name.bin")
    assert server.requests == []


def test_torch_hub_cache_is_searched_by_file_name(server, weights_bytes, tmp_path):
    info = _register("dl-hub", server.url("/w/ok.pth"), weights_bytes)
    hub = tmp_path / "torch-home" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / "other-name.pth").write_bytes(weights_bytes)  # same bytes, other name: not hashed
    server.files["/w/ok.pth"] = weights_bytes
    assert zoo.download_zoo_model("dl-hub") == weights.cache_path(info)  # downloaded
    zoo.delete_zoo_model("dl-hub")
    (hub / info.weights.filename).write_bytes(weights_bytes)
    assert zoo.download_zoo_model("dl-hub") == str(hub / info.weights.filename)
    assert len(server.requests) == 1


def test_progress_bar_counts_bytes_and_shows_only_when_asked(capsys):
    from modelzoo.progress import progress_bar

    with progress_bar(2048, "w.pth", unit="B", enabled=True, initial=1024) as bar:
        assert bar.unit_scale and bar.unit_divisor == 1024 and bar.n == 1024
        bar.update(1024)
    assert "w.pth" in capsys.readouterr().err
    with progress_bar(3, "model", enabled=False) as bar:
        assert bar.disable
        bar.update(3)
    assert capsys.readouterr().err == ""
