"""``apply_model`` / ``compute_embeddings`` on Ray: the engine's parts on Ray Data.

:func:`run_model` is the Ray twin of :func:`modelzoo.engine.run_model`. The
driver splits the :class:`~modelzoo.engine.Source` into shards of sample ids
and builds a Ray Data pipeline::

    from_items(shards) -> map_batches(decode_shards)      # CPU tasks: read ids, load/decode
                       -> map_batches(Replica, compute=ActorPoolStrategy(size=n),
                                      num_cpus=..., num_gpus=...)  # each actor: one model, run_model per batch
                       -> iter_rows()                      # on the driver: per-batch reports only

Each replica writes its labels itself (the sink's one bulk write per
batch); the driver receives counts and failures, draws the progress bar
and merges the reports.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional

from ..db import database_uri, redact_uri
from ..db.settings import ENV_NAME, ENV_URI, ENV_WRITE_CONCERN, database_name, write_concern_name
from ..engine import ApplyReport, EmbeddingSink, Runner, RunOptions, Sink, Source, check_model
from ..engine import apply_model as engine_apply_model
from ..engine import compute_embeddings as engine_compute_embeddings
from ..errors import BackendError, ConfigError, DatabaseError, ModelError, ModelzooError
from ..models import Model
from ..progress import progress_bar
from ..recipes import HOW_TO_PASS, Recipe, recipe_of
from ..signing import ENV_TRUST_KEY, key_path
from .cluster import import_ray, session
from .options import RayOptions, ResourcePlan, check_database_reach, plan_resources
from .stages import Replica, decode_shards, pack, probe, unpack

__all__ = ["RayReport", "RayRunner", "run_model", "apply_model", "compute_embeddings"]

logger = logging.getLogger("modelzoo.ray")

# How long the replicas may take to start (build their models) before the run gives up.
_WAIT_FOR_REPLICAS_S = 600


@dataclass
class RayReport(ApplyReport):
    """An :class:`~modelzoo.ApplyReport` of a Ray run, with where the work went.

    Attributes:
        replicas: samples processed by each replica (``host:pid``).
        plan: the resources the run asked for.
        first_batch_s: seconds from the start of the call to the first stored batch.
        timings: where the seconds of the call went, in order: ``"session"``
            (importing Ray, and ``ray.init`` when the run starts a local
            Ray), ``"checks"`` (the recipe, the resource plan, the database's
            reach, counting the samples), ``"probe"`` (a worker process
            reaches the database and builds the model once, unprepared),
            ``"to_first_batch"`` (from the probe's end to the first stored
            batch: Ray Data's planning, the replica actors' start and model
            build, the decoding of the first shard, the first forward and
            write), ``"rest"`` (the first stored batch to the last),
            ``"shutdown"`` (stopping a Ray the run started).
        replica_build_s: seconds each replica (``host:pid``) took to build
            its model (``recipe.build`` + ``prepare``), inside
            ``"to_first_batch"``.
        replica_models: what each replica (``host:pid``) ran: the model's
            class, and with a :class:`~modelzoo.TorchImageModel` how
            (``"TorchImageModel (trace)"``: ``prepare`` chose the optimized graph).
        probe_s: seconds the probe took on its worker (reaching the
            database and building the model), inside ``"probe"``: the rest of
            that stage is Ray's (a worker process, its imports).
    """

    replicas: Dict[str, int] = field(default_factory=dict)
    plan: Optional[ResourcePlan] = None
    first_batch_s: Optional[float] = None
    timings: Dict[str, float] = field(default_factory=dict)
    replica_build_s: Dict[str, float] = field(default_factory=dict)
    replica_models: Dict[str, str] = field(default_factory=dict)
    probe_s: Optional[float] = None


class _Clock:
    """Laps of a run into a timings dict: each lap is the time since the previous one."""

    def __init__(self, timings: Dict[str, float], start: float):
        self.timings, self.last = timings, start

    def lap(self, name: str) -> float:
        """Records the lap ``name``; returns its end (``time.perf_counter``)."""
        now = time.perf_counter()
        self.timings[name] = now - self.last
        self.last = now
        return now


def _worker_env(uri: str) -> Dict[str, str]:
    env = {ENV_URI: uri, ENV_NAME: database_name()}
    if os.environ.get(ENV_TRUST_KEY):  # workers verify stored code with the driver's signing key
        env[ENV_TRUST_KEY] = key_path()
    wc = write_concern_name()
    if wc is not None:
        env[ENV_WRITE_CONCERN] = wc
    return env


def _cause(error: BaseException) -> Optional[BaseException]:
    """The modelzoo error a worker raised, found through Ray's wrappers."""
    seen = set()
    todo: List[Optional[BaseException]] = [error]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, ModelzooError) and type(e).__module__.startswith("modelzoo"):
            return e
        todo += [getattr(e, "cause", None), e.__cause__, e.__context__]
    return None


