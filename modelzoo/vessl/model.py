"""``RunnerModel``: a registered VESSL-style model as a :class:`modelzoo.Model`.

The adapter translates and does nothing else: the entry's input kind
becomes the model's loader (run in the engine's loader workers), the model
is loaded once when the zoo builds it (``load_model`` runs in the model's
volume directory, like VESSL's server), and each input runs
``postprocess_data(predict(model, preprocess_data(data)))``, also in the
volume (so relative paths resolve alike in ``predict``, ``apply_model``, Ray
workers and ``modelzoo serve``); the answer is
stored as Labels or plain fields (:mod:`modelzoo.vessl.outputs`). Batching,
failures and writing stay in the engine.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Dict, Mapping

from ..errors import ConfigError, RequestError, did_you_mean
from ..loaders import Loader, loader_for_kind
from ..models import Model, ModelConfig
from ..workdir import model_directory
from . import store
from .artifacts import artifact_paths
from .outputs import to_stored
from .register import INPUTS
from .runner import io_types

__all__ = ["RunnerModel", "RunnerModelConfig"]


def _identity(data: Any) -> Any:
    return data


@dataclasses.dataclass(init=False)
class RunnerModelConfig(ModelConfig):
    """Settings of a registered VESSL-style model.

    Attributes:
        entry_dir: the local-zoo entry's directory (filled in by the zoo).
        input: what ``preprocess_data`` receives for a dataset sample:
            ``"bytes"`` (the file's bytes, like a VESSL request body; the
            default), ``"path"``, ``"array"`` (uint8 HWC RGB) or ``"pil"``.
        trust: unpickle the entry's pickles even without this user's signature.
    """

    entry_dir: str = ""
    input: str = "bytes"
    trust: bool = False

    def validate(self) -> None:
        super().validate()
        if not self.entry_dir:
            raise ConfigError("RunnerModelConfig requires entry_dir (load the model with modelzoo.load_zoo_model('repo/number'))")
        if self.input not in INPUTS:
            raise ConfigError(f"RunnerModelConfig.input must be one of {list(INPUTS)}, got {self.input!r}")


def _check_request_keys(schema: Any, data: Any, name: str) -> None:
    """A key of a request dict that is no field of the runner's request type
    (pydantic would drop it) is an error naming the close match."""
    fields = getattr(schema, "model_fields", {})
    if not isinstance(data, Mapping) or not fields or (getattr(schema, "model_config", {}) or {}).get("extra") == "allow":
        return
    names = list(fields) + [f.alias for f in fields.values() if getattr(f, "alias", None)]
    for key in data:
        if key not in names:
            err = RequestError(
                f"{name}: {key!r} is not a field of the request type {schema.__name__}."
                + did_you_mean(str(key), list(fields), n=1) + f" Its fields: {', '.join(fields)}."
            )
            err.field = str(key)
            raise err


class RunnerModel(Model):
    """A model registered with :func:`~modelzoo.vessl.register_model` or
    :func:`~modelzoo.vessl.register_torch_model`; build it with
    ``modelzoo.load_zoo_model("repository/number")``.

    ``predict(data)`` runs the three hooks on one request (for a dataset
    sample: the image as :attr:`RunnerModelConfig.input` says). A runner
    typed ``RunnerBase[In, Out]`` with pydantic models validates each request
    into ``In`` (:attr:`request_schema`) and returns ``Out`` instances;
    otherwise answers are converted to Labels or plain data.

    Attributes:
        name: ``"repository/number"``.
        runner: the runner class.
        model: what ``load_model`` returned (or the stored instance / module).
        manifest: the entry's VESSL manifest.
    """

    config_cls = RunnerModelConfig

    def __init__(self, config: Any = None):
        super().__init__(config)
        directory = os.path.abspath(self.config.entry_dir)
        self.directory = directory
        self.volume = os.path.join(directory, store.VOLUME)
        self.name = f"{os.path.basename(os.path.dirname(directory))}/{os.path.basename(directory)}"
        manifest = store.read_manifest(directory, self.name)
        self.manifest = manifest
        store.check_trust(directory, manifest, self.name, bool(self.config.trust))  # before anything is unpickled
        python = manifest.get("python", "?")
        self.runner = store.load_callable(manifest["runner"], directory, "runner class", self.name, python)
        hooks = manifest.get("hooks") or {}
        defaults = set(manifest.get("use_default") or ())
        self._pre = self._hook("preprocess_data", hooks, defaults, python)
        self._post = self._hook("postprocess_data", hooks, defaults, python)
        self.request_schema, self.response_schema = io_types(self.runner)
        self.model = self._load_model(manifest, python)

    def _hook(self, hook: str, hooks: Dict[str, Any], defaults: Any, python: str) -> Callable[[Any], Any]:
        if hook in hooks:
            return store.load_callable(hooks[hook], self.directory, hook, self.name, python)
        if hook in defaults:
            return _identity
        return getattr(self.runner, hook)

    def _load_model(self, manifest: Dict[str, Any], python: str) -> Any:
        spec = manifest["model"]
        kind = spec["save_type"]
        if kind == "torch_state_dict":
            return self._load_torch(spec)
        if kind == "cloudpickle" and "load_model" in (manifest.get("use_default") or ()):
            return store.load_callable(spec, self.directory, "model instance", self.name, python)
        props = spec.get("save_output") if kind == "save_model" else None
        artifacts = artifact_paths(manifest.get("artifacts") or {}, self.volume)
        with self.in_volume("load_model"):
            return self.runner.load_model(props, artifacts)

    def in_volume(self, hook: str) -> Any:
        """A context running the runner's hooks in the model volume (the
        working directory VESSL gives them, wherever this process started); a
        relative file they cannot find raises
        :class:`~modelzoo.workdir.ModelFileNotFoundError` naming the volume."""
        return model_directory(
            self.volume, f"{self.name}: {getattr(self.runner, '__name__', 'runner')}.{hook}",
            "its model volume, where register_model(artifacts=...) and save_model put files",
            fix="Register the file with register_model(artifacts={'<local path>': '<path in the volume>'}), "
                "or write it from save_model (relative paths land in the volume).",
        )

    def _load_torch(self, spec: Dict[str, Any]) -> Any:
        import torch

        from ..imports import import_object

        module = import_object(spec["builder"], "builder")(**(spec.get("builder_kwargs") or {}))
        state = torch.load(os.path.join(self.directory, spec["save_path"]), map_location="cpu", weights_only=True)
        module.load_state_dict(state, strict=True)
        module.train(bool(spec.get("training", False)))
        return module

    def __repr__(self) -> str:
        return f"RunnerModel({self.name!r}, runner={getattr(self.runner, '__qualname__', self.runner)!s})"

    def build_loader(self) -> Loader:
        return loader_for_kind(self.config.input)

    def predict(self, arg: Any) -> Any:
        """``postprocess_data(predict(model, preprocess_data(arg)))``, converted for storage."""
        data = arg
        request: Any = self.request_schema
        if request is not None and not isinstance(arg, request):
            _check_request_keys(request, arg, self.name)
            data = request.model_validate(arg)
        with self.in_volume("predict"):
            out = self._post(self.runner.predict(self.model, self._pre(data)))
        response: Any = self.response_schema
        if response is not None:
            return out if isinstance(out, response) else response.model_validate(out)
        return to_stored(out, self.name)

