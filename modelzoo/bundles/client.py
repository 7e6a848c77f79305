"""``LaunchClient``: Scale Launch's client API, run locally.

The method names and keyword arguments are those of ``launch.LaunchClient``
(``scale-launch`` 0.4), so Launch code runs with one changed import::

    from modelzoo.bundles import LaunchClient     # was: from launch import LaunchClient

Bundles are stored in the modelzoo database and under ``MODELZOO_HOME``
(:mod:`modelzoo.bundles.store`). Arguments that only matter to a remote
cluster (``api_key``, ``pytorch_image_tag``, ``repository``, ``tag``...) are
accepted and recorded (``bundle.remote`` / ``bundle.flavor``), never used;
the API key is not stored.

modelzoo additions, all keyword-only and optional: ``input`` /
``input_fields`` (what ``predict_fn`` receives under ``apply_model``, see
:class:`~modelzoo.bundles.ModelBundle`), ``model`` (instead of
``load_model_fn``) and ``readiness_timeout_seconds``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import os
import shutil
import tempfile
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Union

from .artifacts import extract_tops, import_function, pickle_callables, pickle_schemas, safe_extract, zip_directories
from .bundle import UNSET, ModelBundle
from .calling import check_conventions
from .errors import BundleConfigError
from .flavors import (
    CloudpickleArtifactFlavor,
    RunnableImageFlavor,
    StreamingEnhancedRunnableImageFlavor,
    TritonEnhancedRunnableImageFlavor,
    ZipArtifactFlavor,
)
from .legacy import LegacyBundleMethods
from .store import BundleStore

__all__ = ["LaunchClient", "CreateModelBundleV2Response", "ListModelBundlesV2Response", "parse_requirements"]


@dataclasses.dataclass(frozen=True)
class CreateModelBundleV2Response:
    """What the create and clone methods return (as Launch's client does)."""

    model_bundle_id: str


@dataclasses.dataclass(frozen=True)
class ListModelBundlesV2Response:
    """What :meth:`LaunchClient.list_model_bundles_v2` returns; iterable."""

    model_bundles: List[ModelBundle]

    def __iter__(self) -> Iterator[ModelBundle]:
        return iter(self.model_bundles)

    def __len__(self) -> int:
        return len(self.model_bundles)


def parse_requirements(text: str) -> List[str]:
    """Requirement lines from a ``requirements.txt``: blank lines and comments
    (whole-line and trailing ``  # ...``) are skipped."""
    out = []
    for line in text.splitlines():
        line = line.split(" #", 1)[0].split("\t#", 1)[0].strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


def _framework(
    pytorch_image_tag: Optional[str],
    tensorflow_version: Optional[str],
    custom_base_image_repository: Optional[str],
    custom_base_image_tag: Optional[str],
) -> Dict[str, Any]:
    given = [n for n, v in (("pytorch_image_tag", pytorch_image_tag), ("tensorflow_version", tensorflow_version),
                            ("custom_base_image_repository", custom_base_image_repository)) if v is not None]
    if len(given) > 1:
        raise BundleConfigError(
            f"Give at most one base image choice (Launch requires exactly one), got {given}"
        )
    if pytorch_image_tag is not None:
        return {"framework_type": "pytorch", "pytorch_image_tag": pytorch_image_tag}
    if tensorflow_version is not None:
        return {"framework_type": "tensorflow", "tensorflow_version": tensorflow_version}
    if custom_base_image_repository is not None:
        return {"framework_type": "custom_base_image", "image_repository": custom_base_image_repository,
                "image_tag": custom_base_image_tag}
    return {"framework_type": "none"}


def _app_config(app_config: Union[Mapping[str, Any], str, None]) -> Optional[Dict[str, Any]]:
    """A dict, or (as Launch allows) the path of a YAML file holding one."""
    if app_config is None or isinstance(app_config, Mapping):
        return None if app_config is None else dict(app_config)
    if isinstance(app_config, str):
        import yaml

        with open(app_config) as f:
            loaded = yaml.safe_load(f)
        if not isinstance(loaded, dict):
            raise BundleConfigError(f"app_config file {app_config!r} must hold a mapping, got {type(loaded).__name__}")
        return loaded
    raise BundleConfigError(f"app_config must be a dict or a YAML file path, got {type(app_config).__name__}")


def _source(fn: Any) -> str:
    try:
        return inspect.getsource(fn)
    except (OSError, TypeError):
        return ""


def _find(path: str, base_paths: Sequence[str]) -> str:
    candidates = [path] + [os.path.join(b, path) for b in base_paths]
    for c in candidates:
        if os.path.isfile(c):
            return c
    raise BundleConfigError(
        f"requirements_path {path!r} not found; looked at {', '.join(repr(c) for c in candidates)}"
    )


class LaunchClient(LegacyBundleMethods):
    """A local stand-in for ``launch.LaunchClient``: same methods (the 18
    bundle methods of ``scale-launch`` 0.4: v2, the deprecated v1 ones and
    docker-image batch-job bundles, see :mod:`.legacy`), bundles kept in the
    modelzoo database.

    Args:
        api_key: accepted for compatibility; never stored or sent anywhere.
        endpoint, self_hosted, use_path_with_custom_endpoint: accepted, recorded on the client.
    """

    def __init__(
        self,
        api_key: Optional[str] = None,
        endpoint: Optional[str] = None,
        self_hosted: bool = False,
        use_path_with_custom_endpoint: bool = False,
    ):
        self.endpoint = endpoint
        self.self_hosted = self_hosted
        self.use_path_with_custom_endpoint = use_path_with_custom_endpoint
        self._store = BundleStore()

    # -- creation ---------------------------------------------------------------------------
    def create_model_bundle_from_callable_v2(
        self,
        *,
        model_bundle_name: str,
        load_predict_fn: Callable[..., Any],
        load_model_fn: Optional[Callable[..., Any]] = None,
        request_schema: Optional[type] = None,
        response_schema: Optional[type] = None,
        requirements: Optional[List[str]] = None,
        pytorch_image_tag: Optional[str] = None,
        tensorflow_version: Optional[str] = None,
        custom_base_image_repository: Optional[str] = None,
        custom_base_image_tag: Optional[str] = None,
        app_config: Union[Mapping[str, Any], str, None] = None,
        metadata: Optional[Dict[str, Any]] = None,
        model: Any = None,
        input: str = "bytes",
        input_fields: Optional[Mapping[str, str]] = None,
    ) -> CreateModelBundleV2Response:
        """Creates a bundle from ``load_model_fn`` (or ``model``) and
        ``load_predict_fn``, saved with cloudpickle.

        Raises:
            BundleConfigError: the functions do not take the arguments Launch
                gives them for this ``app_config`` (both conventions are shown).
        """
        flavor = CloudpickleArtifactFlavor(
            framework=_framework(pytorch_image_tag, tensorflow_version, custom_base_image_repository, custom_base_image_tag),
            load_predict_fn=_source(load_predict_fn),
            load_model_fn=_source(load_model_fn) if load_model_fn is not None else "",
        )
        config = _app_config(app_config)
        check_conventions(model_bundle_name, load_predict_fn, load_model_fn, model, config)
        draft = ModelBundle(
            name=model_bundle_name, flavor=flavor, load_predict_fn=load_predict_fn, load_model_fn=load_model_fn,
            model=model, app_config=config, request_schema=request_schema, response_schema=response_schema,
            requirements=tuple(requirements or ()), metadata=metadata or {}, input=input,
            input_fields=input_fields or {}, artifact_sha256="-",
        )
        blob = pickle_callables(draft)
        bundle = dataclasses.replace(draft, artifact_sha256=hashlib.sha256(blob).hexdigest(), id="")
        return CreateModelBundleV2Response(self._store.save(bundle, {"callables.pkl": blob}).id)

    def create_model_bundle_from_dirs_v2(
        self,
        *,
        model_bundle_name: str,
        base_paths: List[str],
        load_predict_fn_module_path: str,
        load_model_fn_module_path: str,
        request_schema: Optional[type] = None,
        response_schema: Optional[type] = None,
        requirements_path: Optional[str] = None,
        pytorch_image_tag: Optional[str] = None,
        tensorflow_version: Optional[str] = None,
        custom_base_image_repository: Optional[str] = None,
        custom_base_image_tag: Optional[str] = None,
        app_config: Union[Mapping[str, Any], str, None] = None,
        metadata: Optional[Dict[str, Any]] = None,
        input: str = "bytes",
        input_fields: Optional[Mapping[str, str]] = None,
    ) -> CreateModelBundleV2Response:
        """Creates a bundle from directories of code, zipped. Each directory is
        stored under its own name; a module path may be written from inside
        it (``predict.my_fn``) or with it (``mydir.predict.my_fn``).

        Raises:
            BundleConfigError: a module path not in the zip (the modules found
                are listed), a function of the wrong arity, a missing
                ``requirements_path``.
        """
        data = zip_directories(base_paths)
        tops, modules = extract_tops(data)
        requirements: List[str] = []
        if requirements_path is not None:
            with open(_find(requirements_path, base_paths)) as f:
                requirements = parse_requirements(f.read())
        config = _app_config(app_config)
        # Check now that both functions import and take Launch's arguments.
        tmp = tempfile.mkdtemp(prefix="modelzoo-bundle-check-")
        try:
            safe_extract(data, tmp)
            predict_fn = import_function(tmp, tops, load_predict_fn_module_path, "load_predict_fn_module_path", model_bundle_name, modules)
            model_fn = import_function(tmp, tops, load_model_fn_module_path, "load_model_fn_module_path", model_bundle_name, modules)
            check_conventions(model_bundle_name, predict_fn, model_fn, None, config)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        flavor = ZipArtifactFlavor(
            load_predict_fn_module_path=load_predict_fn_module_path,
            load_model_fn_module_path=load_model_fn_module_path,
            framework=_framework(pytorch_image_tag, tensorflow_version, custom_base_image_repository, custom_base_image_tag),
            modules=tuple(modules),
        )
        bundle = ModelBundle(
            name=model_bundle_name, flavor=flavor, app_config=config, request_schema=request_schema,
            response_schema=response_schema, requirements=tuple(requirements), metadata=metadata or {},
            input=input, input_fields=input_fields or {}, artifact_sha256=hashlib.sha256(data).hexdigest(),
        )
        files = {"code.zip": data}
        if bundle.has_schemas:
            files["schemas.pkl"] = pickle_schemas(request_schema, response_schema)
        return CreateModelBundleV2Response(self._store.save(bundle, files).id)

    def create_model_bundle_from_runnable_image_v2(
        self,
        *,
        model_bundle_name: str,
        request_schema: Optional[type] = None,
        response_schema: Optional[type] = None,
        repository: str = "",
        tag: str = "",
        command: List[str],
        healthcheck_route: Optional[str] = None,
        predict_route: Optional[str] = None,
        env: Optional[Dict[str, str]] = None,
        readiness_initial_delay_seconds: float = 120,
        metadata: Optional[Dict[str, Any]] = None,
        readiness_timeout_seconds: float = 60,
        input: str = "request",
        input_fields: Optional[Mapping[str, str]] = None,
    ) -> CreateModelBundleV2Response:
        """Creates a bundle that runs ``command`` as an HTTP server (``POST
        /predict``, ``GET /readyz``) on the port in ``$PORT``."""
        flavor = RunnableImageFlavor(**self._runnable_args(
            repository, tag, command, healthcheck_route, predict_route, env, readiness_initial_delay_seconds,
            readiness_timeout_seconds,
        ))
        return self._save_runnable(model_bundle_name, flavor, request_schema, response_schema, metadata, input, input_fields)

    def create_model_bundle_from_streaming_enhanced_runnable_image_v2(
        self,
        *,
        model_bundle_name: str,
        request_schema: Optional[type] = None,
        response_schema: Optional[type] = None,
        repository: str = "",
        tag: str = "",
        command: Optional[List[str]] = None,
        healthcheck_route: Optional[str] = None,
        predict_route: Optional[str] = None,
        streaming_command: List[str],
        streaming_predict_route: Optional[str] = None,
        env: Optional[Dict[str, str]] = None,
        readiness_initial_delay_seconds: float = 120,
        metadata: Optional[Dict[str, Any]] = None,
        readiness_timeout_seconds: float = 60,
        input: str = "request",
        input_fields: Optional[Mapping[str, str]] = None,
    ) -> CreateModelBundleV2Response:
        """As :meth:`create_model_bundle_from_runnable_image_v2`, for a server
        that also streams answers (server-sent events) on
        ``streaming_predict_route`` (default ``/stream``). Locally ``command``
        runs (or ``streaming_command`` when there is no ``command``) and
        requests go to ``POST predict_route``; the streaming route is recorded."""
        args = self._runnable_args(
            repository, tag, command or streaming_command, healthcheck_route, predict_route, env,
            readiness_initial_delay_seconds, readiness_timeout_seconds,
        )
        streaming = self._runnable_args(repository, tag, streaming_command, None, None, None, 0, 0)["command"]
        args["command"] = tuple(command or ())
        flavor = StreamingEnhancedRunnableImageFlavor(
            **args, streaming_command=streaming, streaming_predict_route=streaming_predict_route or "/stream",
        )
        return self._save_runnable(model_bundle_name, flavor, request_schema, response_schema, metadata, input, input_fields)

    def create_model_bundle_from_triton_enhanced_runnable_image_v2(
        self,
        *,
        model_bundle_name: str,
        request_schema: Optional[type] = None,
        response_schema: Optional[type] = None,
        repository: str = "",
        tag: str = "",
        command: List[str],
        healthcheck_route: Optional[str] = None,
        predict_route: Optional[str] = None,
        env: Optional[Dict[str, str]] = None,
        readiness_initial_delay_seconds: float = 120,
        triton_model_repository: str = "",
        triton_model_replicas: Optional[Dict[str, str]] = None,
        triton_num_cpu: float = 1.0,
        triton_commit_tag: str = "",
        triton_storage: Optional[str] = None,
        triton_memory: Optional[str] = None,
        triton_readiness_initial_delay_seconds: float = 300,
        metadata: Optional[Dict[str, Any]] = None,
        readiness_timeout_seconds: float = 60,
        input: str = "request",
        input_fields: Optional[Mapping[str, str]] = None,
    ) -> CreateModelBundleV2Response:
        """As :meth:`create_model_bundle_from_runnable_image_v2`, with
        ``tritonserver`` started beside the command (every ``triton_*`` field
        is recorded; running it needs ``tritonserver`` on ``PATH``)."""
        flavor = TritonEnhancedRunnableImageFlavor(
            **self._runnable_args(
                repository, tag, command, healthcheck_route, predict_route, env, readiness_initial_delay_seconds,
                readiness_timeout_seconds,
            ),
            triton_model_repository=triton_model_repository,
            triton_model_replicas=dict(triton_model_replicas) if triton_model_replicas is not None else None,
            triton_num_cpu=float(triton_num_cpu),
            triton_commit_tag=triton_commit_tag,
            triton_storage=triton_storage,
            triton_memory=triton_memory,
            triton_readiness_initial_delay_seconds=float(triton_readiness_initial_delay_seconds),
        )
        return self._save_runnable(model_bundle_name, flavor, request_schema, response_schema, metadata, input, input_fields)

    @staticmethod
    def _runnable_args(
        repository: str, tag: str, command: Sequence[str], healthcheck_route: Optional[str], predict_route: Optional[str],
        env: Optional[Mapping[str, str]], delay: float, timeout: float,
    ) -> Dict[str, Any]:
        if isinstance(command, str) or not command or not all(isinstance(a, str) for a in command):
            raise BundleConfigError(f"command must be a non-empty list of strings, got {command!r}")
        return dict(
            repository=repository, tag=tag, command=tuple(command), env=dict(env or {}),
            readiness_initial_delay_seconds=float(delay), readiness_timeout_seconds=float(timeout),
            predict_route=predict_route or "/predict", healthcheck_route=healthcheck_route or "/readyz",
        )

    def _save_runnable(
        self, name: str, flavor: Any, request_schema: Any, response_schema: Any, metadata: Any, input: str,
        input_fields: Optional[Mapping[str, str]],
    ) -> CreateModelBundleV2Response:
        bundle = ModelBundle(
            name=name, flavor=flavor, request_schema=request_schema, response_schema=response_schema,
            metadata=metadata or {}, input=input, input_fields=input_fields or {},
        )
        files = {"schemas.pkl": pickle_schemas(request_schema, response_schema)} if bundle.has_schemas else {}
        return CreateModelBundleV2Response(self._store.save(bundle, files).id)

    # -- reading ----------------------------------------------------------------------------
    def get_model_bundle_v2(self, model_bundle_id: str) -> ModelBundle:
        """The bundle with this id.

        Raises:
            BundleNotFoundError: no such id.
        """
        return self._store.get(model_bundle_id)

    def get_latest_model_bundle_v2(self, model_bundle_name: str) -> ModelBundle:
        """The newest bundle named ``model_bundle_name``.

        Raises:
            BundleNotFoundError: no bundle has that name.
        """
        return self._store.latest(model_bundle_name)

    def list_model_bundles_v2(self) -> ListModelBundlesV2Response:
        """Every stored bundle, newest first."""
        return ListModelBundlesV2Response(self._store.list())

    def clone_model_bundle_with_changes_v2(
        self, original_model_bundle_id: str, new_app_config: Any = UNSET
    ) -> CreateModelBundleV2Response:
        """A new bundle with the original's code and ``new_app_config``; it
        records its parent (``parent_id``, ``metadata["__cloned_from_bundle_id"]``)
        and shows its own ``app_config``.

        Args:
            original_model_bundle_id: the bundle to clone.
            new_app_config: the clone's config. Omitted: the original's; an
                explicit None clears it (Launch cannot clear one).
        """
        original = self._store.get(original_model_bundle_id)
        config = _app_config(new_app_config) if new_app_config is not UNSET else UNSET
        clone = original.with_changes(app_config=config)
        return CreateModelBundleV2Response(self._store.save_clone(original, clone).id)