def _probe(ray: Any, recipe: Recipe, plan: ResourcePlan, env: Dict[str, str], uri: str) -> Dict[str, Any]:
    """Runs :func:`~modelzoo.ray.stages.probe` on a worker with a replica's resources; its failure as the run's error."""
    task = ray.remote(probe).options(
        num_cpus=plan.num_cpus, num_gpus=plan.num_gpus, max_retries=0, runtime_env={"env_vars": env}
    )
    try:
        return ray.get(task.remote(recipe))  # type: ignore[no-any-return]
    except Exception as e:  # a RayTaskError: the worker's traceback is in its text
        cause = _cause(e)
        if isinstance(cause, DatabaseError):
            raise DatabaseError(
                f"The Ray workers cannot reach the database {redact_uri(uri)}: {cause}. Set {ENV_URI} (or "
                "ray_options['database_uri']) to a MongoDB server every node reaches. Nothing was run."
            ) from e
        raise ModelError(
            f"{recipe.describe()} could not be built on a Ray worker, so nothing was run. The worker's "
            f"traceback:\n{e}\n{HOW_TO_PASS}"
        ) from e


def run_model(
    source: Source,
    model: Model,
    sink: Sink,
    options: Optional[RunOptions] = None,
    ray_options: Optional[Mapping[str, Any]] = None,
) -> RayReport:
    """Runs ``model`` over ``source`` on Ray; ``sink`` writes from the replicas.

    Args:
        source: the work items.
        model: a :class:`~modelzoo.Model` that has a recipe (see
            :func:`~modelzoo.ray.recipe_of`); each replica builds its own.
        sink: where outputs go: each replica writes through a copy. An
            :class:`~modelzoo.engine.EmbeddingSink` without a field gets the
            vectors back here.
        options: the engine's options (``num_workers`` does not apply: Ray decodes).
        ray_options: see :class:`~modelzoo.ray.RayOptions`.

    Returns:
        a :class:`RayReport`.

    Raises:
        ConfigError: bad options, no recipe, resources that would deadlock.
        ModelError: the recipe does not build on a worker (its traceback included).
        DatabaseError: the workers cannot reach the database (loopback URI on
            a multi-node cluster, or unreachable within 5 s).
        PredictionError: a sample failed and ``skip_failures`` is False.
        BackendError: the run failed on the cluster otherwise.
    """
    start = time.perf_counter()
    import_ray()  # no Ray: the error names the extra, before anything else
    options = options or RunOptions()
    ropts = RayOptions.from_mapping(ray_options)
    if ropts.batch_size is not None and options.batch_size is not None and ropts.batch_size != options.batch_size:
        raise ConfigError(
            f"batch_size={options.batch_size} and ray_options['batch_size']={ropts.batch_size} disagree; give one"
        )
    if not isinstance(model, Model):
        raise ConfigError(f"model must implement modelzoo.Model, got {type(model).__name__}. {HOW_TO_PASS}")
    recipe = recipe_of(model)  # no recipe: fails before Ray starts
    check_model(model, source, options.mode)  # the engine's checks, for a run it does not drive
    batch_size = ropts.batch_size or options.batch_size or int(model.default_batch_size or 16)
    keep_vectors = isinstance(sink, EmbeddingSink) and sink.field is None
    report = RayReport()
    clock = _Clock(report.timings, start)
    with session(ropts.address) as ray:
        clock.lap("session")
        try:
            ray.cloudpickle.dumps(recipe)
        except Exception as e:
            raise ConfigError(f"{recipe.describe()} cannot be sent to the Ray workers ({type(e).__name__}: {e}). {HOW_TO_PASS}") from e
        plan = plan_resources(ropts, ray.cluster_resources())
        report.plan = plan
        uri = ropts.database_uri or database_uri()
        check_database_reach(uri, ray.nodes(), ray.get_runtime_context().get_node_id())
        env = _worker_env(uri)
        total = source.count()
        clock.lap("checks")
        # The probe runs alone, before the pipeline: a database the workers cannot reach or a recipe
        # that does not build there fails the run in seconds, before Ray Data starts anything. It does
        # not prepare the model (no graph built or measured twice): the replicas do, each for itself.
        info = _probe(ray, recipe, plan, env, uri)
        report.probe_s = info["seconds"]
        clock.lap("probe")
        if total == 0:
            return report
        # Enough shards that every replica gets work, at least a batch each.
        wanted = max(math.ceil(total / ropts.shard_size), min(math.ceil(total / batch_size), 4 * plan.num_replicas))
        shards = source.split(max(1, wanted))
        engine_options = RunOptions(
            options.mode, batch_size, 0, plan.threads, options.skip_failures, False, options.store_logits,
            prompts=options.prompts,
        )
        ctx = ray.data.DataContext.get_current()
        saved = (
            ctx.enable_progress_bars, ctx.wait_for_min_actors_s, ctx.print_on_execution_start,
            ctx.target_max_block_size,
        )
        ctx.enable_progress_bars = False  # the driver draws one bar
        ctx.print_on_execution_start = False
        # One model batch per block (Ray's default of 128 MB blocks would put a shard's batches in
        # one block, and a block goes to one replica).
        ctx.target_max_block_size = 1
        ctx.wait_for_min_actors_s = _WAIT_FOR_REPLICAS_S  # every replica is up before work is dispatched
        decoded = ray.data.from_items([{"source": pack(s)} for s in shards], override_num_blocks=len(shards))
        decoded = decoded.map_batches(
            decode_shards, batch_size=1, num_cpus=plan.decode_cpus, runtime_env={"env_vars": env},
            fn_kwargs={"loader": info["loader"], "batch_size": batch_size},
            # A nominal memory request makes the decoding's remote arguments differ from the
            # replicas', so Ray Data never fuses the two: decoding stays in CPU tasks, the forward
            # pass in the actors, and the two overlap.
            memory=1,
        )
        if plan.num_replicas > 1:
            # A decoding task's output blocks travel as one bundle, to one replica: split them so
            # that any free replica takes the next batch. This costs a copy of every decoded batch
            # (bench_ray, 300 images, one replica: 26 s steady state with it, 3 s without), so a
            # single replica goes without.
            decoded = decoded.repartition(target_num_rows_per_block=1)
        pipeline = decoded.map_batches(
            Replica, batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=plan.num_replicas, max_tasks_in_flight_per_actor=2),
            num_cpus=plan.num_cpus, num_gpus=plan.num_gpus, runtime_env={"env_vars": env},
            fn_constructor_kwargs={
                "recipe": recipe, "source": source, "sink": sink, "options": engine_options,
                "total": total, "keep_vectors": keep_vectors,
            },
        )
        logger.info(
            "Running %s on %d samples of %r on Ray: %d shards, %d replicas x (%g CPU, %g GPU), batch %d",
            recipe.describe(), total, source.dataset_name, len(shards), plan.num_replicas, plan.num_cpus,
            plan.num_gpus, batch_size,
        )
        bar = progress_bar(total, "embed" if options.mode == "embed" else "apply", enabled=options.progress)
        try:
            for row in pipeline.iter_rows():
                if report.first_batch_s is None:
                    report.first_batch_s = clock.lap("to_first_batch") - start
                if float(row["build_s"]) > 0:
                    report.replica_build_s[str(row["replica"])] = float(row["build_s"])
                report.replica_models[str(row["replica"])] = str(row["model"])
                report.processed += int(row["processed"])
                report.failed += int(row["failed"])
                report.failures.extend(unpack(row["failures"]))
                name = str(row["replica"])
                report.replicas[name] = report.replicas.get(name, 0) + int(row["processed"])
                kept = unpack(row["vectors"])
                if isinstance(sink, EmbeddingSink) and kept is not None:
                    other = EmbeddingSink()
                    other.vectors, other.failed = kept
                    sink.merge(other)
                bar.update(int(row["processed"]) + int(row["failed"]))
        except Exception as e:
            cause = _cause(e)
            if cause is not None:
                raise cause from e
            raise BackendError(
                f"The Ray run of {recipe.describe()} on {source.dataset_name!r} failed on the cluster after "
                f"{report.processed} samples: {e}\nEvery batch a replica finished is stored; rerun with "
                "skip_existing=True to finish."
            ) from e
        finally:
            bar.close()
            (
                ctx.enable_progress_bars, ctx.wait_for_min_actors_s, ctx.print_on_execution_start,
                ctx.target_max_block_size,
            ) = saved
        clock.lap("rest")
    clock.lap("shutdown")
    logger.info("Ray run timings (s): %s", ", ".join(f"{k} {v:.2f}" for k, v in report.timings.items()))
    report.failures.sort(key=lambda f: f.sample_id)
    if report.failed:
        logger.warning(
            "%d of %d samples failed (the returned report lists each one); first: %s",
            report.failed, total, report.failures[0],
        )
    return report


