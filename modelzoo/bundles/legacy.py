"""Launch's deprecated v1 bundle methods and its docker-image batch-job
bundles, on :class:`~modelzoo.bundles.LaunchClient` (as a mixin).

The v1 methods map onto the v2 ones: ``env_params`` (Launch's framework
record, e.g. ``{"framework_type": "pytorch", "pytorch_image_tag": "..."}``)
is recorded as the bundle's framework; ``create_model_bundle`` takes exactly
one of ``predict_fn_or_cls``, ``load_predict_fn`` + ``model`` or
``load_predict_fn`` + ``load_model_fn``, as Launch does; a bundle is named by
its name or given as a :class:`ModelBundle`. Docker-image batch-job bundles
(a container run once over a job's inputs) are recorded and listed, not run.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
from typing import Any, Dict, List, Mapping, Optional, Union

from .bundle import UNSET, ModelBundle
from .errors import BundleConfigError, BundleNotFoundError

__all__ = ["LegacyBundleMethods", "DockerImageBatchJobBundle"]

@dataclasses.dataclass(frozen=True)
class DockerImageBatchJobBundle:
    """A recorded docker-image batch-job bundle (Launch's
    ``DockerImageBatchJobBundleResponse``)."""

    id: str
    name: str
    created_at: str
    image_repository: str
    image_tag: str
    command: List[str]
    env: Dict[str, str]
    mount_location: Optional[str] = None
    cpus: Optional[str] = None
    memory: Optional[str] = None
    storage: Optional[str] = None
    gpus: Optional[int] = None
    gpu_type: Optional[str] = None


def _predict_fn_or_cls(model: Any) -> Any:
    """The v1 ``predict_fn_or_cls`` bundle: the object is the predict function
    (a class is instantiated first, as Launch's server does)."""
    return model() if isinstance(model, type) else model


def _framework_args(env_params: Any) -> Dict[str, Any]:
    if not isinstance(env_params, Mapping):
        raise BundleConfigError(
            f"env_params must be a dict such as {{'framework_type': 'pytorch', 'pytorch_image_tag': '1.7.1'}}, "
            f"got {type(env_params).__name__}"
        )
    kind = env_params.get("framework_type")
    if kind == "pytorch":
        return {"pytorch_image_tag": env_params.get("pytorch_image_tag", "")}
    if kind == "tensorflow":
        return {"tensorflow_version": env_params.get("tensorflow_version", "")}
    if kind == "custom_base_image":
        return {"custom_base_image_repository": env_params.get("ecr_repo", ""),
                "custom_base_image_tag": env_params.get("image_tag")}
    raise BundleConfigError(
        f"env_params['framework_type'] must be 'pytorch', 'tensorflow' or 'custom_base_image', got {kind!r}"
    )


class LegacyBundleMethods:
    """Launch's v1 bundle methods and docker-image batch-job bundles (see the module docs)."""

    _store: Any

    # -- v1 ----------------------------------------------------------------------------------------
    def _resolve(self, model_bundle: Union[ModelBundle, str]) -> ModelBundle:
        if isinstance(model_bundle, ModelBundle):
            return self._store.get(model_bundle.id)
        if isinstance(model_bundle, str):
            return self._store.latest(model_bundle)
        raise BundleConfigError(f"model_bundle must be a ModelBundle or a bundle name, got {type(model_bundle).__name__}")

    def create_model_bundle(
        self,
        model_bundle_name: str,
        env_params: Dict[str, str],
        *,
        load_predict_fn: Optional[Any] = None,
        predict_fn_or_cls: Optional[Any] = None,
        requirements: Optional[List[str]] = None,
        model: Optional[Any] = None,
        load_model_fn: Optional[Any] = None,
        app_config: Optional[Union[Dict[str, Any], str]] = None,
        globals_copy: Optional[Dict[str, Any]] = None,
        request_schema: Optional[type] = None,
        response_schema: Optional[type] = None,
    ) -> ModelBundle:
        """Launch's deprecated v1 ``create_model_bundle``: exactly one of
        ``predict_fn_or_cls``, ``load_predict_fn`` + ``model``, or
        ``load_predict_fn`` + ``load_model_fn``. ``globals_copy`` is accepted
        (cloudpickle already saves the functions by value)."""
        given = tuple(n for n, v in (("predict_fn_or_cls", predict_fn_or_cls), ("load_predict_fn", load_predict_fn),
                                      ("model", model), ("load_model_fn", load_model_fn)) if v is not None)
        if given not in (("predict_fn_or_cls",), ("load_predict_fn", "model"), ("load_predict_fn", "load_model_fn")):
            raise BundleConfigError(
                f"create_model_bundle({model_bundle_name!r}) takes exactly one of: predict_fn_or_cls; "
                f"load_predict_fn and model; load_predict_fn and load_model_fn. Got {', '.join(given) or 'none'}."
            )
        if predict_fn_or_cls is not None:
            load_predict_fn, model = _predict_fn_or_cls, predict_fn_or_cls
        bundle_id = self.create_model_bundle_from_callable_v2(  # type: ignore[attr-defined]
            model_bundle_name=model_bundle_name, load_predict_fn=load_predict_fn, load_model_fn=load_model_fn,
            model=model, request_schema=request_schema, response_schema=response_schema, requirements=requirements,
            app_config=app_config, **_framework_args(env_params),
        ).model_bundle_id
        return self._store.get(bundle_id)

    def create_model_bundle_from_dirs(
        self,
        *,
        model_bundle_name: str,
        base_paths: List[str],
        requirements_path: str,
        env_params: Dict[str, str],
        load_predict_fn_module_path: str,
        load_model_fn_module_path: str,
        app_config: Optional[Union[Dict[str, Any], str]] = None,
        request_schema: Optional[type] = None,
        response_schema: Optional[type] = None,
    ) -> ModelBundle:
        """Launch's deprecated v1 ``create_model_bundle_from_dirs`` (see
        :meth:`~modelzoo.bundles.LaunchClient.create_model_bundle_from_dirs_v2`)."""
        bundle_id = self.create_model_bundle_from_dirs_v2(  # type: ignore[attr-defined]
            model_bundle_name=model_bundle_name, base_paths=base_paths, requirements_path=requirements_path,
            load_predict_fn_module_path=load_predict_fn_module_path, load_model_fn_module_path=load_model_fn_module_path,
            app_config=app_config, request_schema=request_schema, response_schema=response_schema,
            **_framework_args(env_params),
        ).model_bundle_id
        return self._store.get(bundle_id)

    def list_model_bundles(self) -> List[ModelBundle]:
        """Every stored bundle, newest first (v1)."""
        return list(self._store.list())

    def get_model_bundle(self, model_bundle: Union[ModelBundle, str]) -> ModelBundle:
        """The newest bundle of that name, or the given bundle as stored (v1)."""
        return self._resolve(model_bundle)

    def clone_model_bundle_with_changes(
        self, model_bundle: Union[ModelBundle, str], app_config: Optional[Dict[str, Any]] = None
    ) -> ModelBundle:
        """A clone with ``app_config`` (v1; None keeps the original's, as Launch does)."""
        original = self._resolve(model_bundle)
        bundle_id = self.clone_model_bundle_with_changes_v2(  # type: ignore[attr-defined]
            original.id, UNSET if app_config is None else app_config
        ).model_bundle_id
        return self._store.get(bundle_id)

    # -- docker-image batch-job bundles ------------------------------------------------------------
    def _jobs(self) -> Any:
        from ..db import get_db

        return get_db()["docker_image_batch_job_bundles"]

    def create_docker_image_batch_job_bundle(
        self,
        *,
        name: str,
        image_repository: str,
        image_tag: str,
        command: List[str],
        env: Optional[Dict[str, str]] = None,
        mount_location: Optional[str] = None,
        cpus: Optional[str] = None,
        memory: Optional[str] = None,
        gpus: Optional[int] = None,
        gpu_type: Optional[str] = None,
        storage: Optional[str] = None,
    ) -> Dict[str, str]:
        """Records a docker-image batch-job bundle; returns
        ``{"docker_image_batch_job_bundle_id": ...}`` as Launch does."""
        if isinstance(command, str) or not command or not all(isinstance(a, str) for a in command):
            raise BundleConfigError(f"command must be a non-empty list of strings, got {command!r}")
        record = dict(
            name=name, created_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds"),
            image_repository=image_repository, image_tag=image_tag, command=list(command), env=dict(env or {}),
            mount_location=mount_location, cpus=cpus, memory=memory, gpus=gpus, gpu_type=gpu_type, storage=storage,
        )
        bundle_id = "dibjb_" + hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:24]
        self._jobs().insert_one({"_id": bundle_id, **record})
        return {"docker_image_batch_job_bundle_id": bundle_id}

    @staticmethod
    def _job(doc: Mapping[str, Any]) -> DockerImageBatchJobBundle:
        return DockerImageBatchJobBundle(id=doc["_id"], **{k: v for k, v in doc.items() if k != "_id"})

    def get_docker_image_batch_job_bundle(self, docker_image_batch_job_bundle_id: str) -> DockerImageBatchJobBundle:
        """The recorded batch-job bundle with this id (BundleNotFoundError otherwise)."""
        doc = self._jobs().find_one({"_id": docker_image_batch_job_bundle_id})
        if doc is None:
            raise BundleNotFoundError(docker_image_batch_job_bundle_id, self._jobs().distinct("_id"))
        return self._job(doc)

    def get_latest_docker_image_batch_job_bundle(self, bundle_name: str) -> DockerImageBatchJobBundle:
        """The newest recorded batch-job bundle named ``bundle_name``."""
        docs = list(self._jobs().find({"name": bundle_name}).sort("created_at", -1).limit(1))
        if not docs:
            raise BundleNotFoundError(bundle_name, self._jobs().distinct("name"))
        return self._job(docs[0])

    def list_docker_image_batch_job_bundles(
        self, bundle_name: Optional[str] = None, order_by: Optional[str] = None
    ) -> List[DockerImageBatchJobBundle]:
        """The recorded batch-job bundles (of ``bundle_name``), ``order_by``
        ``"newest"`` (the default) or ``"oldest"``."""
        if order_by not in (None, "newest", "oldest"):
            raise BundleConfigError(f"order_by must be 'newest' or 'oldest', got {order_by!r}")
        query = {} if bundle_name is None else {"name": bundle_name}
        direction = 1 if order_by == "oldest" else -1
        return [self._job(d) for d in self._jobs().find(query).sort("created_at", direction)]
