"""Encode engines: where the texts an embedding cache lacks are turned into vectors.

:func:`ragkit.embedding_cache.encode_into_cache` is the one loop that encodes for ingest,
repair and migration backfill; it sorts the texts by length, cuts them into parts, and
commits each part's vectors to the cache as it arrives. *Where* a part is encoded is the
engine's business: in this process (:class:`InProcessEngine`, the default), or on a pool of
Ray actors (``ragkit.compute.ray_engine``, ``[compute] engine = "ray"``). Engines only produce
vectors; caching and committing stay with the single writer, so every engine keeps the
store's crash safety and resumability without code of its own.

An engine is chosen by name through :data:`ENGINES`, like encoders and index backends; the
Ray entry is a lazy import path, so importing ragkit never imports ray.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from ragkit.registry import Registry

if TYPE_CHECKING:
    from ragkit.config import ComputeConfig, EncoderConfig, WorkspaceConfig
    from ragkit.encoders.protocol import Encoder

__all__ = [
    "ENGINES",
    "EncodeEngine",
    "EncodedPart",
    "InProcessEngine",
    "encodes_ahead",
    "make_engine",
    "part_size",
    "ray_engine_at",
    "register_engine",
]

#: ``(text hashes, vectors)``: one part of an encode job, ready to be cached
EncodedPart = tuple[list[str], np.ndarray]


@runtime_checkable
class EncodeEngine(Protocol):
    """Turns length-sorted ``(text hash, text)`` pairs into vectors, part by part.

    ``encode`` yields each part as soon as it is done, in any order, each input hash once;
    the caller caches a part before asking for the next, so a crash loses at most the parts
    in flight. ``model_fp`` is the fingerprint id the vectors are cached under: an engine
    that builds its own encoder (a remote worker) must refuse to encode with another one.

    An engine may also set ``encodes_ahead = False`` (see :func:`encodes_ahead`) when each
    ``encode`` call pays a start-up (a Ray job starts its actor pool): an ingest then encodes
    once per commit batch instead of part by part while its parser is busy.
    """

    name: str

    def encode(
        self, encoder: Encoder, model_fp: str, items: Sequence[tuple[str, str]], step: int
    ) -> Iterator[EncodedPart]: ...


EngineFactory = Callable[["ComputeConfig", "EncoderConfig"], EncodeEngine]

#: engine name -> ``(compute config, encoder config) -> EncodeEngine``
ENGINES: Registry[EngineFactory] = Registry("encode engine", "compute.engine")


def register_engine(name: str) -> Callable[[EngineFactory], EngineFactory]:
    """Decorator: make ``factory(compute, encoder) -> EncodeEngine`` the engine ``name``."""
    return ENGINES.register(name)


def encodes_ahead(engine: EncodeEngine | None) -> bool:
    """Whether small encode calls cost an engine no more per text than large ones, so an
    ingest may encode a part early while its producer is behind (default: yes)."""
    return bool(getattr(engine, "encodes_ahead", True))


def part_size(encoder: Encoder) -> int:
    """Texts per part: enough encoder batches that one cache commit (one fsync) is cheap next
    to the encoding it saves, few enough that a crash redoes little."""
    return max(encoder.batch_size * 8, 256)


class InProcessEngine:
    """Encode with the writer's own encoder object, one part after another (today's loop)."""

    name = "in-process"
    encodes_ahead = True

    def encode(
        self, encoder: Encoder, model_fp: str, items: Sequence[tuple[str, str]], step: int
    ) -> Iterator[EncodedPart]:
        for start in range(0, len(items), step):
            part = items[start : start + step]
            yield [h for h, _ in part], encoder.encode_documents([text for _, text in part])


@register_engine("in-process")
def _in_process(compute: ComputeConfig, encoder: EncoderConfig) -> EncodeEngine:
    return InProcessEngine()


ENGINES.add("ray", "ragkit.compute.ray_engine:make_ray_engine")


def make_engine(compute: ComputeConfig, encoder: EncoderConfig) -> EncodeEngine:
    """The engine ``[compute]`` names; builds no cluster connection until it encodes."""
    return ENGINES.get(compute.engine)(compute, encoder)


def ray_engine_at(config: WorkspaceConfig, address: str | None) -> EncodeEngine | None:
    """The Ray engine at ``address`` with the rest of ``[compute]`` as configured (what
    ``--ray ADDRESS`` asks for), or None when no address is given."""
    if not address:
        return None
    compute = dataclasses.replace(config.compute, engine="ray", address=address)
    return make_engine(compute, config.encoder)
