#!/usr/bin/env python
"""Write throughput of the library against raw pymongo, and the ingest rate.

Writes a Detections label (10 boxes) on each of ``--samples`` samples

* A: through the library, ``dataset.set_values(field, {sample_id: Detections})``
  in batches of ``--batch`` samples, as the engine's writer does (one unordered
  bulk write per batch). The Label -> dict conversion (``to_dict``) is inside
  the timed region;
* B: with raw pymongo, ``collection.bulk_write([UpdateOne({"_id": oid},
  {"$set": {field: doc}}), ...], ordered=False)`` with the same batches and the
  same documents, already converted to dicts before timing.

The Label objects (for A) and dicts (for B) are built before timing. A and B
alternate (A B, B A, A B, ...) against the same server and the same
collection; the field is unset (untimed) after each pass so every pass starts
from the same documents. Prints the medians and the ratio A/B.

Then the cost of durability: the same library writes (``set_values``, per
batch of ``--batch``) and an ``add_samples`` ingest (``insert_many``) with
``MODELZOO_WRITE_CONCERN=journaled`` (``w=1, j=true``: acknowledged once in
mongod's on-disk journal) against ``acknowledged`` (``w=1``: acknowledged once
applied in memory, journaled within ~100 ms), alternating J A, A J, ... in one
run. Prints the medians and the ratio journaled/acknowledged, and the file
system the data directory is on (a tmpfs makes journaling free, a disk does not).

Then times ``Dataset.from_images_dir`` on ``--images`` real photographs
(640x480 JPEGs cached by ``bench_apply.photo_dir``).

The embedded mongod runs in a temporary directory (``modelzoo.db.temporary()``);
both are removed at the end.

With ``--transport-only``: the same raw ``bulk_write`` batches against the
embedded server on its Unix socket (what modelzoo uses) and against a second
mongod, same binary and flags, on TCP 127.0.0.1 (what it used before),
alternating S T, T S, ... in one run; prints the medians and the ratio
socket/TCP for journaled and acknowledged writes.

Usage::

    .venv/bin/python benchmarks/bench_db.py            # full: 20,000 samples, 5 pairs
    .venv/bin/python benchmarks/bench_db.py --quick    # smoke run
    .venv/bin/python benchmarks/bench_db.py --durability-only   # journaled vs acknowledged
    .venv/bin/python benchmarks/bench_db.py --transport-only    # Unix socket vs TCP loopback
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import sys
import time
from typing import Any, Dict, List, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # the repository, for a run without an install
sys.path.insert(0, HERE)


def _detections(rng: random.Random, n_boxes: int):
    import modelzoo as mz

    dets = []
    for _ in range(n_boxes):
        w, h = rng.uniform(0.05, 0.5), rng.uniform(0.05, 0.5)
        x, y = rng.uniform(0, 1 - w), rng.uniform(0, 1 - h)
        dets.append(mz.Detection(label=f"class_{rng.randrange(80)}", bounding_box=[x, y, w, h],
                                 confidence=rng.random()))
    return mz.Detections(detections=dets)


def _batches(items: Sequence[Any], size: int) -> List[Sequence[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def bench_writes(n: int, batch: int, pairs: int, boxes: int = 10) -> Dict[str, Any]:
    from pymongo import UpdateOne

    import modelzoo as mz

    dataset = mz.Dataset(f"bench-db-{os.getpid()}")
    dataset.add_samples([f"/nonexistent/img_{i:06d}.jpg" for i in range(n)])
    coll = dataset._collection
    oids = [d["_id"] for d in coll.find({}, {"_id": 1}).sort("_id", 1)]

    rng = random.Random(0)
    t = time.perf_counter()
    labels = [_detections(rng, boxes) for _ in range(n)]
    build_s = time.perf_counter() - t
    docs = [label.to_dict() for label in labels]  # what B stores; identical to what A stores
    lib_batches = [dict(zip(b_ids, b_labels)) for b_ids, b_labels in zip(_batches(oids, batch), _batches(labels, batch))]
    raw_batches = [list(zip(b_ids, b_docs)) for b_ids, b_docs in zip(_batches(oids, batch), _batches(docs, batch))]
    field = "pred"

    def library() -> None:
        for values in lib_batches:
            dataset.set_values(field, values)

    def raw() -> None:
        for pairs_ in raw_batches:
            coll.bulk_write([UpdateOne({"_id": oid}, {"$set": {field: doc}}) for oid, doc in pairs_], ordered=False)

    def reset() -> None:
        coll.update_many({}, {"$unset": {field: ""}})

    # warm-up (server caches, code paths), not counted
    for warm in (library, reset, raw, reset):
        warm()
    times: Dict[str, List[float]] = {"library": [], "pymongo": []}
    for i in range(pairs):
        order = [("library", library), ("pymongo", raw)]
        if i % 2:
            order.reverse()
        for name, fn in order:
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
            reset()
    # the stored documents are the same
    library()
    stored = coll.find_one({"_id": oids[0]}, {field: 1})[field]
    assert stored == docs[0], "library and pymongo documents differ"
    dataset.delete()
    ratios = [a / b for a, b in zip(times["library"], times["pymongo"])]
    return {"times": times, "ratios": ratios, "build_s": build_s}


@contextlib.contextmanager
def _write_concern(name: str):
    """Library writes with ``MODELZOO_WRITE_CONCERN=name`` (a new client, connected before timing)."""
    from modelzoo import db

    saved = os.environ.get("MODELZOO_WRITE_CONCERN")
    os.environ["MODELZOO_WRITE_CONCERN"] = name
    try:
        db.get_db().command("ping")
        yield db.write_concern()
    finally:
        if saved is None:
            os.environ.pop("MODELZOO_WRITE_CONCERN", None)
        else:
            os.environ["MODELZOO_WRITE_CONCERN"] = saved


def bench_durability(
    n: int, batches: Sequence[int], pairs: int, n_images: int, boxes: int = 10
) -> Dict[str, Dict[str, List[float]]]:
    """Journaled vs acknowledged: set_values per batch size, add_samples, and a whole
    apply_model (a tiny classifier on ``n_images`` photographs); J/A interleaved."""
    from bench_apply import photo_dir

    import modelzoo as mz
    from modelzoo.testing import tiny_model

    dataset = mz.Dataset(f"bench-db-wc-{os.getpid()}")
    dataset.add_samples([f"/nonexistent/img_{i:06d}.jpg" for i in range(n)])
    ids = [str(d["_id"]) for d in dataset._collection.find({}, {"_id": 1}).sort("_id", 1)]
    rng = random.Random(1)
    labels = [_detections(rng, boxes) for _ in range(n)]
    paths = [f"/nonexistent/new_{i:06d}.jpg" for i in range(n)]
    expected = {"journaled": {"w": 1, "j": True}, "acknowledged": {"w": 1, "j": False}}

    def writes(batch: int):
        chunks = [dict(zip(b_ids, b_labels)) for b_ids, b_labels in zip(_batches(ids, batch), _batches(labels, batch))]

        def run() -> None:
            for values in chunks:
                dataset.set_values("pred", values)

        def reset() -> None:
            dataset._collection.update_many({}, {"$unset": {"pred": ""}})

        return run, reset

    def ingest():
        target = mz.Dataset(f"bench-db-wc-ingest-{os.getpid()}", overwrite=True)

        def run() -> None:
            target.add_samples(paths)

        def reset() -> None:
            target._collection.delete_many({})

        return run, reset

    def apply():
        photos = mz.Dataset.from_images_dir(photo_dir(n_images), name=f"bench-db-wc-photos-{os.getpid()}")
        model = tiny_model("classification")

        def run() -> None:
            report = mz.apply_model(photos, model, "wc", batch_size=32, progress=False)
            assert report.processed == n_images, report

        def reset() -> None:
            photos._collection.update_many({}, {"$unset": {"wc": ""}})

        return run, reset

    cases = [(f"set_values batch={b}", writes(b)) for b in batches] + [
        (f"add_samples x{n}", ingest()),
        (f"apply_model tiny classifier, {n_images} JPEGs, batch 32", apply()),
    ]
    times: Dict[str, Dict[str, List[float]]] = {name: {"journaled": [], "acknowledged": []} for name, _ in cases}
    for name, (run, reset) in cases:
        for wc in ("journaled", "acknowledged"):  # warm-up, not counted
            with _write_concern(wc):
                run()
                reset()
        for i in range(pairs):
            order = ["journaled", "acknowledged"] if i % 2 == 0 else ["acknowledged", "journaled"]
            for wc in order:
                with _write_concern(wc) as concern:
                    assert concern.document == expected[wc], concern.document
                    t = time.perf_counter()
                    run()
                    times[name][wc].append(time.perf_counter() - t)
                    reset()
    mz.delete_dataset(f"bench-db-wc-ingest-{os.getpid()}")
    mz.delete_dataset(f"bench-db-wc-photos-{os.getpid()}")
    dataset.delete()
    return times


def _file_system(path: str) -> str:
    """``type device`` of the mount holding ``path`` (from /proc/mounts)."""
    best = ("", "?", "?")
    try:
        with open("/proc/mounts") as f:
            for line in f:
                dev, mnt, fstype = line.split()[:3]
                if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best[0]):
                    best = (mnt, fstype, dev)
    except OSError:
        pass
    return f"{best[1]} ({best[2]} on {best[0] or '?'})"


def bench_ingest(n_images: int, runs: int) -> List[float]:
    from bench_apply import photo_dir

    import modelzoo as mz

    root = photo_dir(n_images)
    times = []
    mz.Dataset.from_images_dir(root).delete()  # warm-up: page cache, code paths
    for _ in range(runs):
        t = time.perf_counter()
        ds = mz.Dataset.from_images_dir(root)
        times.append(time.perf_counter() - t)
        assert len(ds) == n_images, len(ds)
        ds.delete()
    return times


@contextlib.contextmanager
def _tcp_mongod(parent: str) -> Any:
    """A second mongod on 127.0.0.1:<free port>, its data under ``parent``; stopped on exit."""
    import subprocess
    import tempfile

    import pymongo

    from modelzoo.db.server import free_port, resolve_mongod

    dbpath = tempfile.mkdtemp(prefix="tcp-", dir=parent)
    port = free_port()
    log = open(os.path.join(dbpath, "mongod.log"), "ab")
    proc = subprocess.Popen([resolve_mongod(), "--dbpath", dbpath, "--bind_ip", "127.0.0.1", "--port", str(port),
                             "--nounixsocket", "--noscripting"], stdout=log, stderr=subprocess.STDOUT)
    try:
        client: Any = pymongo.MongoClient("127.0.0.1", port, serverSelectionTimeoutMS=20000)
        client.admin.command("ping")
        yield client
        client.close()
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def bench_transport(n: int, batch: int, pairs: int, parent: str) -> Dict[str, Dict[str, List[float]]]:
    """Raw bulk writes of ``n`` Detections dicts, socket (the library's server) vs TCP, per write concern."""
    import pymongo
    from pymongo import UpdateOne

    from modelzoo import db

    rng = random.Random(0)
    docs = [_detections(rng, 10).to_dict() for _ in range(n)]
    out: Dict[str, Dict[str, List[float]]] = {}
    with _tcp_mongod(parent) as tcp_client:
        uri = db.database_uri()
        assert "%2F" in uri, f"the embedded server is not on a Unix socket: {uri}"
        socket_client: Any = pymongo.MongoClient(uri)
        for concern, kw in (("journaled", {"w": 1, "j": True}), ("acknowledged", {"w": 1, "j": False})):
            colls = {}
            for name, client in (("socket", socket_client), ("tcp", tcp_client)):
                coll = client["bench_transport"].get_collection(
                    "w", write_concern=pymongo.write_concern.WriteConcern(**kw))
                coll.drop()
                coll.insert_many([{"i": i} for i in range(n)])
                colls[name] = (coll, [d["_id"] for d in coll.find({}, {"_id": 1}).sort("_id", 1)])
            times: Dict[str, List[float]] = {"socket": [], "tcp": []}

            def write(name: str, colls: Dict[str, Any] = colls) -> float:
                coll, oids = colls[name]
                t = time.perf_counter()
                for ids, ds in zip(_batches(oids, batch), _batches(docs, batch)):
                    coll.bulk_write([UpdateOne({"_id": o}, {"$set": {"pred": d}}) for o, d in zip(ids, ds)],
                                    ordered=False)
                elapsed = time.perf_counter() - t
                coll.update_many({}, {"$unset": {"pred": ""}})
                return elapsed

            write("socket"), write("tcp")  # warm-up
            for i in range(pairs):
                order = ["socket", "tcp"] if i % 2 == 0 else ["tcp", "socket"]
                for name in order:
                    times[name].append(write(name))
            out[concern] = times
        socket_client.close()
    return out


def main(argv: Sequence[str] = ()) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--samples", type=int, default=20000)
    p.add_argument("--batch", type=int, nargs="+", default=[32, 256],
                   help="samples per set_values / bulk_write call (the engine writes one call per batch)")
    p.add_argument("--pairs", type=int, default=5, help="A/B pairs per batch size")
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--ingest-runs", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="2,000 samples, 3 pairs, 200 images")
    p.add_argument("--durability-only", action="store_true", help="only journaled vs acknowledged writes")
    p.add_argument("--transport-only", action="store_true", help="only Unix socket vs TCP loopback writes")
    args = p.parse_args(argv or None)
    if args.quick:
        args.samples, args.pairs, args.images, args.ingest_runs = 2000, 3, 200, 3

    from modelzoo import db

    with db.temporary() as data_dir:
        print(f"# bench_db: {args.samples} samples x Detections(10 boxes), cpus={os.cpu_count()}, "
              f"write concern {db.status()['write_concern']} {db.write_concern().document}")
        if args.transport_only:
            for batch in args.batch:
                for concern, t in bench_transport(args.samples, batch, args.pairs, str(data_dir)).items():
                    s, c = statistics.median(t["socket"]), statistics.median(t["tcp"])
                    ratios = [x / y for x, y in zip(t["socket"], t["tcp"])]
                    print(
                        f"transport batch={batch:4d} {concern}: Unix socket {s:.3f} s ({args.samples / s:,.0f} "
                        f"samples/s), TCP 127.0.0.1 {c:.3f} s ({args.samples / c:,.0f}/s); ratio socket/TCP "
                        f"{s / c:.3f} (of medians), per pair median {statistics.median(ratios):.3f} "
                        f"[min {min(ratios):.3f}, max {max(ratios):.3f}] over {args.pairs} pairs"
                    )
            return
        for batch in [] if args.durability_only else args.batch:
            r = bench_writes(args.samples, batch, args.pairs)
            lib, raw = statistics.median(r["times"]["library"]), statistics.median(r["times"]["pymongo"])
            print(
                f"write batch={batch:4d}: library set_values {lib:.3f} s ({args.samples / lib:,.0f} samples/s), "
                f"raw pymongo {raw:.3f} s ({args.samples / raw:,.0f}/s); "
                f"ratio library/pymongo median {statistics.median(r['ratios']):.2f} "
                f"[min {min(r['ratios']):.2f}, max {max(r['ratios']):.2f}] over {args.pairs} pairs (target <= 1.5)"
            )
            print(f"  (building the {args.samples} Detections objects, untimed, took {r['build_s']:.1f} s)")
        print(f"# durability: data directory on {_file_system(str(data_dir))}")
        wc = bench_durability(args.samples, args.batch, args.pairs, args.images)
        for name, t in wc.items():
            j, a = statistics.median(t["journaled"]), statistics.median(t["acknowledged"])
            ratios = [x / y for x, y in zip(t["journaled"], t["acknowledged"])]
            n = args.images if name.startswith("apply_model") else args.samples
            print(
                f"{name}: journaled (w=1, j=true) {j:.3f} s ({n / j:,.0f} samples/s), "
                f"acknowledged (w=1) {a:.3f} s ({n / a:,.0f}/s); ratio journaled/acknowledged "
                f"{j / a:.2f} (of medians), per pair median {statistics.median(ratios):.2f} "
                f"[min {min(ratios):.2f}, max {max(ratios):.2f}] over {args.pairs} pairs"
            )
        if args.durability_only:
            return
        ingest = bench_ingest(args.images, args.ingest_runs)
        med = statistics.median(ingest)
        print(
            f"ingest Dataset.from_images_dir({args.images} JPEGs 640x480): median {med:.3f} s = "
            f"{args.images / med:,.0f} images/s [min {min(ingest):.3f}, max {max(ingest):.3f} s, {len(ingest)} runs]"
        )


if __name__ == "__main__":
    main()
