"""Recipes: how a model is rebuilt in another process, instead of pickling it.

A model never travels to another process as an object (its module, an
optimized graph, open files...): it travels as a :class:`Recipe`, and each
process builds its own model from it once. Ray replicas use it
(:mod:`modelzoo.ray`), the zoo records one for every model it loads, and
adapters declare theirs (:meth:`modelzoo.Model.rebuild_recipe`; a Tungsten
model pickles as its recipe). Three kinds:

* ``Recipe.zoo(name, **overrides)``: :func:`modelzoo.load_zoo_model` on the
  worker (each node resolves and caches the weights itself);
* ``Recipe.config(config, model_cls)``: ``model_cls(config)``, e.g. a
  :class:`~modelzoo.TorchImageModel` from its config;
* ``Recipe.factory(fn, *args, **kwargs)``: ``fn(*args, **kwargs)``, any
  picklable (module-level) callable that returns a :class:`~modelzoo.Model`
  (an adapter's definition: a bundle's path, a runner's reference...).

:func:`recipe_of` finds the recipe of a model object: the one it was built
from (:meth:`Recipe.build`, :func:`modelzoo.load_zoo_model`), the one the
model declares (:meth:`~modelzoo.Model.rebuild_recipe`), or its class and
config when its constructor takes only a config. :func:`rebuild` is what
``pickle`` calls for a model that pickles as its recipe. Part of the core:
imports no feature package.
"""

from __future__ import annotations

import inspect
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from .errors import ConfigError
from .imports import import_object
from .mixins import LogitsMixin
from .models import Model

__all__ = ["Recipe", "recipe_of", "remember", "rebuild", "HOW_TO_PASS", "NAME_LOADERS", "DEFAULT_MODEL_CLS"]

#: what the errors say to pass when a model has no recipe
HOW_TO_PASS = (
    "Pass a model that can be rebuilt on a worker: one loaded with modelzoo.load_zoo_model(name, **overrides), "
    "one built from its config (TorchImageModel(config), or any Model class whose constructor takes only its "
    "config), one whose class defines rebuild_recipe(), or modelzoo.recipes.Recipe.factory(fn, *args, **kwargs).build() "
    "with fn a module-level function or class that returns the model."
)

_KINDS = ("zoo", "config", "factory")

#: What builds a ``Recipe.zoo`` recipe, keyed ``"zoo"``: filled by
#: :mod:`modelzoo.zoo` when it is imported (the zoo sits above recipes and
#: imports them; recipes never import the zoo). ``import modelzoo`` imports
#: the zoo, so every process that can unpickle a recipe has it.
NAME_LOADERS: Dict[str, Callable[..., Any]] = {}

#: The class ``Recipe.config(config)`` builds when no ``model_cls`` is given,
#: keyed ``"config"``, by its import path: :class:`~modelzoo.TorchImageModel`
#: sits above recipes (it imports models and mixins), so recipes keep its
#: name and import it on first use, never at import time.
DEFAULT_MODEL_CLS: Dict[str, str] = {"config": "modelzoo.torch_image.TorchImageModel"}

