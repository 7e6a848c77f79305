"""``apply_model`` and ``compute_embeddings`` on a Ray cluster (``pip install 'modelzoo[ray]'``).

The same calls as in-process, plus ``ray_options``::

    report = dataset.apply_model(model, label_field="predictions", backend="ray",
                                 ray_options={"num_replicas": 4, "num_gpus": 1})
    # modelzoo.ray.apply_model(dataset, model, ...) is the same call

Built on Ray Data: shards of sample ids are read and decoded in Ray CPU
tasks, and ``map_batches`` with a callable class runs the model in a pool of
actors, each building its model once from a :class:`Recipe` (never a
pickled model) and writing its labels to the dataset's MongoDB. See
docs/ray.md. Importing this package registers the ``"ray"`` backend
(:class:`RayRunner`, see :mod:`modelzoo.engine.backends`); it does not
import Ray; a run does.
"""

from ..engine.backends import register_backend
from ..recipes import Recipe, recipe_of, remember
from .options import RayOptions, ResourcePlan, check_database_reach, plan_resources, uri_is_loopback
from .run import RayReport, RayRunner, apply_model, compute_embeddings, run_model

register_backend("ray", RayRunner())

__all__ = [
    "RayOptions",
    "RayReport",
    "RayRunner",
    "Recipe",
    "ResourcePlan",
    "apply_model",
    "check_database_reach",
    "compute_embeddings",
    "plan_resources",
    "recipe_of",
    "remember",
    "run_model",
    "uri_is_loopback",
]
