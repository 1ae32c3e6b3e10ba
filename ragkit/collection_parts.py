"""The working parts of each collection, built from its own spec and cached between uses.

A collection is queried and written with *its* encoder, chunker and sparse channel, not with
whatever ragkit.toml says now: encoders are loaded from the spec and cached per fingerprint
(two collections of one model share one), chunkers per chunking fingerprint, sparse channels
per channel spec. An encoder handed to the workspace in memory (``ragkit.open(...,
encoder=...)``) stands for the configured one: it answers for every collection with its
fingerprint, and a collection that claims the same model under another fingerprint is refused
instead of being answered by other vectors.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import TYPE_CHECKING, Any, Protocol

from ragkit.chunking import Chunker
from ragkit.collection_spec import ChunkingSpec, CollectionSpec, EncoderSpec
from ragkit.encoders.fingerprint import same_encoder
from ragkit.errors import EncoderMismatchError, RagkitError
from ragkit.sparse_channel import SparseChannel, make_sparse_channel

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np

    from ragkit.collection import Collection
    from ragkit.config import ChunkingConfig, WorkspaceConfig
    from ragkit.documents import Hit
    from ragkit.encoders.protocol import Encoder
    from ragkit.lock import WorkspaceLock
    from ragkit.store import Store

__all__ = [
    "CheckedSource",
    "CollectionParts",
    "CollectionSource",
    "QueryableSource",
    "chunker_for",
    "encoder_spec_of",
    "tokenizer_id",
]


class CollectionSource(Protocol):
    """Where collections and their parts come from: what the query path needs, and all it
    may touch. :class:`~ragkit.workspace.Workspace` is one; the Searcher, doctor, drift and
    training are typed against this (or one of the two below) so that none of them reaches
    for the rest of a workspace (its jobs, lock or facade)."""

    @property
    def root(self) -> Path: ...

    @property
    def store(self) -> Store: ...

    @property
    def config(self) -> WorkspaceConfig:
        """ragkit.toml: query-time settings (rerank, a ``[fusion]`` table) and seeds."""
        ...

    def collection(self, alias: str = ...) -> Collection | None:
        """The collection an alias points at, or the collection of that name."""
        ...

    def encoder_for(self, collection: Collection) -> Encoder: ...

    def sparse_channel_for(self, collection: Collection) -> SparseChannel | None: ...

    def warm_encoder(self, collection: Collection) -> None:
        """Load the collection's encoder ahead of its first query (errors left for it)."""
        ...


class CheckedSource(CollectionSource, Protocol):
    """What ``ragkit doctor`` and the drift report add: a peek at the writer lock (a writer's
    next generation is not stray) and the encoder already in memory, whose fingerprint
    stands for ``[encoder]`` (None: none loaded; drift then loads nothing)."""

    @property
    def lock(self) -> WorkspaceLock: ...

    @property
    def loaded_encoder(self) -> Encoder | None: ...


class QueryableSource(CollectionSource, Protocol):
    """What mining and the fine-tuning evaluator add: the seeding encoder (the model being
    fine-tuned) and the same queries a user runs."""

    @property
    def encoder(self) -> Encoder: ...

    def query_many(
        self,
        texts: list[str],
        *,
        k: int = ...,
        mode: str | None = ...,
        rerank: bool | str | None = ...,
        query_vectors: np.ndarray | None = ...,
    ) -> list[list[Hit]]: ...

    def available_modes(self, alias: str = ...) -> list[str]: ...


