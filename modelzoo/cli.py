"""The ``modelzoo`` command.

Each command is one function taking the parsed arguments and returning an
exit code; :func:`build_parser` wires them to subcommands. To add a group, write
an ``_add_<group>_commands(subparsers)`` function and call it from
:func:`build_parser`.

Example:
    $ modelzoo list --tags classification
    $ modelzoo list --source torchvision --tags detection
    $ modelzoo info mobilenet-v2-imagenet-torch
    $ modelzoo apply mobilenet-v2-imagenet-torch photos/ --label-field imagenet
    $ modelzoo datasets
    $ modelzoo evaluate photos --pred predictions --gt ground_truth --eval-key eval
    $ modelzoo draw photos --fields ground_truth predictions --gt-fields ground_truth --output drawn/
    $ modelzoo db status
    $ modelzoo db stop
    $ modelzoo serve mobilenet-v2-imagenet-torch --port 8000
    $ modelzoo app photos
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable, Optional, Sequence

from modelzoo.errors import ModelzooError

__all__ = ["build_parser", "main"]

Handler = Callable[[argparse.Namespace], int]


# --------------------------------------------------------------------------- db


def _cmd_db_status(args: argparse.Namespace) -> int:
    from modelzoo import db

    info = db.status()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    rows = {k: v for k, v in info.items() if k not in ("clients", "stops_in_s", "idle_s", "keep")}
    if info["mode"] == "embedded" and info["running"]:
        clients = info["clients"]
        rows["clients"] = (
            ", ".join(f"{c['pid']} ({_short(c.get('command'))})" for c in clients) if clients else "none"
        )
        if info["keep"]:
            rows["lifetime"] = "kept running (until `modelzoo db stop`)"
        elif clients:
            rows["lifetime"] = f"stops {info['idle_s']:g} s after its last client exits"
        elif info["stops_in_s"] is not None:
            rows["lifetime"] = f"no clients: stops in {info['stops_in_s']:g} s"
        else:
            rows["lifetime"] = "no monitor: runs until `modelzoo db stop`"
    width = max(len(k) for k in rows)
    for key, value in rows.items():
        if isinstance(value, bool):
            value = "yes" if value else "no"
        elif value is None:
            value = "-"
        print(f"{key:<{width}}  {value}")
    return 0


def _short(command: Optional[str], limit: int = 50) -> str:
    command = " ".join((command or "?").split())
    return command if len(command) <= limit else command[: limit - 3] + "..."


def _cmd_db_start(args: argparse.Namespace) -> int:
    from modelzoo import db

    info = db.start(keep=args.keep)
    if info["mode"] != "embedded":
        print(f"MongoDB running at {info['uri']} (MODELZOO_DATABASE_URI; modelzoo does not manage it)")
        return 0
    if info["keep"]:
        lifetime = "it keeps running until `modelzoo db stop`"
    else:
        lifetime = (
            f"it stops {info['idle_s']:g} s after the last process using it exits "
            "(--keep keeps it running)"
        )
    print(f"MongoDB running at {info['uri']} (pid {info['pid']}, data in {info['data_dir']}); {lifetime}.")
    return 0


def _cmd_db_stop(args: argparse.Namespace) -> int:
    from modelzoo import db

    info = db.status()
    if info["mode"] == "uri":
        print(f"modelzoo uses {info['uri']} (MODELZOO_DATABASE_URI), which it does not manage; nothing stopped.")
        return 0
    if db.stop(timeout=args.timeout):
        print(f"Stopped mongod (pid {info['pid']}, data in {info['data_dir']}).")
    else:
        print(f"No embedded mongod running for {info['data_dir']}.")
    return 0


def _add_db_commands(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    group = subparsers.add_parser(
        "db",
        help="the MongoDB server modelzoo uses",
        description="Inspect, start or stop modelzoo's database. The embedded mongod runs while "
        "some process uses it, and stops MODELZOO_DATABASE_IDLE_S seconds (default 5) after the "
        "last one exits, unless kept (start --keep, MODELZOO_DATABASE_KEEP=1). "
        "MODELZOO_DATABASE_URI selects a server of your own, which modelzoo never starts or stops.",
    )
    group.set_defaults(handler=_group_help(group))
    commands = group.add_subparsers(title="commands", metavar="COMMAND")

    p = commands.add_parser("status", help="where the database is, whether it runs, who uses it")
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.set_defaults(handler=_cmd_db_status)

    p = commands.add_parser("start", help="start the embedded mongod (or check the URI server)")
    p.add_argument(
        "--keep",
        action="store_true",
        help="keep it running after the last process using it exits, until `modelzoo db stop`",
    )
    p.set_defaults(handler=_cmd_db_start)

    p = commands.add_parser("stop", help="stop the embedded mongod now, for every process using it")
    p.add_argument(
        "--timeout", type=float, default=10.0, help="seconds before SIGKILL (default: 10)"
    )
    p.set_defaults(handler=_cmd_db_stop)


# --------------------------------------------------------------------------- zoo


def _human_size(n: Optional[int]) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _cmd_list(args: argparse.Namespace) -> int:
    from modelzoo import zoo

    keys = zoo.list_zoo_models(tags=args.tags or None, pattern=args.pattern, versions=True, source=args.source or None)
    infos = [zoo.get_zoo_model_info(k) for k in keys]
    if args.json:
        print(json.dumps([i.to_dict() for i in infos], indent=2))
        return 0
    if not infos:
        print("No zoo models match.")
        return 0
    def size(info: Any) -> str:
        mb = info.metadata.get("file_size_mb")
        return _human_size(info.size_bytes if info.size_bytes is not None or mb is None else int(mb * 2**20))

    rows = [
        (i.key, i.zoo_source, "yes" if zoo.is_zoo_model_downloaded(i.key) else "no", size(i), ",".join(i.tags))
        for i in infos
    ]
    _print_table(("NAME@VERSION", "SOURCE", "LOCAL", "SIZE", "TAGS"), rows)
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from modelzoo import zoo

    info = zoo.get_zoo_model_info(args.name)
    d = info.to_dict()
    if args.json:
        print(json.dumps(d, indent=2))
        return 0
    d["origin"] = info.origin
    d["zoo_source"] = info.zoo_source
    d["downloaded"] = zoo.is_zoo_model_downloaded(info.key)
    if info.weights is not None:
        from modelzoo.zoo import weights
        from modelzoo.zoo.sources import get_zoo_source

        # the names of one file share one copy (a library's aliases)
        d["cache_path"] = weights.cache_path(get_zoo_source(info.zoo_source or "registered").weights_entry(info))
    width = max(len(k) for k in d)
    for key, value in d.items():
        if isinstance(value, (dict, list)):
            value = json.dumps(value)
            if len(value) > 300:
                value = value[:297] + "..."
        print(f"{key:<{width}}  {value}")
    return 0


def _cmd_download(args: argparse.Namespace) -> int:
    from modelzoo import zoo

    path = zoo.download_zoo_model(args.name, overwrite=args.force, progress=None if not args.quiet else False)
    info = zoo.get_zoo_model_info(args.name)
    print(f"{info.key}: " + (f"weights at {path}" if path else "no weights to download"))
    return 0


def _cmd_delete(args: argparse.Namespace) -> int:
    from modelzoo import zoo

    info = zoo.get_zoo_model_info(args.name)
    deleted = zoo.delete_zoo_model(info.key)
    print(f"{info.key}: " + ("deleted the cached weights" if deleted else "nothing cached"))
    return 0


def _resolve_target(target: str, dataset_name: Optional[str]):
    """A dataset by name, or a directory of images and/or videos ingested into a new dataset."""
    import os

    import modelzoo as mz
    from modelzoo.errors import DatasetExistsError

    if dataset_name is None and mz.dataset_exists(target):
        return mz.load_dataset(target)
    if os.path.isdir(target):
        name = dataset_name or os.path.basename(os.path.normpath(os.path.abspath(target)))
        if mz.dataset_exists(name):
            raise DatasetExistsError(name)
        dataset = mz.Dataset(name)
        dataset.ingest_report = dataset.add_media_dir(target)
        print(f"Created dataset {name!r} from {target}: {dataset.ingest_report}")
        return dataset
    if dataset_name is not None:
        raise mz.DatasetError(f"--dataset-name is for a directory of images or videos, and {target!r} is not a directory")
    raise mz.DatasetNotFoundError(target, mz.list_datasets())


def _model_overrides(args: argparse.Namespace) -> dict:
    overrides = {}
    if args.device:
        overrides["device"] = args.device
    if args.optimize:
        overrides["optimize"] = True
    return overrides


def _describe(label: object) -> str:
    from modelzoo.labels import Classification, Classifications, Detections

    if label is None:
        return "-"
    if isinstance(label, Classification):
        conf = "" if label.confidence is None else f" ({label.confidence:.2f})"
        return f"{label.label}{conf}"
    if isinstance(label, Classifications):
        return ", ".join(_describe(c) for c in label.classifications[:3]) or "(none)"
    if isinstance(label, Detections):
        names = sorted({d.label for d in label.detections})
        return f"{len(label.detections)} detections" + (f": {', '.join(names[:5])}" if names else "")
    return type(label).__name__


def _frames_arg(args: argparse.Namespace) -> Any:
    if args.every is not None and args.fps is not None:
        from modelzoo.errors import ConfigError

        raise ConfigError("--every and --fps choose the frames of videos two ways; give one of them")
    if args.every is not None:
        return {"n": args.every}
    if args.fps is not None:
        return {"fps": args.fps}
    return None


def _connect_in_background() -> Any:
    """Connects to the database (starting the embedded ``mongod``) in a thread,
    while the caller builds its model: a cold start pays the longer of the
    two instead of their sum. Join the returned thread before using the
    database; an error is left for the caller's own connection to raise."""
    import threading

    def connect() -> None:
        try:
            from modelzoo.db.client import connect as db_connect

            db_connect()
        except Exception:  # noqa: BLE001 - the main thread's connect raises it with its message
            pass

    thread = threading.Thread(target=connect, name="modelzoo-db-connect", daemon=True)
    thread.start()
    return thread


