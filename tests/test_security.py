"""Issue 20, replayed: each high and medium finding of the database, signing and
reserved-field parts is an attack here, and each must fail. (The HTTP server and
imports are in tests/test_security_server.py.)"""

from __future__ import annotations

import json
import os
import pickle
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pymongo
import pytest

import modelzoo as mz
from modelzoo import db as mzdb
from modelzoo import signing
from modelzoo.bundles import LaunchClient, ModelBundle, UntrustedBundleError
from modelzoo.bundles.flavors import RunnableImageFlavor
from modelzoo.bundles.store import COLLECTION
from modelzoo.errors import DatasetError, LabelError, TrustKeyError, UntrustedError
from modelzoo.labels import Classification
from modelzoo.vessl import RunnerBase, UntrustedModelError, register_model, register_torch_model
from tests.processes import child_env

NOBODY = 65534


# -- a database only its user can reach (high 1) -----------------------------------------------------
HOSTILE = textwrap.dedent(
    """
    import json, os, socket, sys
    import pymongo
    sock, data_dir, token, drop = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "drop"
    if drop:
        os.setgroups([])
        os.setgid(%(nobody)d)
        os.setuid(%(nobody)d)
    out = {"uid": os.getuid()}

    def mongo(uri):
        c = pymongo.MongoClient(uri, serverSelectionTimeoutMS=800, connectTimeoutMS=800, directConnection=True)
        try:
            return c
        finally:
            pass

    # 1. the socket
    try:
        s = socket.socket(socket.AF_UNIX); s.settimeout(1); s.connect(sock); s.close()
        out["connect"] = "ok"
    except OSError as e:
        out["connect"] = type(e).__name__
    c = mongo("mongodb://" + sock.replace("/", "%%2F") + "/")
    try:
        out["read"] = [d for d in c.list_database_names()]
    except Exception as e:
        out["read"] = type(e).__name__
    try:
        c.modelzoo.hostile.insert_one({"x": 1}); out["write"] = "ok"
    except Exception as e:
        out["write"] = type(e).__name__
    # 2. every TCP port listening on this machine (the finding found it in /proc/net/tcp)
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[3] != "0A":
                continue
            port = int(f[1].split(":")[1], 16)
            c = mongo(f"mongodb://127.0.0.1:{port}/")
            try:
                if any(("sec_" + token) in c[d].list_collection_names() for d in c.list_database_names()):
                    found.append(port)
            except Exception:
                pass
            finally:
                c.close()
    out["tcp"] = found
    # 3. the files
    for name in ("mongod.log", "mongod.json", "data/WiredTiger.turtle"):
        try:
            open(os.path.join(data_dir, name), "rb").read(1); out[name] = "ok"
        except OSError as e:
            out[name] = type(e).__name__
    print(json.dumps(out))
    """ % {"nobody": NOBODY}
)


@pytest.fixture
def open_parent():
    """A directory other users can traverse (unlike pytest's tmp_path): what makes the data dir private is modelzoo."""
    parent = tempfile.mkdtemp(prefix="mz-sec-", dir="/tmp")
    os.chmod(parent, 0o755)
    try:
        yield Path(parent)
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def _hostile(sock: str, data_dir: Path, token: str, drop: bool) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", HOSTILE, sock, str(data_dir), token, "drop" if drop else "keep"],
        cwd="/", capture_output=True, text=True, timeout=300, env={"PATH": os.environ.get("PATH", "")},
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_another_user_cannot_connect_read_or_write_the_database(open_parent, monkeypatch):
    if os.geteuid() != 0:
        pytest.skip("needs root, to run a child as another user (uid 65534) with os.setuid")
    data_dir = open_parent / "db"
    data_dir.mkdir(mode=0o755)  # as `mkdir` would make it: others may enter
    monkeypatch.setenv(mzdb.ENV_DIR, str(data_dir))
    mzdb.reset()
    token = secrets.token_hex(6)
    try:
        mzdb.get_db()["sec_" + token].insert_one({"secret": token})
        sock = mzdb.status()["socket"]
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
        owner = _hostile(sock, data_dir, token, drop=False)  # the same probe as its owner: it works
        assert owner["uid"] == 0 and owner["connect"] == "ok" and "modelzoo" in owner["read"]
        assert owner["write"] == "ok" and owner["mongod.log"] == "ok"
        other = _hostile(sock, data_dir, token, drop=True)
        assert other["uid"] == NOBODY
        assert other["connect"] == "PermissionError"
        assert other["read"] == "ServerSelectionTimeoutError" and other["write"] == "ServerSelectionTimeoutError"
        assert other["tcp"] == []  # no TCP port serves this database
        assert {other[n] for n in ("mongod.log", "mongod.json", "data/WiredTiger.turtle")} == {"PermissionError"}
        assert mzdb.get_db().hostile.count_documents({}) == 1  # only the owner's write
    finally:
        mzdb.stop()
        mzdb.reset()