class CollectionParts:
    def __init__(
        self,
        config: WorkspaceConfig,
        override: Encoder | None = None,
        *,
        export_dir: str = "",
    ) -> None:
        """``export_dir``: where an ONNX export is kept when ragkit.toml names no folder
        (the workspace's ``models/``)."""
        self.config = config
        self.override = override
        self.export_dir = export_dir
        self._encoders: dict[str, Encoder] = {}
        self._chunkers: dict[tuple[str, str], Chunker] = {}
        self._channels: dict[str, SparseChannel | None] = {}
        self._lock = threading.RLock()

    def add_encoder(self, encoder: Encoder) -> None:
        """Make an encoder in memory available to the collections of its fingerprint."""
        with self._lock:
            self._encoders[encoder.fingerprint["id"]] = encoder

    def encoder(self, collection: Collection) -> Encoder:
        record = collection.record
        spec = record.spec.encoder
        fingerprint = spec.fingerprint or record.model_fp
        with self._lock:
            override = self.override
            if override is not None and same_encoder(
                fingerprint, record.encoder, override.fingerprint
            ):
                return override
            cached = self._encoders.get(fingerprint)
            if cached is not None:
                return cached
            if override is not None and override.name == spec.model:
                raise _mismatch(collection, override)
            encoder = self._load(collection)
            if not same_encoder(fingerprint, record.encoder, encoder.fingerprint):
                raise _mismatch(collection, encoder, loaded=True)
            self._encoders[fingerprint] = encoder
            return encoder

    def warm(self, collection: Collection) -> None:
        """Load the collection's encoder ahead of its first query, without holding the lock
        while it loads (queries of other collections go on meanwhile); errors are left for
        that first query to report."""
        record = collection.record
        fingerprint = record.spec.encoder.fingerprint or record.model_fp
        with self._lock:
            if fingerprint in self._encoders or self.override is not None:
                return
        try:
            encoder = self._load(collection)
        except Exception:  # the query that needs it says why
            return
        if same_encoder(fingerprint, record.encoder, encoder.fingerprint):
            with self._lock:
                self._encoders.setdefault(fingerprint, encoder)

    def _load(self, collection: Collection) -> Encoder:
        from ragkit.encoders.registry import load_encoder

        spec = collection.record.spec.encoder
        config = spec.config(self.config.encoder)
        if self.export_dir and not getattr(config, "export_dir", "x"):
            config = dataclasses.replace(config, export_dir=self.export_dir)
        try:
            return load_encoder(config)
        except RagkitError as exc:
            raise EncoderMismatchError(
                f"collection {collection.name!r} needs its encoder {spec.model!r} "
                f"({spec.fingerprint[:12]}), which cannot be loaded: {exc}"
            ) from exc

    def chunker(self, collection: Collection) -> Chunker:
        encoder = self.encoder(collection)
        spec = collection.record.spec.chunking
        key = (encoder.fingerprint["id"], spec.fingerprint)
        with self._lock:
            chunker = self._chunkers.get(key)
            if chunker is None:
                chunker = chunker_for(encoder, spec.config())
                self._chunkers[key] = chunker
            return chunker

    def sparse_channel(self, collection: Collection) -> SparseChannel | None:
        spec = collection.record.spec.sparse
        key = f"{spec.model}\0{spec.max_seq_length}"
        with self._lock:
            if key not in self._channels:
                self._channels[key] = make_sparse_channel(spec.config(self.config.sparse))
            return self._channels[key]

    def remember_channel(self, spec: CollectionSpec, channel: SparseChannel | None) -> None:
        """Reuse a channel already built for the same spec (its model stays loaded once)."""
        key = f"{spec.sparse.model}\0{spec.sparse.max_seq_length}"
        with self._lock:
            self._channels.setdefault(key, channel)


def chunker_for(encoder: Encoder, config: ChunkingConfig) -> Chunker:
    return Chunker(
        encoder.tokens,
        config,
        encoder_max_tokens=encoder.max_seq_length,
        prompt=encoder.document_prompt,
        tokenizer_id=tokenizer_id(encoder),
    )


def encoder_spec_of(encoder: Encoder, config: WorkspaceConfig | None) -> EncoderSpec:
    """The spec of a loaded encoder: the settings ``config`` gave it (None: an encoder built
    in memory, described by what it does), and what they resolved to."""
    described: dict[str, Any]
    if config is not None:
        settings = config.encoder
        described = {
            "provider": settings.provider,
            "model": settings.model,
            "query_prompt": settings.query_prompt,
            "document_prompt": settings.document_prompt,
            "truncate_dim": settings.truncate_dim,
            "max_seq_length": settings.max_seq_length,
            "api_key_env": settings.api_key_env,
            "options": {
                name: getattr(settings, name)
                for name in EncoderSpec.OPTIONS
                if hasattr(settings, name)
            },
        }
    else:
        described = {
            "model": encoder.name,
            "query_prompt": encoder.query_prompt,
            "document_prompt": encoder.document_prompt,
            "truncate_dim": getattr(encoder, "truncate_dim", None),
        }
    return EncoderSpec(
        **described, name=encoder.name, dim=encoder.dim, fingerprint=encoder.fingerprint["id"]
    )


def chunking_spec_of(chunker: Chunker, config: ChunkingConfig, tokenizer: str) -> ChunkingSpec:
    return ChunkingSpec(
        max_tokens=config.max_tokens,
        overlap_tokens=config.overlap_tokens,
        context_headers=config.context_headers,
        tokenizer=tokenizer,
        fingerprint=chunker.fingerprint,
    )


def tokenizer_id(encoder: Encoder) -> str:
    return encoder.tokens.id or str(encoder.fingerprint["id"])


def _mismatch(
    collection: Collection, encoder: Encoder, *, loaded: bool = False
) -> EncoderMismatchError:
    record = collection.record
    given = "loaded from its spec" if loaded else "given to the workspace"
    return EncoderMismatchError(
        f"collection {collection.name!r} was built with encoder "
        f"{record.spec.encoder.name!r} ({record.model_fp[:12]}); the encoder {given}, "
        f"{encoder.name!r}, has fingerprint {encoder.fingerprint['id'][:12]}. Query and write "
        "it with the collection's own encoder, or migrate the collection."
    )