def _cmd_apply(args: argparse.Namespace) -> int:
    import os

    from modelzoo import zoo

    frames = _frames_arg(args)
    connecting = _connect_in_background()
    model = zoo.load_zoo_model(args.name, install_requirements=args.install_requirements, **_model_overrides(args))
    connecting.join()
    dataset = _resolve_target(args.target, args.dataset_name)
    report = dataset.apply_model(
        model, label_field=args.label_field, batch_size=args.batch_size, num_workers=args.num_workers,
        confidence_thresh=args.confidence_thresh, progress=None, frames=frames,
    )
    print(f"Applied {args.name} to dataset {dataset.name!r}, field {args.label_field!r}: {report}")
    if args.show:
        rows = []
        for sample in dataset.limit(args.show):
            if sample.media_type == "video":  # frame labels: how many frames have one, and the first
                labelled = sample.frames.values(args.label_field)
                first = next(iter(labelled.items()), None)
                shown = f"{len(labelled)} frames" + (f"; frame {first[0]}: {_describe(first[1])}" if first else "")
            else:
                shown = _describe(sample[args.label_field] if args.label_field in sample else None)
            rows.append((os.path.basename(sample.filepath), shown))
        _print_table(("FILE", args.label_field.upper()), rows)
    return 0 if report.failed == 0 else 1