def test_the_socket_uri_counts_as_this_machine_only_for_ray(db):
    from modelzoo.ray.options import check_database_reach, uri_is_loopback

    uri = mzdb.database_uri()
    assert uri.startswith("mongodb://%2F") and uri_is_loopback(uri)
    here = {"NodeID": "a", "Alive": True, "NodeManagerAddress": "10.0.0.1"}
    other = {"NodeID": "b", "Alive": True, "NodeManagerAddress": "10.0.0.2"}
    check_database_reach(uri, [here], "a")  # workers on this machine use the socket
    with pytest.raises(mz.DatabaseError, match="loopback only"):
        check_database_reach(uri, [here, other], "a")  # another machine cannot reach it


def test_server_side_javascript_is_refused(db):
    db.sec_js.insert_one({"x": 1})
    try:
        with pytest.raises(pymongo.errors.OperationFailure):
            list(db.sec_js.find({"$where": "this.x == 1"}))
        with pytest.raises(pymongo.errors.OperationFailure):
            list(db.sec_js.aggregate([{"$match": {"$expr": {"$function": {"body": "function(){return true}", "args": [], "lang": "js"}}}}]))
    finally:
        db.drop_collection("sec_js")


def test_the_database_files_are_private(db):
    data_dir = Path(os.environ[mzdb.ENV_DIR])
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    for name in ("mongod.log", "mongod.json", "modelzoo.lock", "monitor.log"):
        path = data_dir / name
        if path.exists():
            assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, name
    for client in (data_dir / "clients").iterdir():
        assert stat.S_IMODE(client.stat().st_mode) & 0o077 == 0


# -- the signing key and API -------------------------------------------------------------------------
def test_signatures_cover_every_field_and_survive_the_database(db, tmp_path, monkeypatch):
    monkeypatch.setenv(signing.ENV_TRUST_KEY, str(tmp_path / "key"))
    import datetime as dt

    record = {"name": "ocr", "command": ["python", "-c", "x"], "blob": b"\x00\x01",
              "created_at": dt.datetime(2026, 12, 7, 1, 2, 3, 456789, tzinfo=dt.timezone.utc), "n": 1.5}
    sig = signing.sign(record)
    assert stat.S_IMODE((tmp_path / "key").stat().st_mode) == 0o600
    assert signing.verify(record, sig)
    for key, value in (("command", ["sh"]), ("n", 1.25), ("blob", b"\x00\x02"), ("extra", 1)):
        assert not signing.verify({**record, key: value}, sig), key
    assert not signing.verify(record, None) and not signing.verify(record, "0" * 64)
    # the database gives datetimes back naive, to the millisecond: the signature still holds
    db.sec_sig.insert_one({**record, "_id": 1})
    try:
        back = db.sec_sig.find_one({"_id": 1}, {"_id": 0})
        assert back["created_at"].tzinfo is None and signing.verify(back, sig)
    finally:
        db.drop_collection("sec_sig")
    with pytest.raises(UntrustedError, match="trust=True") as e:
        signing.require_trusted({**record, "n": 2}, sig, what="bundle 'ocr'")
    assert "bundle 'ocr'" in str(e.value) and "Re-register" in str(e.value)
    signing.require_trusted(record, sig, what="bundle 'ocr'")
    signing.require_trusted({**record, "n": 2}, sig, what="bundle 'ocr'", trust=True)
    assert signing.verify_bytes(b"abc", signing.sign_bytes(b"abc")) and not signing.verify_bytes(b"abd", signing.sign_bytes(b"abc"))
    # another user's key (another key file) does not verify ours
    monkeypatch.setenv(signing.ENV_TRUST_KEY, str(tmp_path / "other"))
    signing.sign_bytes(b"")  # creates the other key
    assert not signing.verify(record, sig)


