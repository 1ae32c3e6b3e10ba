"""The Ray encode engine: the texts an embedding cache lacks, encoded by a pool of Ray actors.

``ray.data.from_items`` turns the length-sorted ``(text hash, text)`` pairs into blocks of at
most one part each, longest texts first and, with several actors, at least four blocks per
actor, so the pool shares the work as actors finish blocks and the job ends on short ones;
``map_batches`` runs them through :class:`EncoderActor`, an actor pool in which each
actor builds the encoder once with ``load_encoder``, from the config the writer built the very
encoder it hands over from (``recipe_of``): for a collection's encoder that is the collection's
spec (``spec.encoder.config(runtime)``, see ``ragkit.collection_parts``), so two collections of
two models (a migration's shadow and its live collection) each get actors of their own model,
whatever ragkit.toml says; an encoder made in memory has no recipe and the engine's own
``[encoder]`` config applies. Any provider works the same way: a local model (one GPU per
actor where the cluster has GPUs) or a remote HTTP encoder, whose actors then only fan out
requests (keep ``actors`` within the service's rate limit). Vectors stream back to this
process part by part, in whatever order parts finish, keyed by text hash; the caller
(``encode_into_cache``) caches each part before it takes the next, so a crash anywhere loses
only the parts in flight.

An actor that dies (a killed worker, a lost node) is restarted and its batch retried, up to
``[compute] max_restarts`` times; past that the job fails with the parts done so far cached.
ray is imported only when an encode starts, so neither ``import ragkit`` nor a workspace with
``engine = "ray"`` that only reads needs ray installed.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ragkit.errors import EncoderMismatchError, MissingDependencyError, RagkitError

if TYPE_CHECKING:
    from ragkit.compute import EncodedPart
    from ragkit.config import ComputeConfig, EncoderConfig
    from ragkit.encoders.protocol import Encoder

__all__ = ["EncoderActor", "RayEngine", "check_part", "make_ray_engine"]


#: blocks per actor in a job of several actors (the work is shared as they finish blocks)
BLOCKS_PER_ACTOR = 4


def make_ray_engine(compute: ComputeConfig, encoder: EncoderConfig) -> RayEngine:
    return RayEngine(compute, encoder)


class EncoderActor:
    """One Ray actor's encoder, built once when the actor starts (not once per batch).

    ``factory`` is the provider's ``config -> Encoder`` function from this driver's registry,
    shipped by reference (its module must be importable on the workers: ragkit's own providers
    are, a plugin's must be installed there too), so a provider registered by a plugin in the
    driver resolves on the workers without the plugin being imported there first.
    """

    def __init__(self, config: EncoderConfig, factory: Any, threads: int = 0) -> None:
        from ragkit.encoders.registry import ENCODERS, load_encoder

        ENCODERS.add(config.provider, factory, replace=True)
        if threads:
            _limit_torch_threads(threads)
        self.encoder = load_encoder(config)
        self.fingerprint = f"{self.encoder.fingerprint['id']} {self.encoder.name}"

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vectors = self.encoder.encode_documents([str(t) for t in batch["text"]])
        return {
            "text_hash": batch["text_hash"],
            "vector": np.ascontiguousarray(vectors, dtype=np.float32),
            # Checked by the writer: vectors of another model must never reach its cache.
            "encoder": np.full(len(vectors), self.fingerprint, dtype=object),
        }


def _limit_torch_threads(threads: int) -> None:
    try:
        import torch
    except ImportError:  # an HTTP encoder's worker needs no torch
        return
    torch.set_num_threads(threads)


class RayEngine:
    """Encodes on the Ray cluster at ``[compute] address`` (see :class:`ComputeConfig`)."""

    name = "ray"
    #: each encode call is a Ray Data job that starts its actors: one per commit batch
    encodes_ahead = False

    def __init__(self, compute: ComputeConfig, encoder: EncoderConfig) -> None:
        self.compute = compute
        self.encoder_config = encoder

    def encode(
        self, encoder: Encoder, model_fp: str, items: Sequence[tuple[str, str]], step: int
    ) -> Iterator[EncodedPart]:
        if not items:
            return
        ray = _import_ray()
        self._connect(ray)
        from ragkit.encoders.registry import ENCODERS, recipe_of

        config = recipe_of(encoder) or self.encoder_config

        actors, gpus = self._pool_size(ray.cluster_resources())
        actors = min(actors, len(items))  # a pool larger than its blocks only idles (and warns)
        # Several blocks per actor, longest texts first: actors take the next block as they
        # finish, so the job ends on short blocks instead of one actor alone on the longest.
        blocks_per_actor = 1 if actors == 1 else BLOCKS_PER_ACTOR
        batch_size = min(
            self.compute.batch_size or step, math.ceil(len(items) / (actors * blocks_per_actor))
        )
        threads = self.compute.threads_per_actor or max(1, (os.cpu_count() or 1) // actors)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the CLI draws its own progress
        context.print_on_execution_start = False
        rows = [{"text_hash": h, "text": t} for h, t in reversed(items)]  # sorted: longest first
        dataset = ray.data.from_items(rows, override_num_blocks=math.ceil(len(rows) / batch_size))
        restarts = self.compute.max_restarts
        encoded = dataset.map_batches(
            EncoderActor,
            fn_constructor_kwargs={
                "config": config,
                "factory": ENCODERS.get(config.provider),
                "threads": threads,
            },
            compute=ray.data.ActorPoolStrategy(size=actors),
            batch_size=batch_size,
            batch_format="numpy",
            num_cpus=self.compute.cpus_per_actor,
            num_gpus=gpus,
            # Bounded (Ray Data's default is forever), so a batch that kills every worker
            # fails the job instead of looping; applied to each actor as it is created.
            ray_remote_args_fn=functools.partial(
                dict, max_restarts=restarts, max_task_retries=restarts
            ),
        )
        try:
            parts = encoded.iter_batches(batch_size=None, batch_format="numpy")
            for part in parts:
                yield check_part(part, model_fp)
        except RagkitError:
            raise
        except Exception as exc:
            raise RagkitError(
                f"encoding on the Ray cluster ({self.compute.address}) failed: "
                f"{_first_line(exc)}. Parts finished before it are cached, so running the job "
                "again encodes only the rest"
            ) from exc

    def _connect(self, ray: Any) -> None:
        """Join the cluster once per process; a driver that called ``ray.init`` itself (a
        notebook, a test) keeps its own connection."""
        if ray.is_initialized():
            return
        address = self.compute.address
        try:
            if address == "local":
                ray.init(include_dashboard=False, configure_logging=False)
            else:
                ray.init(address=address, configure_logging=False)
        except (ConnectionError, RuntimeError) as exc:
            raise RagkitError(
                f"cannot reach a Ray cluster at {address!r} ({_first_line(exc)}); start one "
                "with `ray start --head` (see docs/scale.md), or use --ray local for a "
                "cluster on this machine only"
            ) from exc

    def _pool_size(self, resources: dict[str, float]) -> tuple[int, float]:
        """``(actors, GPUs per actor)`` for the cluster as it is now."""
        cluster_gpus = resources.get("GPU", 0.0)
        gpus = self.compute.gpus_per_actor
        if gpus < 0:
            gpus = 1.0 if cluster_gpus >= 1 else 0.0
        actors = self.compute.actors
        if not actors:
            if gpus:
                actors = max(1, int(cluster_gpus // gpus))
            else:
                actors = max(1, int(resources.get("CPU", 1.0)) // 2)
        return actors, gpus


def _import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise MissingDependencyError("ray", "ray", '[compute] engine = "ray"') from exc
    return ray


def check_part(part: dict[str, np.ndarray], model_fp: str) -> EncodedPart:
    """One output batch as ``(hashes, vectors)``, refused when its actor built another encoder
    than the one the vectors are cached for (another model path or files on a worker node)."""
    hashes = [str(h) for h in part["text_hash"]]
    for described in dict.fromkeys(str(e) for e in part["encoder"]):
        found, _, name = described.partition(" ")
        if found != model_fp:
            raise EncoderMismatchError(
                f"the Ray workers built encoder {name!r} ({found[:12]}), but the collection's "
                f"vectors are for {model_fp[:12]}; every worker must load the same model (same "
                "path and files on every node) as the writer"
            )
    return hashes, np.asarray(part["vector"], dtype=np.float32).reshape(len(hashes), -1)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