# model object -> the recipe it was built from (weak: a model's recipe goes with it)
_remembered: "weakref.WeakKeyDictionary[Any, Recipe]" = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Recipe:
    """How to build a model: picklable, small, and the same on every worker.

    Attributes:
        kind: ``"zoo"``, ``"config"`` or ``"factory"``.
        target: the zoo name, the model class, or the factory.
        args: positional arguments (the config, or the factory's).
        kwargs: keyword arguments (zoo overrides, or the factory's).
        attributes: attributes set on the built model (``store_logits``).
    """

    kind: str
    target: Any
    args: Tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    attributes: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ConfigError(f"Recipe kind must be one of {', '.join(_KINDS)}, got {self.kind!r}")

    @classmethod
    def zoo(cls, name: str, **overrides: Any) -> "Recipe":
        """``load_zoo_model(name, **overrides)`` on each worker."""
        if not isinstance(name, str) or not name:
            raise ConfigError(f"Recipe.zoo(name): name must be a zoo model name, got {name!r}")
        return cls("zoo", name, (), dict(overrides))

    @classmethod
    def config(cls, config: Any, model_cls: Optional[type] = None) -> "Recipe":
        """``model_cls(config)`` on each worker (default class: TorchImageModel,
        see :data:`DEFAULT_MODEL_CLS`)."""
        if model_cls is None:
            model_cls = import_object(DEFAULT_MODEL_CLS["config"], "Recipe.config's default model class")
        if not (isinstance(model_cls, type) and issubclass(model_cls, Model)):
            raise ConfigError(f"Recipe.config: model_cls must be a modelzoo.Model subclass, got {model_cls!r}")
        return cls("config", model_cls, (config,))

    @classmethod
    def factory(cls, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> "Recipe":
        """``fn(*args, **kwargs)`` on each worker; ``fn`` must pickle (a
        module-level function or class)."""
        if not callable(fn):
            raise ConfigError(f"Recipe.factory(fn): fn must be callable, got {type(fn).__name__}")
        return cls("factory", fn, tuple(args), dict(kwargs))

    def with_attributes(self, **attributes: Any) -> "Recipe":
        """This recipe, also setting ``attributes`` on the built model."""
        return Recipe(self.kind, self.target, self.args, self.kwargs, {**self.attributes, **attributes})

    def build(self) -> Any:
        """Builds the model (and remembers this recipe for it).

        Raises:
            ConfigError: the recipe does not give a :class:`~modelzoo.Model`.
        """
        if self.kind == "zoo":
            if "zoo" not in NAME_LOADERS:
                raise ConfigError(f"{self.describe()}: the zoo is not loaded; import modelzoo first")
            model = NAME_LOADERS["zoo"](self.target, **dict(self.kwargs))
        else:
            model = self.target(*self.args, **dict(self.kwargs))
        if not isinstance(model, Model):
            raise ConfigError(f"{self.describe()} returned {type(model).__name__}, not a modelzoo.Model. {HOW_TO_PASS}")
        for name, value in self.attributes.items():
            setattr(model, name, value)
        return remember(model, self)

    def describe(self) -> str:
        """A short description for messages."""
        if self.kind == "zoo":
            extra = "".join(f", {k}={v!r}" for k, v in self.kwargs.items())
            return f"Recipe.zoo({self.target!r}{extra})"
        name = getattr(self.target, "__qualname__", repr(self.target))
        module = getattr(self.target, "__module__", "")
        return f"Recipe.{self.kind}({module + '.' if module else ''}{name})"


def remember(model: Any, recipe: Recipe) -> Any:
    """Records that ``model`` was built from ``recipe``; returns ``model``."""
    try:
        _remembered[model] = recipe
    except TypeError:  # not weak-referenceable: recipe_of falls back to its class and config
        pass
    return model


def rebuild(recipe: Recipe) -> Any:
    """``recipe.build()``: what unpickling a model that pickles as its recipe calls
    (``def __reduce__(self): return (rebuild, (recipe_of(self),))``)."""
    return recipe.build()


def _config_only(cls: type) -> bool:
    """Whether ``cls(config)`` rebuilds an instance: its constructor takes only ``config``."""
    if "<locals>" in cls.__qualname__:
        return False
    try:
        params = list(inspect.signature(cls).parameters.values())
    except (TypeError, ValueError):
        return False
    return len(params) == 1 and params[0].name == "config" and params[0].kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.POSITIONAL_ONLY,
    )


def recipe_of(model: Any) -> Recipe:
    """The recipe that rebuilds ``model`` on another machine.

    The recipe it was built from if known, else the one it declares
    (:meth:`~modelzoo.Model.rebuild_recipe`), else its class and config
    when its constructor takes only a config. Attributes a run sets on the model
    (``store_logits``) are carried along.

    Raises:
        ConfigError: the model cannot be rebuilt; says what to pass instead.
    """
    if isinstance(model, Recipe):
        return model
    if not isinstance(model, Model):
        raise ConfigError(
            f"model must implement modelzoo.Model (or be a modelzoo.recipes.Recipe), got {type(model).__name__}. "
            + HOW_TO_PASS
        )
    recipe = _remembered.get(model)
    if recipe is None:
        recipe = model.rebuild_recipe()
    if recipe is None:
        cls = type(model)
        if not _config_only(cls):
            raise ConfigError(
                f"{cls.__name__} cannot be rebuilt on a Ray worker or in another process: modelzoo sends a "
                f"recipe, never the model object, and {cls.__module__}.{cls.__qualname__}'s constructor takes more than its "
                f"config. {HOW_TO_PASS}"
            )
        recipe = Recipe.config(model.config, cls)
    attributes: Dict[str, Any] = {}
    if isinstance(model, LogitsMixin) and model.has_logits and model.store_logits:
        attributes["store_logits"] = True
    return recipe.with_attributes(**attributes) if attributes else recipe