def test_a_key_file_others_can_read_is_refused_not_ignored(tmp_path, monkeypatch):
    key = tmp_path / "key"
    monkeypatch.setenv(signing.ENV_TRUST_KEY, str(key))
    signing.sign_bytes(b"x")
    os.chmod(key, 0o644)
    with pytest.raises(TrustKeyError, match=f"chmod 600 {key}"):
        signing.sign({"a": 1})
    with pytest.raises(TrustKeyError, match="chmod 600"):
        register_model("loose", runner_cls=Doubler, model_instance={"k": 2})
    assert mz.list_zoo_models(pattern="loose") == []  # nothing registered unsigned


# -- bundles (high 1: a newer record runs the attacker's command) --------------------------------------
def _forged_runnable(name: str, marker: Path, created_at: str) -> dict:
    """What another user writes into the bundles collection: a content id anyone can compute, no signature."""
    command = (sys.executable, "-c", f"open({str(marker)!r}, 'w').write('pwned')")
    bundle = ModelBundle(name, flavor=RunnableImageFlavor(command=command, readiness_initial_delay_seconds=5,
                                                          readiness_timeout_seconds=5), input="request",
                         created_at=created_at)
    return {"_id": bundle.id, **bundle.record(), "files": []}


def test_a_newer_record_written_by_someone_else_is_not_latest_and_does_not_run(bundle_home, db):
    client = LaunchClient()
    mine = client.create_model_bundle_from_callable_v2(
        model_bundle_name="ocr", load_predict_fn=lambda model: model, model=lambda x: x * 2, input="request",
    ).model_bundle_id
    marker = bundle_home / "pwned"
    forged = _forged_runnable("ocr", marker, "2999-01-01T00:00:00.000000+00:00")
    db[COLLECTION].insert_one(forged)
    assert [b.id for b in client.list_model_bundles_v2()][:1] == [forged["_id"]]  # newest by created_at
    assert client.get_latest_model_bundle_v2("ocr").id == mine  # but latest is the newest signed one
    stranger = client.get_model_bundle_v2(forged["_id"])
    with pytest.raises(UntrustedBundleError, match="runs the command") as e:
        stranger.to_model()
    assert "trust=True" in str(e.value) and "not signed" in str(e.value)
    assert not marker.exists()
    # the check is what stopped it: with the caller's trust, the command runs
    with pytest.raises(mz.ModelzooError):
        with stranger.to_model(trust=True):
            pass
    assert marker.read_text() == "pwned"