class RayRunner(Runner):
    """The ``"ray"`` backend (registered when :mod:`modelzoo.ray` is imported):
    :func:`run_model` with the backend options as ``ray_options``."""

    name = "ray"

    def check_options(self, backend_options: Optional[Mapping[str, Any]]) -> None:
        import_ray()  # no Ray installed: the error names the extra, before anything is read
        RayOptions.from_mapping(backend_options)

    def check_run(self, model: Model, frames: bool) -> None:
        if frames or model.media_type == "video":
            raise ConfigError(
                "backend='ray' runs image models on image samples; videos (their frames, or a video model) run "
                "in this process. Match the images (samples.match({'media_type': 'image'})) for Ray, and run "
                "the videos with backend='local'."
            )

    def run(
        self,
        source: Source,
        model: Model,
        sink: Sink,
        options: RunOptions,
        backend_options: Optional[Mapping[str, Any]] = None,
    ) -> ApplyReport:
        return run_model(source, model, sink, options, backend_options)


def _on_ray(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` (the engine's) with ``backend="ray"``: the same parameters, never a copy of them."""

    @functools.wraps(fn)
    def on_ray(*args: Any, **kwargs: Any) -> Any:
        if "backend" in kwargs:
            raise ConfigError(f"modelzoo.ray.{fn.__name__} runs on Ray: drop backend={kwargs['backend']!r}")
        return fn(*args, backend="ray", **kwargs)

    on_ray.__doc__ = f":func:`modelzoo.{fn.__name__}` with ``backend=\"ray\"`` (same arguments; see :func:`run_model`).\n\n" + (
        fn.__doc__ or ""
    )
    return on_ray


#: :func:`modelzoo.apply_model` with ``backend="ray"`` (``ray_options``: a :class:`~modelzoo.ray.RayOptions` mapping)
apply_model = _on_ray(engine_apply_model)

#: :func:`modelzoo.compute_embeddings` with ``backend="ray"``
compute_embeddings = _on_ray(engine_compute_embeddings)