def _cmd_embed(args: argparse.Namespace) -> int:
    from modelzoo import zoo

    connecting = _connect_in_background()
    model = zoo.load_zoo_model(args.name, install_requirements=args.install_requirements, **_model_overrides(args))
    connecting.join()
    dataset = _resolve_target(args.target, args.dataset_name)
    report = dataset.compute_embeddings(
        model, embeddings_field=args.embeddings_field, batch_size=args.batch_size,
        num_workers=args.num_workers, progress=None,
    )
    print(f"Embedded dataset {dataset.name!r} with {args.name} into field {args.embeddings_field!r}: {report}")
    return 0 if report.failed == 0 else 1


def _cmd_datasets(args: argparse.Namespace) -> int:
    import modelzoo as mz

    names = mz.list_datasets()
    if args.json:
        print(json.dumps([{"name": n, "samples": len(mz.load_dataset(n))} for n in names], indent=2))
        return 0
    if not names:
        print("No datasets.")
        return 0
    _print_table(("NAME", "SAMPLES"), [(n, str(len(mz.load_dataset(n)))) for n in names])
    return 0


def _print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    from modelzoo.text import format_table

    print(format_table(header, rows))


def _add_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", metavar="NAME", help="zoo model, NAME or NAME@VERSION")
    p.add_argument("target", metavar="DATASET_OR_DIR", help="a dataset name, or a directory of images and/or videos to ingest")
    p.add_argument("--dataset-name", help="name of the dataset created from a directory (default: the directory's name)")
    p.add_argument("--batch-size", type=int, help="images per batch (default: the model's)")
    p.add_argument("--num-workers", type=int, help="DataLoader workers (default: automatic)")
    p.add_argument("--device", help="torch device, e.g. cpu or cuda:0 (default: CUDA when available)")
    p.add_argument("--optimize", action="store_true", help="trace and freeze the model before running (slower start)")
    p.add_argument("--install-requirements", action="store_true", help="pip-install missing packages")


