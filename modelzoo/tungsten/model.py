"""``TungstenModel``: a ``@define_model`` class as a :class:`modelzoo.Model`.

The adapter translates Tungstenkit's calling convention and nothing more:
``setup()`` runs once (first use, or ``with model:``); ``predict_all`` checks
every input against the input class, groups the inputs by their options and
cuts each group into calls of at most ``batch_size``, checks that each call
returns one output per input, and hands the outputs back in input order.
Under ``apply_model`` the loader (in the engine's workers) decodes the
sample's image into the input's ``Image`` field, other fields come from
sample fields or fixed values, and outputs are stored as Labels where the
output class says so (:mod:`modelzoo.tungsten.convert`). Batching across
samples, failures and writing stay in the engine.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from typing import Any, Dict, Hashable, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import pydantic

from ..config import Config
from ..errors import ConfigError, check_keys
from ..labels import filter_output
from ..loaders import Loader, WorkItem
from ..mixins import SamplesMixin
from ..models import Model, ModelConfig
from ..recipes import Recipe, rebuild
from ..workdir import model_directory
from .convert import output_converter
from .define import TungstenInfo
from .errors import TungstenDefinitionError, TungstenInputError, TungstenOutputError
from .files import File, Image
from .io import batch_key as _options_key

__all__ = ["TungstenModel", "TungstenConfig", "TungstenLoader", "LoadedFile"]


@dataclasses.dataclass(init=False)
class TungstenConfig(ModelConfig):
    """Settings of a Tungsten-style model (``Cls(**settings)`` or ``load_zoo_model(name, **settings)``).

    Attributes:
        inputs: fixed values of input fields for ``apply_model`` runs
            (``{"width": 256}``); checked against the input class when the
            model is built.
        fields: input field -> sample field it is read from, for
            ``apply_model`` runs (``{"prompt": "caption"}``). A required field
            that is neither here nor in ``inputs`` is read from the sample
            field of its own name; an option not given keeps its default.
        image_field: the ``Image`` / ``File`` input field fed with the
            sample's file (default: the input class's only file field).
        batch_size: replaces ``define_model``'s ``batch_size``.
        confidence_thresh: under ``apply_model``, stored labels below it are
            dropped (as ``apply_model(confidence_thresh=...)`` does).
        build_dir: the working directory of the class's ``setup``,
            ``predict`` and ``post_build`` (default: the folder of the file
            that defines the class, Tungstenkit's build directory).
    """

    inputs: Dict[str, Any] = dataclasses.field(default_factory=dict)
    fields: Dict[str, str] = dataclasses.field(default_factory=dict)
    image_field: Optional[str] = None
    batch_size: Optional[int] = None
    build_dir: Optional[str] = None

    def validate(self) -> None:
        super().validate()
        for key in ("inputs", "fields"):
            if not isinstance(getattr(self, key), Mapping):
                raise ConfigError(f"TungstenConfig.{key} must be a dict, got {type(getattr(self, key)).__name__}")
        self.inputs, self.fields = dict(self.inputs), dict(self.fields)
        if self.build_dir is not None:
            if not isinstance(self.build_dir, str) or not os.path.isdir(self.build_dir):
                raise ConfigError(f"build_dir must be an existing directory, got {self.build_dir!r}")
            self.build_dir = os.path.abspath(self.build_dir)
        bs = self.batch_size
        if bs is not None and (not isinstance(bs, int) or isinstance(bs, bool) or bs < 1):
            raise ConfigError(f"batch_size must be an integer >= 1, got {bs!r}")


class LoadedFile(NamedTuple):
    """What :class:`TungstenLoader` gives for one sample: its file path, and
    for an ``Image`` field its decoded uint8 RGB pixels (None otherwise)."""

    path: Optional[str]
    pixels: Optional[np.ndarray] = None


class TungstenLoader(Loader):
    """Loads a sample for a Tungsten-style model, in the loader workers.

    Args:
        mode: ``"image"`` (decode to RGB pixels), ``"file"`` (check the path
            exists) or ``"none"`` (the model reads no file).
    """

    def __init__(self, mode: str = "image"):
        if mode not in ("image", "file", "none"):
            raise ValueError(f"mode must be 'image', 'file' or 'none', got {mode!r}")
        self.mode = mode

    def load(self, item: WorkItem) -> LoadedFile:
        if self.mode == "none":
            return LoadedFile(item.filepath)
        if not item.filepath:
            raise ValueError("sample has no filepath")
        if self.mode == "file":
            import os

            if not os.path.isfile(item.filepath):
                raise FileNotFoundError(f"File not found: {item.filepath}")
            return LoadedFile(item.filepath)
        from ..image_io import read_image

        return LoadedFile(item.filepath, read_image(item.filepath))

    def __repr__(self) -> str:
        return f"TungstenLoader({self.mode!r})"


def _file_type(annotation: Any) -> Optional[type]:
    import typing

    if typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = args[0] if len(args) == 1 else None
    return annotation if isinstance(annotation, type) and issubclass(annotation, File) else None


class TungstenModel(SamplesMixin, Model):
    """Base of the classes ``@define_model`` makes; see the module docs.

    ``predict(x)`` takes one input (an input instance, a dict of its fields,
    or for a model with one ``Image`` field the image itself) and returns
    one output; ``predict([x, ...])`` and ``predict_all([...])`` take a list
    and return a list, as the class's own ``predict`` does. Attributes of
    the class as written are reached through the model (``model.helper()``)
    or :attr:`instance`.

    Args:
        config: a :class:`TungstenConfig` or a dict of its settings.
        **settings: settings given as keywords (``inputs=``, ``fields=``...).
    """

    tungsten: TungstenInfo  # set on each decorated class
    config_cls = TungstenConfig

    def __init__(self, config: Any = None, **settings: Any):
        if not hasattr(type(self), "tungsten"):
            raise TungstenDefinitionError("TungstenModel is a base class: decorate your class with @define_model")
        if isinstance(config, Config):
            config = config.to_dict()
        super().__init__(TungstenConfig({**(config or {}), **settings}))
        info = self.tungsten
        self._setup_lock = threading.Lock()
        self._is_set_up = False
        self.instance = info.cls()
        self._file_fields = [n for n, f in info.input.model_fields.items() if _file_type(f.annotation) is not None]
        self._check_config()
        self._convert = output_converter(info.output)

    # -- configuration -----------------------------------------------------------------------
    @property
    def name(self) -> str:
        return type(self).__name__

    @property
    def build_dir(self) -> Optional[str]:
        """The working directory of the class's own code: ``build_dir=`` when
        given, else the folder of the file that defines the class (what
        ``tungsten build`` packages and runs the model in)."""
        return self.config.build_dir or self.tungsten.build_dir

    def in_build_dir(self, method: str) -> Any:
        """A context running the class's ``method`` in :attr:`build_dir`; a
        relative file it cannot find raises
        :class:`~modelzoo.workdir.ModelFileNotFoundError` naming the directory."""
        return _in_build_dir(self.name, method, self.build_dir)

    @property
    def batch_size(self) -> int:
        """The most inputs one call of the class's ``predict`` receives."""
        return int(self.config.batch_size or self.tungsten.batch_size)

    @property
    def default_batch_size(self) -> int:  # type: ignore[override]  # Model declares it a plain attribute
        """Inputs per ``predict_all`` call under ``apply_model`` (then grouped and cut to :attr:`batch_size`)."""
        return max(16, self.batch_size)

    def _check_config(self) -> None:
        inp = self.tungsten.input
        names = list(inp.model_fields)
        cfg = self.config
        check_keys(cfg.inputs, names, f"{self.name}'s input", where=f"{self.name}(inputs=...): ", kind="field")
        check_keys(cfg.fields, names, f"{self.name}'s input", where=f"{self.name}(fields=...): ", kind="field")
        both = sorted(set(cfg.inputs) & set(cfg.fields))
        if both:
            raise ConfigError(f"{self.name}: {both} are given both in inputs= and fields=; keep one")
        for name, value in cfg.inputs.items():
            f = inp.model_fields[name]
            try:
                pydantic.TypeAdapter(Any if f.annotation is None else _annotated(f)).validate_python(value)
            except pydantic.ValidationError as e:
                msg = "; ".join(str(err["msg"]).replace("Value error, ", "") for err in e.errors())
                raise ConfigError(f"{self.name}(inputs={{{name!r}: {value!r:.60}}}): {msg}") from None
        image_field = cfg.image_field
        if image_field is not None and image_field not in self._file_fields:
            raise ConfigError(
                f"{self.name}(image_field={image_field!r}): expected one of its Image/File input fields "
                f"{self._file_fields or '(it has none)'}"
            )
        taken = set(cfg.inputs) | set(cfg.fields)
        free_files = [n for n in self._file_fields if n not in taken]
        self._image_field = image_field or (free_files[0] if len(free_files) == 1 else None)
        self._ambiguous_files = free_files if image_field is None and len(free_files) > 1 else []
        needs = {n: cfg.fields[n] for n in cfg.fields}
        for n, f in inp.model_fields.items():
            if f.is_required() and n not in taken and n != self._image_field:
                needs[n] = n
        self.needs_fields = needs

    # -- lifecycle ------------------------------------------------------------------------------
    def setup(self) -> None:
        """Runs the class's ``setup()`` once (later calls do nothing)."""
        if self._is_set_up:
            return
        with self._setup_lock:
            if not self._is_set_up:
                if self.tungsten.has_setup:
                    with self.in_build_dir("setup"):
                        self.instance.setup()
                self._is_set_up = True

    def __enter__(self) -> "TungstenModel":
        self.setup()
        return self

    @classmethod
    def post_build(cls) -> None:
        """Runs the class's ``post_build()`` (what Tungstenkit runs while building
        the image); ``modelzoo download NAME`` runs it for a zoo model."""
        if cls.tungsten.has_post_build:
            with _in_build_dir(cls.__name__, "post_build", cls.tungsten.build_dir):
                cls.tungsten.cls.post_build()  # type: ignore[attr-defined]

    @classmethod
    def zoo_post_download(cls) -> None:
        """The zoo's download hook (see :func:`modelzoo.download_zoo_model`)."""
        cls.post_build()

    def __getattr__(self, name: str) -> Any:
        # only reached when normal lookup fails: the class as written
        instance = self.__dict__.get("instance")
        if instance is None or name.startswith("__"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(instance, name)

    def rebuild_recipe(self) -> Recipe:
        """Its class (the decorated one) and its settings: how another process builds it."""
        return Recipe.config(self.config.to_dict(), type(self))

    def __reduce__(self) -> Tuple[Any, Tuple[Recipe]]:
        """A recipe, not the instance (:mod:`modelzoo.recipes`): unpickled, the
        model is built again from its settings (and set up on first use)."""
        return rebuild, (self.rebuild_recipe(),)

    def __repr__(self) -> str:
        return f"{self.name}(batch_size={self.batch_size}, options={list(self.tungsten.options)})"

    # -- inputs -----------------------------------------------------------------------------------
    def validate_input(self, arg: Any, index: int = 0) -> Any:
        """``arg`` as an instance of the input class, checked (choices, bounds,
        types): an instance, a dict of fields, or, for a model with one
        ``Image``/``File`` field and no other required field, the file itself.

        Raises:
            TungstenInputError: naming the field, the value and what it allows.
        """
        inp = self.tungsten.input
        if type(arg) is inp:  # checked again: an instance may have been built unchecked (model_construct)
            data: Any = dict(arg.__dict__)
        elif isinstance(arg, Mapping):
            data = dict(arg)
        elif isinstance(arg, pydantic.BaseModel):
            data = {n: getattr(arg, n) for n in type(arg).model_fields}
        elif self._image_field is not None and not self.needs_fields:
            data = {self._image_field: arg}
        else:
            raise TungstenInputError(self.name, index, [{
                "loc": (), "msg": f"expected a {inp.__name__} or a dict of its fields, got {type(arg).__name__}",
            }])
        try:
            return inp.model_validate(data)
        except pydantic.ValidationError as e:
            raise TungstenInputError(self.name, index, e.errors()) from None

    def batch_key(self, arg: Any) -> Hashable:
        """The input's options (the fields with defaults) as canonical JSON: inputs
        whose keys differ never share a ``predict`` call. An invalid input gets a
        key of its own, so that it fails alone."""
        try:
            return _options_key(self.validate_input(arg), self.tungsten.options)
        except TungstenInputError:
            return ("invalid", id(arg))

    # -- inference --------------------------------------------------------------------------------
    def _plan(self, inputs: Sequence[Any]) -> List[List[int]]:
        """Indices grouped by options (groups in order of first appearance),
        each group cut into chunks of at most ``batch_size``."""
        groups: Dict[str, List[int]] = {}
        for i, inp in enumerate(inputs):
            groups.setdefault(_options_key(inp, self.tungsten.options), []).append(i)
        size = self.batch_size
        return [idx[j:j + size] for idx in groups.values() for j in range(0, len(idx), size)]

    def _outputs(self, got: Any, n: int, method: str, cls: Any) -> List[Any]:
        try:
            got = list(got)
        except TypeError:
            raise TungstenOutputError(
                f"{self.name}.{method} returned {type(got).__name__}, expected a list of {n} {cls.__name__} (one per input)"
            ) from None
        if len(got) != n:
            raise TungstenOutputError(
                f"{self.name}.{method} returned {len(got)} outputs for a batch of {n} inputs; it must return "
                f"one {cls.__name__} per input, in order"
            )
        out = []
        for i, o in enumerate(got):
            if isinstance(o, cls):
                out.append(o)
                continue
            if not isinstance(o, (Mapping, pydantic.BaseModel)):
                raise TungstenOutputError(
                    f"{self.name}.{method} returned {type(o).__name__} as output {i}, expected a {cls.__name__} or a dict of its fields"
                )
            try:
                out.append(cls.model_validate(dict(o) if isinstance(o, Mapping) else o.model_dump()))
            except pydantic.ValidationError as e:
                raise TungstenOutputError(f"{self.name}.{method}: output {i} is not a valid {cls.__name__}: {e}") from None
        return out

    def _run(self, inputs: List[Any], demo: bool = False) -> Tuple[List[Any], List[Any]]:
        self.setup()
        with self.in_build_dir("predict_demo" if demo else "predict"):
            return self._run_batches(inputs, demo)

    def _run_batches(self, inputs: List[Any], demo: bool) -> Tuple[List[Any], List[Any]]:
        info = self.tungsten
        outputs: List[Any] = [None] * len(inputs)
        demos: List[Any] = [None] * len(inputs)
        for chunk in self._plan(inputs):
            batch = [inputs[i] for i in chunk]
            if not demo:
                outs = self._outputs(self.instance.predict(batch), len(batch), "predict", info.output)
                vis = outs
            elif info.has_predict_demo:
                got = self.instance.predict_demo(batch)
                if not (isinstance(got, (tuple, list)) and len(got) == 2):
                    raise TungstenOutputError(
                        f"{self.name}.predict_demo returned {type(got).__name__}, expected (outputs, visualizations)"
                    )
                outs = self._outputs(got[0], len(batch), "predict_demo", info.output)
                vis = self._outputs(got[1], len(batch), "predict_demo", info.demo_output)  # type: ignore[arg-type]
            else:  # Tungstenkit's default: the outputs are the demo
                outs = self._outputs(self.instance.predict(batch), len(batch), "predict", info.output)
                vis = outs
            for k, i in enumerate(chunk):
                outputs[i], demos[i] = outs[k], vis[k]
        return outputs, demos

    def predict(self, arg: Any, sample: Optional[Dict[str, Any]] = None) -> Any:
        """One input -> one output; a list of inputs -> a list of outputs."""
        if isinstance(arg, list):
            return self.predict_all(arg)
        if isinstance(arg, LoadedFile):
            return self.predict_all([arg], [sample or {}])[0]
        return self.predict_all([arg])[0]

    def predict_all(self, args: Sequence[Any], samples: Optional[Sequence[Optional[Dict[str, Any]]]] = None) -> List[Any]:
        """Outputs of ``args``, in order (validated first; see the class docs).
        Under ``apply_model`` (inputs from :class:`TungstenLoader`) the outputs
        are converted for storing: Labels where the output class maps to them."""
        args = list(args)
        if args and isinstance(args[0], LoadedFile):
            return self._predict_samples(args, samples)
        inputs = [self.validate_input(a, i) for i, a in enumerate(args)]
        return self._run(inputs)[0]

    def predict_demo(self, inputs: Any) -> Tuple[List[Any], List[Any]]:
        """``(outputs, visualizations)`` for a list of inputs, as the class's
        ``predict_demo`` returns them (without one: ``(outputs, outputs)``)."""
        args = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        checked = [self.validate_input(a, i) for i, a in enumerate(args)]
        return self._run(checked, demo=True)

    # -- apply_model ------------------------------------------------------------------------------
    def build_loader(self) -> Loader:
        if self._ambiguous_files:
            raise ConfigError(
                f"{self.name} has several Image/File input fields {self._ambiguous_files}: say which one gets "
                "the sample's file with image_field=..., and map the others with fields={...}"
            )
        if self._image_field is None:
            return TungstenLoader("none")
        is_image = issubclass(_file_type(self.tungsten.input.model_fields[self._image_field].annotation) or File, Image)
        return TungstenLoader("image" if is_image else "file")

    def _sample_input(self, loaded: LoadedFile, sample: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
        values: Dict[str, Any] = dict(self.config.inputs)
        given = sample or {}
        for name in self.needs_fields:
            value = given.get(name)
            if value is not None or self.tungsten.input.model_fields[name].is_required():
                values[name] = value
        if self._image_field is not None and loaded.path is not None:
            cls = _file_type(self.tungsten.input.model_fields[self._image_field].annotation) or File
            if loaded.pixels is not None and issubclass(cls, Image):
                values[self._image_field] = cls(_path=loaded.path, _pixels=loaded.pixels)
            else:
                values[self._image_field] = cls(_path=loaded.path)
        return values

    def _predict_samples(self, args: List[LoadedFile], samples: Optional[Sequence[Optional[Dict[str, Any]]]]) -> List[Any]:
        given = list(samples) if samples is not None else [None] * len(args)
        inputs = []
        for i, (a, s) in enumerate(zip(args, given)):
            try:
                inputs.append(self.validate_input(self._sample_input(a, s), i))
            except TungstenInputError as e:
                missing = [f"{n!r} (from sample field {p!r})" for n, p in self.needs_fields.items() if (s or {}).get(n) is None]
                if missing:
                    e.args = (str(e) + f"; the sample has no value for input field(s) {', '.join(missing)}: "
                              f"map them with {self.name}(fields={{...}}) or give them with inputs={{...}}",)
                raise
        outputs = self._run(inputs)[0]
        thresh = self.config.confidence_thresh
        return [filter_output(self._convert(o, _size(a)), thresh) for o, a in zip(outputs, args)]


def _size(loaded: LoadedFile) -> Optional[Tuple[int, int]]:
    if loaded.pixels is not None:
        return int(loaded.pixels.shape[1]), int(loaded.pixels.shape[0])
    if loaded.path is None:
        return None
    try:
        return Image(_path=loaded.path).size
    except Exception:
        return None


def _in_build_dir(name: str, method: str, directory: Optional[str]) -> Any:
    return model_directory(
        directory, f"{name}.{method}", "its build directory: the folder of the file that defines the class",
        fix=f"Put the file there (as `tungsten build` expects), or give {name}(build_dir=...) the folder that holds it.",
    )


def _annotated(field: Any) -> Any:
    from typing import Annotated

    return Annotated[field.annotation, field]
