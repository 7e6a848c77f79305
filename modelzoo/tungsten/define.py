"""``@define_model``: a Tungstenkit model class becomes a :class:`modelzoo.Model`.

The class is checked when it is decorated (``predict(self, inputs)`` exists,
``setup(self)`` / ``predict_demo(self, inputs)`` / a static ``post_build()``
have the right arguments, ``predict_demo`` and ``demo_output`` come together,
the I/O classes are pydantic models); every Tungstenkit keyword is accepted,
the container settings are kept in :class:`TungstenInfo` (modelzoo runs the
model in this process and builds no image), and an unknown keyword is an
error suggesting the close match.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from typing import Any, Callable, Dict, List, Optional, Tuple, Type

import pydantic

from ..errors import check_keys
from .errors import TungstenDefinitionError
from .io import option_names

__all__ = ["define_model", "TungstenInfo", "CONTAINER_SETTINGS"]

#: the define_model keywords about the container image: recorded, not used in-process
CONTAINER_SETTINGS = (
    "gpu", "python_packages", "python_version", "system_packages", "cuda_version", "cudnn_version",
    "force_install_system_cuda", "gpu_mem_gb", "mem_gb", "include_files", "exclude_files",
    "dockerfile_commands", "base_image", "readme_md",
)
_KEYWORDS = ("input", "output", "demo_output", "batch_size") + CONTAINER_SETTINGS


@dataclasses.dataclass(frozen=True)
class TungstenInfo:
    """What ``@define_model`` was told about a model (``Cls.tungsten``).

    Attributes:
        cls: the class as written (its instance does the work).
        input, output, demo_output: the I/O classes.
        batch_size: the most inputs one ``predict`` call receives.
        options: the input fields with defaults (the batching key).
        gpu ... readme_md: the container settings, as given (None: Tungstenkit's default).
        has_setup, has_predict_demo, has_post_build: the optional methods defined.
        build_dir: the folder of the file that defines the class: what
            ``tungsten build`` packages, and the working directory
            ``post_build``, ``setup`` and ``predict`` run in (None for a
            class without a file, e.g. typed at a prompt: it runs where it is).
    """

    cls: type
    input: Type[pydantic.BaseModel]
    output: Type[pydantic.BaseModel]
    demo_output: Optional[Type[pydantic.BaseModel]]
    batch_size: int
    options: Tuple[str, ...]
    gpu: bool = False
    python_packages: Optional[Tuple[str, ...]] = None
    python_version: Optional[str] = None
    system_packages: Optional[Tuple[str, ...]] = None
    cuda_version: Optional[str] = None
    cudnn_version: Optional[str] = None
    force_install_system_cuda: bool = False
    gpu_mem_gb: Optional[float] = None
    mem_gb: Optional[float] = None
    include_files: Optional[Tuple[str, ...]] = None
    exclude_files: Optional[Tuple[str, ...]] = None
    dockerfile_commands: Optional[Tuple[str, ...]] = None
    base_image: Optional[str] = None
    readme_md: Optional[str] = None
    has_setup: bool = False
    has_predict_demo: bool = False
    has_post_build: bool = False
    build_dir: Optional[str] = None

    @property
    def container(self) -> Dict[str, Any]:
        """The container settings, by keyword."""
        return {k: getattr(self, k) for k in CONTAINER_SETTINGS}


def _positional(fn: Callable[..., Any]) -> Tuple[int, bool]:
    params = list(inspect.signature(fn).parameters.values())
    var = any(p.kind is p.VAR_POSITIONAL for p in params)
    n = sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty for p in params)
    return n, var


def _check_method(cls: type, name: str, expected: int, shape: str) -> bool:
    raw = inspect.getattr_static(cls, name, None)
    if raw is None:
        return False
    if isinstance(raw, (staticmethod, classmethod)) and name != "post_build":
        raise TungstenDefinitionError(f"{cls.__name__}.{name} must be a plain method: def {shape}")
    fn = raw.__func__ if isinstance(raw, (staticmethod, classmethod)) else raw
    if not callable(fn):
        raise TungstenDefinitionError(f"{cls.__name__}.{name} is not a method: define def {shape}")
    n, var = _positional(fn)
    if isinstance(raw, classmethod):
        n -= 1
    if n > expected or (n < expected and not var):
        raise TungstenDefinitionError(
            f"{cls.__name__}.{name} has {n} positional parameter(s){' counting self' if name != 'post_build' else ''}, "
            f"expected {expected}: def {shape}"
        )
    return True


def _tuple(name: str, value: Any) -> Optional[Tuple[str, ...]]:
    if value is None:
        return None
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise TungstenDefinitionError(f"define_model({name}=...) takes a list of strings, got {value!r:.80}")
    return tuple(value)


def _build_dir(cls: type) -> Optional[str]:
    """The folder of the file defining ``cls`` (Tungstenkit's build directory), or None."""
    try:
        path = inspect.getfile(cls)
    except (TypeError, OSError):
        return None
    if not path or path.startswith("<") or not os.path.isfile(path):
        return None
    return os.path.dirname(os.path.abspath(path))


def _check_io(cls_name: str, key: str, io_cls: Any, required: bool = True) -> None:
    if io_cls is None and not required:
        return
    if not (isinstance(io_cls, type) and issubclass(io_cls, pydantic.BaseModel)):
        raise TungstenDefinitionError(
            f"define_model({key}=...) of {cls_name} must be a BaseIO class (modelzoo.tungsten.BaseIO), got {io_cls!r:.80}"
        )


def _build(cls: type, settings: Dict[str, Any]) -> type:
    from .model import TungstenModel

    name = cls.__name__
    if not isinstance(cls, type):
        raise TungstenDefinitionError(f"@define_model decorates a class, got {type(cls).__name__}")
    if issubclass(cls, TungstenModel):
        raise TungstenDefinitionError(f"{name} is already a Tungsten model (decorated twice?)")
    _check_io(name, "input", settings["input"])
    _check_io(name, "output", settings["output"])
    _check_io(name, "demo_output", settings.get("demo_output"), required=False)
    if not _check_method(cls, "predict", 2, "predict(self, inputs: List[Input]) -> List[Output]"):
        raise TungstenDefinitionError(f"{name} has no predict method: define def predict(self, inputs) -> List[Output]")
    has_setup = _check_method(cls, "setup", 1, "setup(self)")
    has_demo = _check_method(cls, "predict_demo", 2, "predict_demo(self, inputs) -> Tuple[List[Output], List[DemoOutput]]")
    has_post_build = _check_method(cls, "post_build", 0, "post_build() (a static method)")
    demo_output = settings.get("demo_output")
    if has_demo and demo_output is None:
        raise TungstenDefinitionError(f"{name} defines predict_demo: pass demo_output=<its visualization class> to define_model")
    if demo_output is not None and not has_demo:
        raise TungstenDefinitionError(f"define_model(demo_output=...) of {name} needs a predict_demo(self, inputs) method")
    batch_size = settings.get("batch_size", 1)
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise TungstenDefinitionError(f"define_model(batch_size=...) of {name} must be an integer >= 1, got {batch_size!r}")
    gpu = settings.get("gpu", False)
    if not isinstance(gpu, bool):
        raise TungstenDefinitionError(f"define_model(gpu=...) of {name} must be True or False, got {gpu!r}")
    info = TungstenInfo(
        cls=cls,
        input=settings["input"],
        output=settings["output"],
        demo_output=demo_output,
        batch_size=batch_size,
        options=option_names(settings["input"]),
        gpu=gpu,
        python_packages=_tuple("python_packages", settings.get("python_packages")),
        python_version=settings.get("python_version"),
        system_packages=_tuple("system_packages", settings.get("system_packages")),
        cuda_version=settings.get("cuda_version"),
        cudnn_version=settings.get("cudnn_version"),
        force_install_system_cuda=bool(settings.get("force_install_system_cuda", False)),
        gpu_mem_gb=settings.get("gpu_mem_gb"),
        mem_gb=settings.get("mem_gb"),
        include_files=_tuple("include_files", settings.get("include_files")),
        exclude_files=_tuple("exclude_files", settings.get("exclude_files")),
        dockerfile_commands=_tuple("dockerfile_commands", settings.get("dockerfile_commands")),
        base_image=settings.get("base_image"),
        readme_md=settings.get("readme_md"),
        has_setup=has_setup,
        has_predict_demo=has_demo,
        has_post_build=has_post_build,
        build_dir=_build_dir(cls),
    )
    namespace = {
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
        "__doc__": cls.__doc__,
        "tungsten": info,
        "request_schema": info.input,
        "response_schema": info.output,
    }
    return type(name, (TungstenModel,), namespace)


def define_model(
    maybe_cls: Optional[type] = None,
    *,
    input: Any = None,
    output: Any = None,
    demo_output: Any = None,
    batch_size: int = 1,
    gpu: bool = False,
    python_packages: Optional[List[str]] = None,
    python_version: Optional[str] = None,
    system_packages: Optional[List[str]] = None,
    cuda_version: Optional[str] = None,
    gpu_mem_gb: Optional[float] = None,
    mem_gb: Optional[float] = None,
    include_files: Optional[List[str]] = None,
    exclude_files: Optional[List[str]] = None,
    dockerfile_commands: Optional[List[str]] = None,
    base_image: Optional[str] = None,
    **more: Any,
) -> Any:
    """Makes a Tungstenkit model class a :class:`modelzoo.Model`.

    Args:
        input: the input class (a :class:`~modelzoo.tungsten.BaseIO`).
        output: the output class.
        demo_output: the class of ``predict_demo``'s visualizations (given
            exactly when the class defines ``predict_demo``).
        batch_size: the most inputs one ``predict`` call receives (inputs
            with different options never share a call).
        gpu, python_packages, python_version, system_packages, cuda_version,
            gpu_mem_gb, mem_gb, include_files, exclude_files,
            dockerfile_commands, base_image: Tungstenkit's container
            settings, recorded in ``Cls.tungsten`` (also ``cudnn_version``,
            ``force_install_system_cuda``, ``readme_md``).

    Returns:
        the decorator (or, used bare on a class, the model class): a
        :class:`~modelzoo.tungsten.TungstenModel` subclass of the same name.

    Raises:
        TungstenDefinitionError: a missing or ill-shaped method, a bad setting,
            or an unknown keyword (with the close match).

    Example::

        @define_model(input=Input, output=Output, batch_size=4)
        class Doubler:
            def predict(self, inputs):
                return [Output(y=2 * inp.x) for inp in inputs]

        Doubler().predict(Input(x=3))      # Output(y=6)
    """
    try:
        check_keys(more, _KEYWORDS, "define_model", kind="keyword")
    except Exception as e:
        raise TungstenDefinitionError(str(e)) from None
    settings: Dict[str, Any] = dict(
        input=input, output=output, demo_output=demo_output, batch_size=batch_size, gpu=gpu,
        python_packages=python_packages, python_version=python_version, system_packages=system_packages,
        cuda_version=cuda_version, gpu_mem_gb=gpu_mem_gb, mem_gb=mem_gb, include_files=include_files,
        exclude_files=exclude_files, dockerfile_commands=dockerfile_commands, base_image=base_image, **more,
    )

    def decorate(cls: type) -> type:
        return _build(cls, settings)

    return decorate(maybe_cls) if maybe_cls is not None else decorate