def test_a_signed_record_with_a_changed_created_at_or_command_is_refused(bundle_home, db):
    ns = {}
    code = textwrap.dedent("""
        from modelzoo.bundles import LaunchClient
        r = LaunchClient().create_model_bundle_from_runnable_image_v2(
            model_bundle_name="srv", repository="r", tag="t", command=["python", "-c", "print(1)"])
        print(r.model_bundle_id)
    """)
    out = subprocess.run([sys.executable, "-c", code], env=child_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    ns["id"] = out.stdout.split()[-1]
    doc = db[COLLECTION].find_one({"_id": ns["id"]})
    assert doc["signature"]
    client = LaunchClient()
    assert client.get_model_bundle_v2(ns["id"]).to_model() is not None  # signed by this user: loads (not started)
    db[COLLECTION].update_one({"_id": ns["id"]}, {"$set": {"created_at": "2999-01-01T00:00:00.000000+00:00"}})
    with pytest.raises(UntrustedBundleError):
        client.get_model_bundle_v2(ns["id"]).to_model()
    # a record whose content changed no longer matches its id at all
    db[COLLECTION].update_one({"_id": ns["id"]}, {"$set": {"flavor.command": ["sh", "-c", "true"]}})
    with pytest.raises(mz.ConfigError):
        client.get_model_bundle_v2(ns["id"])


def _zip_bundle(client, directory: Path, value: int = 40) -> str:
    (directory / "code").mkdir(parents=True)
    (directory / "code" / "predict.py").write_text(
        "def load_predict(model):\n    return lambda x: {'answer': model + x}\n"
    )
    (directory / "code" / "model.py").write_text(f"def load_model():\n    return {value}\n")
    return client.create_model_bundle_from_dirs_v2(
        model_bundle_name="zipped", base_paths=[str(directory / "code")], load_predict_fn_module_path="predict.load_predict",
        load_model_fn_module_path="model.load_model", input="request",
    ).model_bundle_id


def test_a_swapped_code_zip_or_extracted_module_does_not_run(bundle_home, tmp_path):
    client = LaunchClient()
    bundle_id = _zip_bundle(client, tmp_path / "src")
    code = textwrap.dedent(f"""
        from modelzoo.bundles import LaunchClient, UntrustedBundleError
        try:
            print("ANSWER", LaunchClient().get_model_bundle_v2({bundle_id!r}).to_model().predict({{"x": 2}}))
        except UntrustedBundleError as e:
            print("REFUSED", e)
    """)

    def other_process():
        out = subprocess.run([sys.executable, "-c", code], env=child_env(), capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return out.stdout

    assert "ANSWER {'answer': 42}" in other_process()
    home = Path(os.environ["MODELZOO_HOME"]) / "_bundles" / bundle_id
    # the extracted copy edited: extracted again from the signed zip
    (home / "code" / "code" / "model.py").write_text("def load_model():\n    return -1000\n")
    assert "ANSWER {'answer': 42}" in other_process()
    assert "return 40" in (home / "code" / "code" / "model.py").read_text()
    # code.zip swapped for another zip (the finding): refused before extraction
    other = tmp_path / "evil"
    evil_id = _zip_bundle(client, other, value=-1000)
    assert evil_id != bundle_id
    shutil.copy(Path(os.environ["MODELZOO_HOME"]) / "_bundles" / evil_id / "code.zip", home / "code.zip")
    shutil.rmtree(home / "code")
    out = other_process()
    assert "REFUSED" in out and "sha256" in out and not (home / "code").exists()


# -- VESSL (high 2 and 3) ------------------------------------------------------------------------------
class Doubler(RunnerBase):
    @staticmethod
    def predict(model, data):
        return {"n": model["k"] * len(data)}


class _Evil:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def vessl_home(zoo_env, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _entry(name: str) -> Path:
    return Path(mz.get_zoo_model_info(name).origin).parent


def test_vessl_trust_cannot_come_from_entry_json_and_a_swapped_pickle_is_refused(vessl_home):
    name = str(register_model("pick", runner_cls=Doubler, model_instance={"k": 2}))
    assert mz.load_zoo_model(name).predict(b"abc") == {"n": 6}  # signed by this user
    entry, marker = _entry(name), vessl_home / "pwned"
    (entry / "vessl.model.pkl").write_bytes(pickle.dumps(_Evil(str(marker))))
    doc = json.loads((entry / "entry.json").read_text())
    doc["models"][0]["model"]["config"]["trust"] = True  # the finding: trust read from the record
    (entry / "entry.json").write_text(json.dumps(doc))
    mz.zoo.reload_zoo()
    with pytest.raises(UntrustedModelError, match="sets 'trust'"):
        mz.load_zoo_model(name)
    del doc["models"][0]["model"]["config"]["trust"]
    (entry / "entry.json").write_text(json.dumps(doc))
    mz.zoo.reload_zoo()
    with pytest.raises(UntrustedModelError, match="trust=True"):
        mz.load_zoo_model(name)
    assert not marker.exists()
    model = mz.load_zoo_model(name, trust=True)  # the caller's trust unpickles it: the check was what stopped it
    assert marker.exists() and not isinstance(model.model, dict)
    model.model.close()


def test_vessl_entry_without_pickles_is_verified_too(vessl_home):
    import torch

    name = str(register_torch_model("lin", None, torch.nn.Linear(2, 2), builder="torch.nn.Linear",
                                    builder_kwargs={"in_features": 2, "out_features": 2}))
    entry, marker = _entry(name), vessl_home / "pwned"
    manifest = json.loads((entry / "vessl.manifest.json").read_text())
    assert not [f for f in os.listdir(entry) if f.endswith(".pkl")]
    assert isinstance(mz.load_zoo_model(name).model, torch.nn.Linear)
    manifest["model"]["builder"] = "os.system"
    manifest["model"]["builder_kwargs"] = {"command": f"touch {marker}"}
    (entry / "vessl.manifest.json").write_text(json.dumps(manifest))
    mz.zoo.reload_zoo()
    with pytest.raises(UntrustedModelError, match="imported and called"):
        mz.load_zoo_model(name)
    assert not marker.exists()


def test_a_local_entry_edited_to_name_another_callable_is_refused_before_anything_runs(vessl_home):
    """entry.json is signed, but the signature is checked by the type it names: an
    entry edited to name another callable (os.system) would skip the check."""
    name = str(register_model("typ", runner_cls=Doubler, model_instance={"k": 2}))
    entry, marker = _entry(name), vessl_home / "pwned"
    doc = json.loads((entry / "entry.json").read_text())
    doc["models"][0]["model"] = {"type": "os.system", "config": {"command": f"touch {marker}"}}
    (entry / "entry.json").write_text(json.dumps(doc))
    mz.zoo.reload_zoo()
    try:
        with pytest.raises(mz.ZooError, match="os.system") as e:
            mz.load_zoo_model(name, trust=True)
        assert "register the model again" in str(e.value)
        assert not marker.exists()
    finally:
        import shutil

        shutil.rmtree(entry)
        mz.zoo.reload_zoo()


# -- reserved fields and names (high 6, medium 1) ------------------------------------------------------
@pytest.fixture
def photos(tmp_path):
    from tests.images import write_good_images

    paths = write_good_images(str(tmp_path / "photos"), n=2)
    dataset = mz.Dataset.from_images(paths, name=f"sec-{secrets.token_hex(4)}")
    try:
        yield dataset
    finally:
        dataset.delete()


@pytest.mark.parametrize("kwargs", [
    {"label_field": "filepath"}, {"label_field": "metadata"}, {"label_field": "id"}, {"label_field": "_id"},
    {"label_field": "media_type"}, {"label_field": "tags"}, {"label_field": "metadata.width"},
    {"label_field": {"cls": "filepath"}}, {"label_field": "predictions", "error_field": "filepath"},
])
def test_model_outputs_cannot_overwrite_a_samples_own_fields(photos, kwargs):
    from modelzoo.testing import tiny_model

    before = sorted(photos.values("filepath"))
    with pytest.raises(LabelError, match=r"sample's own field|names cannot be 'id'/'_id'"):
        photos.apply_model(tiny_model("classification"), **kwargs)
    assert sorted(photos.values("filepath")) == before and all(os.path.isfile(p) for p in before)


def test_embeddings_and_dict_outputs_cannot_name_own_fields(photos):
    from modelzoo.fields import label_updates
    from modelzoo.testing import tiny_model

    with pytest.raises(LabelError, match="embeddings_field='filepath'"):
        photos.compute_embeddings(tiny_model("classification"), embeddings_field="filepath")
    with pytest.raises(LabelError, match="'filepath'"):  # a model returning {"filepath": label}
        label_updates({"filepath": Classification(label="x")}, None)
    with pytest.raises(LabelError, match="frame_number"):
        label_updates({1: {"frame_number": Classification(label="x")}}, None)


def test_dataset_names_are_non_empty_strings(photos):
    before = mz.list_datasets()
    for bad in ({"$gt": ""}, {"$ne": None}, "", "  ", 7, None):
        with pytest.raises(DatasetError, match="non-empty string"):
            mz.delete_dataset(bad)
        with pytest.raises(DatasetError):
            mz.load_dataset(bad)
    for bad in ("", " ", {"$gt": ""}, 3):
        with pytest.raises(DatasetError, match="non-empty string"):
            mz.Dataset(bad)
    assert mz.list_datasets() == before  # nothing deleted, no orphan record


# -- low: a runnable bundle's setsid grandchild -------------------------------------------------------
SERVER_WITH_ESCAPEE = """
import http.server, os, subprocess, sys
pidfile = sys.argv[1]
# a grandchild in its own session, orphaned at once (its parent, sh, exits)
subprocess.run(["sh", "-c", f"setsid sleep 600 </dev/null >/dev/null 2>&1 & echo $! > {pidfile}.tmp; mv {pidfile}.tmp {pidfile}"])

class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ok = os.path.exists(pidfile)
        self.send_response(200 if ok else 503); self.end_headers()
    def log_message(self, *a):
        pass

http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"""


def test_a_runnable_bundles_setsid_grandchild_is_stopped_with_it(bundle_home):
    from modelzoo.db.lifetime import pid_alive, wait_exit

    pidfile = bundle_home / "grandchild.pid"
    client = LaunchClient()
    bundle_id = client.create_model_bundle_from_runnable_image_v2(
        model_bundle_name="escapee", repository="r", tag="t",
        command=[sys.executable, "-c", SERVER_WITH_ESCAPEE, str(pidfile)], readiness_initial_delay_seconds=60,
    ).model_bundle_id
    with client.get_model_bundle_v2(bundle_id).to_model():
        grandchild = int(pidfile.read_text())
        assert pid_alive(grandchild)
        assert os.getsid(grandchild) != os.getsid(0)  # it left the server's session and group
    try:
        assert wait_exit(grandchild, 30, pid_alive), "the setsid grandchild survived its server"
    finally:
        if pid_alive(grandchild):
            os.kill(grandchild, 9)


# -- low: cached weights, mismatch copies, artifacts, zip bombs -----------------------------------------
WEIGHTS_CONFIG = {
    "entrypoint_fcn": "modelzoo.zoo.nets.digits_cnn", "output_processor_cls": "ClassifierOutputProcessor",
    "classes": [str(i) for i in range(10)], "image_size": 8, "optimize": False,
}


def _weights(tmp_path: Path, name: str, data: bytes, sha: str) -> "mz.ZooModelInfo":
    import hashlib

    src = tmp_path / f"{name}.pth"
    src.write_bytes(data)
    os.chmod(src, 0o600)
    return mz.register_zoo_model(name, WEIGHTS_CONFIG, size_bytes=len(data),
                                 weights={"url": src.as_uri(), "sha256": sha or hashlib.sha256(data).hexdigest(),
                                          "filename": f"{name}.pth"})


@pytest.fixture
def digits_weights() -> bytes:
    import io

    import torch

    from modelzoo.zoo.nets import digits_cnn

    torch.manual_seed(0)
    buf = io.BytesIO()
    torch.save(digits_cnn().state_dict(), buf)
    return buf.getvalue()


def test_a_cached_weights_file_rewritten_and_redated_is_hashed_again(zoo_env, tmp_path, digits_weights):
    import hashlib

    from modelzoo.zoo import weights

    info = _weights(tmp_path, "sec-redated", digits_weights, hashlib.sha256(digits_weights).hexdigest())
    path = mz.download_zoo_model("sec-redated")
    st = os.stat(path)
    assert weights.find_weights(info, search=False) == path
    tampered = bytearray(digits_weights)
    tampered[-100] ^= 0xFF  # same size
    Path(path).write_bytes(bytes(tampered))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # and the same mtime: what size+mtime alone would accept
    assert os.stat(path).st_size == st.st_size and os.stat(path).st_mtime_ns == st.st_mtime_ns
    with pytest.raises(mz.ChecksumError):
        weights.find_weights(info, search=False)


def test_a_checksum_mismatch_copy_stays_private(zoo_env, tmp_path, digits_weights):
    import hashlib

    from modelzoo.zoo import weights

    info = _weights(tmp_path, "sec-mismatch", digits_weights + b"x", hashlib.sha256(digits_weights).hexdigest())
    with pytest.raises(mz.ChecksumError):
        mz.download_zoo_model("sec-mismatch")
    aside = weights.cache_path(info) + ".part.sha256-mismatch"
    assert stat.S_IMODE(os.stat(aside).st_mode) == 0o600  # its source was 0600 (the finding: 0644)
    ok = _weights(tmp_path, "sec-private", digits_weights, hashlib.sha256(digits_weights).hexdigest())
    assert stat.S_IMODE(os.stat(mz.download_zoo_model("sec-private")).st_mode) & 0o077 == 0
    assert ok.name == "sec-private"


def test_vessl_artifacts_stay_inside_the_volume(vessl_home):
    from modelzoo.vessl import ArtifactError

    (vessl_home / "model.txt").write_text("weights")
    with pytest.raises(ArtifactError, match="'~' is not"):
        register_model("tilde", runner_cls=Doubler, model_instance={"k": 1}, artifacts={"model.txt": "~/model.txt"})
    secret = vessl_home / "secret.txt"
    secret.write_text("do not copy")
    (vessl_home / "ckpt").mkdir()
    (vessl_home / "ckpt" / "inside.txt").write_text("ok")
    (vessl_home / "ckpt" / "leak").symlink_to(secret)
    with pytest.raises(ArtifactError, match="symbolic link"):
        register_model("links", runner_cls=Doubler, model_instance={"k": 1}, artifacts={"ckpt/": "ckpt/"})
    assert mz.list_zoo_models(pattern="tilde") == [] and mz.list_zoo_models(pattern="links") == []
    assert not (vessl_home / "~").exists()


def test_a_zip_bomb_is_refused_before_extraction(tmp_path, monkeypatch):
    import io
    import zipfile

    from modelzoo.bundles import UnsafeArchiveError, artifacts

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("code/zeros.bin", b"\0" * (4 * 1024 * 1024))  # 4 MiB of zeros: a few KiB compressed
    data = buf.getvalue()
    assert len(data) < 64 * 1024
    monkeypatch.setattr(artifacts, "MAX_EXTRACTED_BYTES", 1024 * 1024)  # the same check, a smaller bomb
    with pytest.raises(UnsafeArchiveError, match="bytes once extracted"):
        artifacts.safe_extract(data, str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    with pytest.raises(UnsafeArchiveError):
        artifacts.zip_digest(data)