def _add_zoo_commands(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = subparsers.add_parser("list", help="list the zoo's models", description="List the zoo's models and whether their weights are on this machine.")
    p.add_argument("--source", nargs="+", metavar="SOURCE",
                   help="only models of these zoo sources (manifests, plugins, torchvision, remote, local, registered)")
    p.add_argument("--tags", nargs="+", metavar="TAG", help="only models with all these tags")
    p.add_argument("--pattern", help="only names matching this glob (or containing this text)")
    p.add_argument("--json", action="store_true", help="print the full entries as JSON")
    p.set_defaults(handler=_cmd_list)

    p = subparsers.add_parser("info", help="show a zoo model's entry", description="Show a zoo model's manifest entry, origin and cache path.")
    p.add_argument("name", metavar="NAME", help="NAME or NAME@VERSION")
    p.add_argument("--json", action="store_true", help="print the entry as JSON")
    p.set_defaults(handler=_cmd_info)

    p = subparsers.add_parser("download", help="download a zoo model's weights", description="Fetch and verify a zoo model's weights (a local copy found by checksum is used when there is one).")
    p.add_argument("name", metavar="NAME", help="NAME or NAME@VERSION")
    p.add_argument("--force", action="store_true", help="download again even if the weights are here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_cmd_download)

    p = subparsers.add_parser("delete", help="delete a zoo model's cached weights", description="Delete a zoo model's cached weights (local sources are never touched).")
    p.add_argument("name", metavar="NAME", help="NAME or NAME@VERSION")
    p.set_defaults(handler=_cmd_delete)

    p = subparsers.add_parser("apply", help="run a zoo model over a dataset or a directory", description="Run a zoo model over a dataset (or a directory of images and videos, ingested first) and store its labels; on videos it runs on their frames (--every, --fps).")
    _add_run_arguments(p)
    p.add_argument("--label-field", default="predictions",
                   help="the sample field that receives the labels (default: predictions, as apply_model)")
    p.add_argument("--confidence-thresh", type=float, help="drop predictions below this confidence")
    p.add_argument("--show", type=int, default=10, metavar="N", help="print the labels of the first N samples (default: 10; 0: none)")
    p.add_argument("--every", type=int, metavar="N", help="on videos: every N-th frame (default: every frame)")
    p.add_argument("--fps", type=float, help="on videos: at most FPS frames per second")
    p.set_defaults(handler=_cmd_apply)

    p = subparsers.add_parser("embed", help="compute embeddings with a zoo model", description="Compute a zoo model's embeddings for a dataset (or a directory of images) and store them.")
    _add_run_arguments(p)
    p.add_argument("--embeddings-field", default="embeddings", help="the sample field that receives the vectors (default: embeddings)")
    p.set_defaults(handler=_cmd_embed)

    p = subparsers.add_parser("datasets", help="list datasets", description="List the datasets in the database and their sizes.")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_cmd_datasets)


# --------------------------------------------------------------------------- evaluation, drawing


_EVAL_TYPES = {"Classification": "classifications", "Detections": "detections", "Segmentation": "segmentations"}


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import os

    import modelzoo as mz
    from modelzoo.evaluation.reading import label_types_in

    dataset = mz.load_dataset(args.dataset)
    kind = args.type
    if kind == "auto":
        found = label_types_in(dataset, args.pred)
        kinds = {_EVAL_TYPES.get(t) for t in found}
        if len(kinds) != 1 or None in kinds:
            raise mz.EvaluationError(
                f"Field {args.pred!r} of {dataset.name!r} holds {', '.join(found) or 'no labels'}: "
                f"expected one of {', '.join(_EVAL_TYPES)} (or pass --type)"
            )
        kind = kinds.pop()
    eval_key = args.eval_key
    if kind == "detections":
        results = dataset.evaluate_detections(args.pred, args.gt, eval_key=eval_key, iou=args.iou)
    elif kind == "classifications":
        results = dataset.evaluate_classifications(args.pred, args.gt, eval_key=eval_key)
    else:
        results = dataset.evaluate_segmentations(args.pred, args.gt, eval_key=eval_key)
    print(f"{kind} {args.pred!r} vs {args.gt!r} on {dataset.name!r}"
          + (f", stored as {eval_key!r}" if eval_key else "") + ":\n")
    print(results.report_text())
    if args.plots:
        stem = os.path.join(args.plots, f"{dataset.name}-{eval_key or 'eval'}")
        written = []
        if kind == "detections" and results.metrics.get("precision") is not None:
            written.append(results.plot_pr_curves(stem + "-pr_curves.png"))
        if kind != "segmentations":
            written.append(results.plot_confusion_matrix(stem + "-confusion_matrix.png"))
        for path in written:
            print(f"wrote {path}")
    return 0


def _cmd_draw(args: argparse.Namespace) -> int:
    import modelzoo as mz
    from modelzoo.drawing import contact_sheet, draw_labels

    dataset = mz.load_dataset(args.dataset)
    view = dataset.limit(args.limit) if args.limit else dataset
    if args.contact_sheet:
        path = contact_sheet(view, args.contact_sheet, args.fields, n=args.limit or 32,
                             gt_fields=args.gt_fields or (), eval_key=args.eval_key)
        print(f"wrote {path}")
    if args.output:
        paths = draw_labels(view, args.output, args.fields, gt_fields=args.gt_fields or (), eval_key=args.eval_key)
        print(f"wrote {len(paths)} images to {args.output}")
    if not (args.output or args.contact_sheet):
        raise mz.DatasetError("modelzoo draw: give --output DIR, --contact-sheet PATH, or both")
    return 0


def _add_eval_commands(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = subparsers.add_parser(
        "evaluate", help="score predictions against ground truth",
        description="Evaluate a dataset's predictions against its ground truth (classifications, "
        "detections COCO-style, or semantic segmentations), print the report and write the plots.",
    )
    p.add_argument("dataset", metavar="DATASET", help="the dataset's name")
    p.add_argument("--pred", required=True, metavar="FIELD", help="the predictions' field")
    p.add_argument("--gt", required=True, metavar="FIELD", help="the ground truth's field")
    p.add_argument("--type", choices=["auto", *_EVAL_TYPES.values()], default="auto",
                   help="what to evaluate (default: from the predictions' label type)")
    p.add_argument("--eval-key", help="store the results (and per-sample/per-object results) under this key")
    p.add_argument("--iou", type=float, default=0.5, help="IoU of the per-object detection results (default: 0.5)")
    p.add_argument("--plots", default=".", metavar="DIR",
                   help="where the PR-curve and confusion-matrix PNGs go (default: .; '' for none)")
    p.set_defaults(handler=_cmd_evaluate)

    p = subparsers.add_parser(
        "draw", help="draw labels onto copies of a dataset's images",
        description="Draw label fields onto copies of the images (one PNG each) and/or tile them into a contact sheet.",
    )
    p.add_argument("dataset", metavar="DATASET", help="the dataset's name")
    p.add_argument("--fields", nargs="+", required=True, metavar="FIELD", help="the label fields to draw")
    p.add_argument("--gt-fields", nargs="+", metavar="FIELD", help="which of them are ground truth (drawn dashed)")
    p.add_argument("--eval-key", help="colour objects by their result under this evaluation (tp/fp/fn)")
    p.add_argument("--output", metavar="DIR", help="write one PNG per sample here")
    p.add_argument("--contact-sheet", metavar="PATH", help="write a contact sheet PNG here")
    p.add_argument("--limit", type=int, metavar="N", help="only the first N samples")
    p.set_defaults(handler=_cmd_draw)
# --------------------------------------------------------------------------- serve


def _cmd_serve(args: argparse.Namespace) -> int:
    import gc
    import os
    import signal

    from modelzoo import zoo
    from modelzoo.errors import RequirementsError
    from modelzoo.serving import defaults

    try:
        from modelzoo.serving.server import ModelServer, is_loopback
    except ImportError as e:  # the serve extra is not installed
        raise RequirementsError(
            f"modelzoo serve needs FastAPI and uvicorn ({e}): pip install 'modelzoo[serve]'"
        ) from None

    port = args.port if args.port is not None else int(os.environ.get("PORT") or defaults.PORT)
    overrides = {"device": args.device} if args.device else {}
    model = zoo.load_zoo_model(args.name, install_requirements=args.install_requirements, **overrides)
    from modelzoo.serving.limits import Limits

    limits = Limits(
        max_body_bytes=args.max_body_bytes, max_file_bytes=args.max_file_bytes, max_pixels=args.max_pixels,
        decode_workers=args.decode_workers, decode_timeout_s=args.decode_timeout_s,
        header_timeout_s=args.header_timeout_s, body_timeout_s=args.body_timeout_s,
    )
    server = ModelServer(
        model, name=args.name, host=args.host, port=port, max_batch_size=args.max_batch_size,
        max_wait_ms=args.max_wait_ms, allow_paths=args.allow_paths, limits=limits,
    )
    if not is_loopback(args.host):
        print(f"modelzoo serve: {args.host} is reachable from other machines, and the server does not "
              "authenticate requests", file=sys.stderr, flush=True)
    # one line a parent process can read the port from
    print(f"Serving {args.name} on {server.url} (POST /predict, GET /readyz, docs at /docs)", flush=True)
    server.run()
    how = signal.Signals(server.stop_signal).name if server.stop_signal else "stopped"
    print(f"modelzoo serve: {args.name} stopped ({how})", flush=True)
    # The process ends now: spare it the interpreter's last collection of torch's heap
    # (measured 3.3 s -> 0.9 s from here to exit on a loaded 2-core machine).
    gc.freeze()
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def _add_serve_commands(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    from modelzoo.serving import defaults

    p = subparsers.add_parser(
        "serve", help="serve a zoo model over HTTP (POST /predict, GET /readyz)",
        description="Serve a zoo model over HTTP on loopback: POST /predict (an image's bytes, base64 or path, "
        "or JSON in the model's request schema), GET /readyz, OpenAPI docs at /docs. Concurrent requests "
        "are batched. The same contract as a Launch runnable image. Ctrl-C or SIGTERM stops it gracefully.",
    )
    p.add_argument("name", metavar="NAME", help="zoo model, NAME or NAME@VERSION")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, help="port (0: a free one; default: $PORT, else 5005 as Launch's images)")
    p.add_argument("--max-batch-size", type=_positive_int, default=defaults.MAX_BATCH_SIZE,
                   help=f"most requests per batch (default: {defaults.MAX_BATCH_SIZE})")
    p.add_argument("--max-wait-ms", type=float, default=defaults.MAX_WAIT_MS,
                   help=f"most a request waits for batch-mates, in ms (default: {defaults.MAX_WAIT_MS:g})")
    p.add_argument("--max-body-bytes", type=_positive_int, default=defaults.MAX_BODY_BYTES,
                   help=f"larger request bodies are answered 413 (default: {defaults.MAX_BODY_BYTES})")
    p.add_argument("--allow-paths", nargs="+", metavar="DIR",
                   help="let requests name image files ({\"path\": ...}) under these folders: regular files only, "
                   "symlinks resolved (default: no path inputs)")
    p.add_argument("--max-file-bytes", type=_positive_int,
                   help="larger files named by a path are answered 413 (default: --max-body-bytes)")
    p.add_argument("--max-pixels", type=_positive_int, default=defaults.MAX_PIXELS,
                   help=f"larger images (width x height) are answered 413 before decoding (default: {defaults.MAX_PIXELS})")
    p.add_argument("--decode-workers", type=_positive_int, default=defaults.DECODE_WORKERS,
                   help=f"threads that read and decode requests (default: {defaults.DECODE_WORKERS})")
    p.add_argument("--decode-timeout-s", type=_positive_float, default=defaults.DECODE_TIMEOUT_S,
                   help=f"a request not decoded in this long is answered 503 (default: {defaults.DECODE_TIMEOUT_S:g})")
    p.add_argument("--header-timeout-s", type=_positive_float, default=defaults.HEADER_TIMEOUT_S,
                   help=f"a client has this long to send a request head, else 408 (default: {defaults.HEADER_TIMEOUT_S:g})")
    p.add_argument("--body-timeout-s", type=_positive_float, default=defaults.BODY_TIMEOUT_S,
                   help=f"... and this long to send its body, else 408 (default: {defaults.BODY_TIMEOUT_S:g})")
    p.add_argument("--device", help="torch device, e.g. cpu or cuda:0 (default: CUDA when available)")
    p.add_argument("--install-requirements", action="store_true", help="pip-install missing packages")
    p.set_defaults(handler=_cmd_serve)


# --------------------------------------------------------------------------- app


def _cmd_app(args: argparse.Namespace) -> int:
    from modelzoo.dataset import list_datasets, load_dataset
    from modelzoo.errors import DatasetError, RequirementsError

    try:
        from modelzoo.app import App
    except ImportError as e:  # the app extra is not installed
        raise RequirementsError(f"modelzoo app needs Starlette and uvicorn ({e}): pip install 'modelzoo[app]'") from None
    name = args.dataset
    if name is None:
        names = list_datasets()
        if len(names) != 1:
            raise DatasetError(
                "modelzoo app: name the dataset to show: " + (", ".join(names) if names else "there are no datasets yet")
            )
        name = names[0]
    app = App(load_dataset(name), port=args.port, cache_dir=args.cache_dir).start()
    print(f"Viewer of {name!r}: {app.url}", flush=True)  # one line a parent process can read
    print("Ctrl-C stops it.", file=sys.stderr, flush=True)
    if args.open:
        import webbrowser

        webbrowser.open(app.url)
    app.wait()  # until Ctrl-C or SIGTERM
    print(f"modelzoo app: viewer of {name!r} stopped", flush=True)
    return 0


def _add_app_commands(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = subparsers.add_parser(
        "app", help="look at a dataset in the browser (grid, labels, filters, videos)",
        description="Start the viewer of a dataset on 127.0.0.1 and print its URL (with its access token). "
        "Ctrl-C stops it.",
    )
    p.add_argument("dataset", nargs="?", metavar="DATASET", help="the dataset (optional when there is only one)")
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    p.add_argument("--cache-dir", metavar="DIR", help="where thumbnails are kept (default: $MODELZOO_HOME/app/thumbnails)")
    p.add_argument("--open", action="store_true", help="open the page in the default browser")
    p.set_defaults(handler=_cmd_app)


# --------------------------------------------------------------------------- wiring


def _group_help(parser: argparse.ArgumentParser) -> Handler:
    """A handler for a bare group (``modelzoo db``): print its usage, exit 2."""

    def handler(args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return 2

    return handler


def build_parser() -> argparse.ArgumentParser:
    """The ``modelzoo`` argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="modelzoo",
        description="Run trained models over image datasets and keep the predictions with the data.",
    )
    parser.set_defaults(handler=_group_help(parser))
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_zoo_commands(subparsers)
    _add_eval_commands(subparsers)
    _add_db_commands(subparsers)
    _add_serve_commands(subparsers)
    _add_app_commands(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the ``modelzoo`` command.

    Args:
        argv: the arguments, without the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit code: 0 on success, 1 on a modelzoo error, 2 on a usage error.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(None if argv is None else list(argv))
    except SystemExit as e:  # --help (0) or a usage error (2): argparse printed it
        return e.code if isinstance(e.code, int) else 2
    try:
        return int(args.handler(args))
    except ModelzooError as e:
        # One line; a multi-line message (a mongod log tail) follows it, indented.
        first, *rest = str(e).splitlines() or [type(e).__name__]
        print(f"modelzoo: error: {first}", file=sys.stderr)
        for line in rest:
            print(f"  {line}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("modelzoo: interrupted", file=sys.stderr)
        return 130
