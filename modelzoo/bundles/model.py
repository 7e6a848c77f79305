"""``BundleModel``: a bundle as a :class:`modelzoo.Model`.

The adapter translates and does nothing else: the bundle's input kind
becomes the model's loader (run in the engine's loader workers), ``with
model:`` loads the bundle (or starts its server), each input becomes one
request, validated against the request schema; each answer is validated
against the response schema and converted (Labels stay Labels, Nucleus boxes
become Detections, other JSON is stored as plain fields). Batching, failures
and writing stay in the engine.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..labels import Label
from ..loaders import LOADER_KINDS, Loader, WorkItem
from ..mixins import SamplesMixin
from ..models import Model
from ..recipes import Recipe
from ..signing import key_path
from . import nucleus
from .artifacts import extract_tops, import_function, load_pickle, safe_extract, tree_digest, zip_digest
from .bundle import INPUTS, ModelBundle, thaw
from .calling import accepted_keywords, call_predict, check_conventions, load_predict
from .errors import BundleConfigError, UntrustedBundleError
from .flavors import RUNNABLE_FLAVORS
from .schemas import Schema
from .store import BundleStore, read_checked

__all__ = ["BundleModel", "NoFileLoader", "resolve_code"]

OUTPUTS = ("auto", "detections", "json")

#: sample fields read for every item: the image size, to make Nucleus boxes relative
_SIZE_FIELDS = {"__mz_width": "metadata.width", "__mz_height": "metadata.height"}


class NoFileLoader(Loader):
    """For request-dict bundles: nothing is read from the file (the request is
    built from sample fields)."""

    def load(self, item: WorkItem) -> None:
        return None


#: a bundle's ``input`` -> its loader: the core's kinds, and requests built from sample fields
_LOADERS: Dict[str, Callable[[], Loader]] = {**LOADER_KINDS, "request": NoFileLoader}


def _extract_code(bundle: ModelBundle) -> Tuple[str, List[str], List[str]]:
    """The bundle's ``code.zip``, checked against its signed sha256, extracted
    (once per bundle; the extraction is checked file by file on every use and
    extracted again when it changed)."""
    store = BundleStore()
    zip_path = store.path(bundle.id, "code.zip")
    if not os.path.isfile(zip_path):
        raise BundleConfigError(f"Bundle {bundle.name!r} ({bundle.id}): its code {zip_path} is missing")
    data = read_checked(zip_path, bundle.artifact_sha256, bundle.name)
    want = zip_digest(data)
    tops, modules = extract_tops(data)
    root = store.path(bundle.id, "code")
    if os.path.isdir(root) and tree_digest(root) != want:
        shutil.rmtree(root, ignore_errors=True)  # changed since it was extracted: extract it again
    if not os.path.isdir(root):
        tmp = tempfile.mkdtemp(prefix=".code-", dir=os.path.dirname(root))
        safe_extract(data, tmp)
        try:
            os.rename(tmp, root)
        except OSError:  # another process extracted it first
            shutil.rmtree(tmp, ignore_errors=True)
    if tree_digest(root) != want:
        raise UntrustedBundleError(
            f"Bundle {bundle.name!r} ({bundle.id}): its extracted code in {root} does not match its code.zip "
            "(something changes it while it is used), so it is not imported. Remove that directory and retry."
        )
    return root, tops, modules


def _what_runs(bundle: ModelBundle) -> str:
    kind = bundle.flavor.flavor
    if kind in ("runnable_image", "triton_enhanced_runnable_image"):
        return f"runs the command {list(getattr(bundle.flavor, 'command', []) or [])!r:.200}"
    if kind == "zip_artifact":
        return "imports the Python code of its code.zip"
    return "unpickles its functions (unpickling runs arbitrary code)"


def resolve_code(bundle: ModelBundle, trust: bool) -> Dict[str, Any]:
    """The bundle's callables and schemas: from this object when it holds
    them, else from its stored artifacts.

    A bundle read from the store runs only when its record carries this
    user's signature (see :meth:`BundleStore.trusted_files`) or the caller
    passes ``trust``; its files are checked against the sha256 the record gives.

    Returns:
        ``{load_predict_fn, load_model_fn, model, request_schema, response_schema}``
        (the functions are None for a runnable bundle).

    Raises:
        UntrustedBundleError: a stored record not signed by this user, and not
            ``trust``; or a file that changed since it was stored.
    """
    kind = bundle.flavor.flavor
    store = BundleStore()
    if kind == "cloudpickle_artifact" and bundle.load_predict_fn is not None:
        return {k: getattr(bundle, k) for k in ("load_predict_fn", "load_model_fn", "model", "request_schema", "response_schema")}
    digests = store.trusted_files(bundle)
    if digests is None and not trust:
        raise UntrustedBundleError(
            f"Bundle {bundle.name!r} ({bundle.id}) {_what_runs(bundle)}, and its record is not signed by this "
            f"user's modelzoo key ({key_path()}): another user or process wrote it, or it was changed since it was "
            "stored, so it is not run. Create it again as its owner, or, if you trust its author, pass trust=True "
            "(bundle.to_model(trust=True) or load_zoo_model(name, trust=True))."
        )
    digests = digests or {}

    def stored(name: str, expected: str = "") -> Tuple[str, bytes]:
        path = store.path(bundle.id, name)
        return path, read_checked(path, expected or digests.get(name, ""), bundle.name)

    if kind == "cloudpickle_artifact":
        path, data = stored("callables.pkl", bundle.artifact_sha256)
        return load_pickle(data, path, True, bundle.name, "functions and schemas")
    parts: Dict[str, Any] = {"load_predict_fn": None, "load_model_fn": None, "model": None}
    if bundle.holds_code:
        parts.update(request_schema=bundle.request_schema, response_schema=bundle.response_schema)
    else:
        path, data = stored("schemas.pkl")
        parts.update(load_pickle(data, path, True, bundle.name, "schemas"))
    if kind == "zip_artifact":
        flavor = bundle.flavor
        root, tops, modules = _extract_code(bundle)
        parts["load_predict_fn"] = import_function(
            root, tops, flavor.load_predict_fn_module_path, "load_predict_fn_module_path", bundle.name, modules  # type: ignore[union-attr]
        )
        parts["load_model_fn"] = import_function(
            root, tops, flavor.load_model_fn_module_path, "load_model_fn_module_path", bundle.name, modules  # type: ignore[union-attr]
        )
        check_conventions(bundle.name, parts["load_predict_fn"], parts["load_model_fn"], None, bundle.app_config)
    return parts


def _image_size(arg: Any) -> Optional[Tuple[int, int]]:
    """``(width, height)`` of a loaded input, reading only a header for bytes and paths."""
    if isinstance(arg, np.ndarray) and arg.ndim >= 2:
        return int(arg.shape[1]), int(arg.shape[0])
    if hasattr(arg, "size") and isinstance(arg.size, tuple):
        return tuple(arg.size)  # type: ignore[return-value]
    if isinstance(arg, (bytes, bytearray, str)):
        from PIL import Image

        try:
            with Image.open(io.BytesIO(arg) if isinstance(arg, (bytes, bytearray)) else arg) as img:
                return img.size
        except (OSError, ValueError):
            return None
    return None


def _jsonable(value: Any, bundle: str) -> Any:
    if value is None or type(value) in (int, float, str, bool):
        return value  # the common answers, without a trial encoding
    try:
        json.dumps(value, default=lambda o: o.tolist() if isinstance(o, (np.ndarray, np.generic)) else _fail(o))
    except TypeError as e:
        raise TypeError(
            f"Bundle {bundle!r} returned {type(value).__name__} ({e}), which cannot be stored: return Labels, "
            "Nucleus box dicts or JSON data (or declare a response_schema that converts it)"
        ) from None
    return value


def _fail(o: Any) -> Any:
    raise TypeError(f"{type(o).__name__} is not JSON data")


class _InProcess:
    """The bundle's ``predict_fn``, built by Launch's convention."""

    def __init__(self, parts: Mapping[str, Any], app_config: Any, bundle: str = ""):
        self.predict_fn = load_predict(
            parts["load_predict_fn"], parts["load_model_fn"], parts["model"], thaw(app_config), bundle
        )
        self.accepted = accepted_keywords(self.predict_fn) if parts.get("request_schema") is not None else None

    def __call__(self, request: Any) -> Any:
        return call_predict(self.predict_fn, request, self.accepted)

    def close(self) -> None:
        pass


class BundleModel(SamplesMixin, Model):
    """A :class:`ModelBundle` as a :class:`modelzoo.Model` (see :meth:`ModelBundle.to_model`).

    ``predict(x)`` takes what the bundle's input kind says (bytes, a path, an
    array, a PIL image; for ``"request"``, a dict of arguments) and returns
    Labels or JSON data. ``with model:`` loads the bundle once (a runnable
    bundle: starts its server, stopped on exit); ``predict`` outside ``with``
    loads it on first use, and :meth:`close` (or interpreter exit) stops it.
    """

    def __init__(
        self,
        bundle: ModelBundle,
        input: Optional[str] = None,
        input_fields: Optional[Mapping[str, str]] = None,
        output: str = "auto",
        trust: bool = False,
        validate: bool = True,
    ):
        super().__init__()
        self.bundle = bundle
        self.input = input or bundle.input
        if self.input not in INPUTS:
            raise BundleConfigError(f"Bundle {bundle.name!r}: input must be one of {list(INPUTS)}, got {self.input!r}")
        if output not in OUTPUTS:
            raise BundleConfigError(f"Bundle {bundle.name!r}: output must be one of {list(OUTPUTS)}, got {output!r}")
        self.output = output
        self.input_fields = dict(input_fields if input_fields is not None else thaw(bundle.input_fields))
        clash = set(self.input_fields) & set(_SIZE_FIELDS)
        if clash:
            raise BundleConfigError(f"input_fields cannot use the reserved names {sorted(clash)}")
        self.needs_fields = {**_SIZE_FIELDS, **self.input_fields}
        parts = resolve_code(bundle, trust)  # a pickle this process did not make fails here, before any run
        self._parts = parts
        self._trust, self._validate = trust, validate
        self._request_schema = Schema(parts["request_schema"]) if validate and parts.get("request_schema") else None
        self._response_schema = Schema(parts["response_schema"]) if validate and parts.get("response_schema") else None
        self._runner: Any = None
        self._depth = 0

    def __repr__(self) -> str:
        return f"BundleModel({self.bundle!r}, input={self.input!r})"

    def rebuild_recipe(self) -> Recipe:
        """How another process (a Ray replica, an unpickling) builds this
        model: it loads the stored bundle of this id and calls ``to_model``
        with this model's options. The code never travels; the other process
        reads the record and checks its signature itself, as any load does
        (:meth:`~modelzoo.bundles.BundleStore.trusted_files`). ``trust=True``
        travels only when the caller gave it to this model; the recipe never
        adds it, so a model of an unsigned record built without it cannot be
        rebuilt elsewhere either.

        Raises:
            BundleConfigError: the bundle is not stored (built in this process
                only): says how to store it.
        """
        from .zoo_source import is_stored, load_bundle

        if not is_stored(self.bundle.id):
            raise BundleConfigError(
                f"Bundle {self.bundle.name!r} ({self.bundle.id}) is not stored, so another process cannot load it: "
                "a BundleModel travels as the id of its stored, signed bundle, never as pickled code. Store it with "
                "LaunchClient().create_model_bundle_from_callable_v2(...) (or _from_dirs_v2, _from_runnable_image_v2) "
                "and use client.get_model_bundle_v2(bundle_id).to_model(), or pass "
                "modelzoo.recipes.Recipe.factory(fn).build() with fn a module-level function that builds the model."
            )
        options: Dict[str, Any] = {
            "input": self.input, "input_fields": dict(self.input_fields), "output": self.output, "validate": self._validate,
        }
        if self._trust:
            options["trust"] = True  # the caller's own decision for this bundle, never the record's
        return Recipe.factory(load_bundle, self.bundle.id, **options)

    # -- lifecycle -------------------------------------------------------------------------
    def build_loader(self) -> Loader:
        return _LOADERS[self.input]()

    def _start(self) -> Any:
        if self._runner is None:
            if self.bundle.flavor.flavor in RUNNABLE_FLAVORS:
                from .runnable import start_server

                self._runner = start_server(self.bundle)
            else:
                self._runner = _InProcess(self._parts, self.bundle.app_config, self.bundle.name)
        return self._runner

    def __enter__(self) -> "BundleModel":
        self._start()
        self._depth += 1
        return self

    def __exit__(self, *exc: Any) -> None:
        self._depth -= 1
        if self._depth <= 0:
            self._depth = 0
            self.close()

    def close(self) -> None:
        """Stops a runnable bundle's server (an in-process bundle stays loaded)."""
        runner = self._runner
        if runner is not None and not isinstance(runner, _InProcess):
            self._runner = None
            runner.close()

    def check_sample_fields(self, names: Sequence[str]) -> None:
        """Refuses an ``apply_model`` run before any sample runs when a
        ``"request"`` bundle has no ``input_fields``, or maps an argument to a
        field no sample has (``apply_model`` calls it with the samples' fields).

        Raises:
            BundleConfigError: naming the arguments, the fields the samples
                have, and the ``input_fields=`` to write.
        """
        if self.input != "request":
            return
        have = [n for n in names if not n.startswith("_")]
        schema = Schema(self._parts["request_schema"]) if self._parts.get("request_schema") else None
        args = (schema.field_names() if schema is not None else None) or []
        if not self.input_fields:
            guess = {a: a if a in have else "<sample field>" for a in args if a != "kind"}
            example = guess or {"<argument>": "<sample field>"}
            raise BundleConfigError(
                f"Bundle {self.bundle.name!r} takes input='request': each sample becomes a dict of arguments "
                f"read from sample fields, but no input_fields says which field feeds which argument"
                + (f" (its request_schema {schema.name} takes {', '.join(args)})" if schema is not None else "")
                + f". Pass to_model(input='request', input_fields={example!r}) (or load_zoo_model(name, "
                f"input_fields=...)). The samples have the fields: {', '.join(have) or '(none)'}."
            )
        missing = {a: f for a, f in self.input_fields.items() if f.split(".")[0] not in have}
        if missing:
            from ..errors import did_you_mean

            hints = "".join(f" {f!r}:{did_you_mean(f.split('.')[0], have, n=1) or ' no close match.'}" for f in missing.values())
            raise BundleConfigError(
                f"Bundle {self.bundle.name!r}: input_fields maps {', '.join(f'{a!r} -> {f!r}' for a, f in missing.items())}, "
                f"but no sample has that field.{hints} The samples have the fields: {', '.join(have) or '(none)'}. "
                "Fix input_fields={argument: sample field}, or set the field on the samples first."
            )

    # -- inference -------------------------------------------------------------------------
    def request_for(self, arg: Any, sample: Optional[Mapping[str, Any]] = None) -> Any:
        """The request ``predict`` sends for one input: the input itself, or for
        ``"request"`` bundles a dict built from the sample's fields (or ``arg``
        when it already is a dict)."""
        if self.input != "request":
            return arg
        if isinstance(arg, Mapping):
            return dict(arg)
        given = dict(sample or {})
        return {name: given.get(name) for name in self.input_fields}

    def predict(self, arg: Any, sample: Optional[Dict[str, Any]] = None) -> Any:
        runner = self._start()
        request = self.request_for(arg, sample)
        if self._request_schema is not None:
            request = self._request_schema.validate(request, self.bundle.name, "request")
        out = runner(request)
        if self._response_schema is not None:
            out = self._response_schema.validate(out, self.bundle.name, "response", mode="json")
        return self._convert(out, arg, sample)

    def predict_all(self, args: Sequence[Any], samples: Optional[Sequence[Optional[Dict[str, Any]]]] = None) -> List[Any]:
        given = samples if samples is not None else [None] * len(args)
        return [self.predict(a, s) for a, s in zip(args, given)]

    def _size(self, arg: Any, sample: Optional[Mapping[str, Any]]) -> Tuple[int, int]:
        s = sample or {}
        if s.get("__mz_width") and s.get("__mz_height"):
            return int(s["__mz_width"]), int(s["__mz_height"])
        size = _image_size(arg)
        if size is None:
            raise ValueError(
                f"Bundle {self.bundle.name!r} returned Nucleus boxes (pixels), but the image size is unknown: "
                "the sample has no metadata.width/height and the input is not an image"
            )
        return size

    def _convert(self, out: Any, arg: Any, sample: Optional[Mapping[str, Any]]) -> Any:
        if self.output == "json":
            return _jsonable(out, self.bundle.name)
        if out is None or isinstance(out, Label):
            return out
        if isinstance(out, Mapping) and out and all(isinstance(v, Label) or v is None for v in out.values()):
            return dict(out)
        if nucleus.is_box_list(out) or (self.output == "detections" and isinstance(out, (list, tuple)) and not out):
            width, height = self._size(arg, sample)
            return nucleus.detections_from_boxes(out, width, height)
        if self.output == "detections":
            raise ValueError(
                f"Bundle {self.bundle.name!r} returned {type(out).__name__} {out!r:.120}; output='detections' "
                "expects a list of Nucleus boxes ({'geometry': {x, y, width, height}, 'type': 'box', ...})"
            )
        return _jsonable(out, self.bundle.name)
