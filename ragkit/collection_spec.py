"""What a collection is built from, stored with it: encoder, chunking, dense index, sparse
channel and default fusion.

ragkit.toml only *seeds* the spec of a new collection. Afterwards the collection answers and is
written with its own spec, so an alias swap (one store transaction) changes the collection and
its query encoder together, and a TOML edit never re-chunks or re-encodes a live collection
behind the user's back: :func:`spec_drift` lists the edited fields, which ``ragkit status`` and
``ragkit doctor`` report. Runtime settings that do not change vectors (batch size, device,
precision) still come from ragkit.toml, and so do query-time settings (rerank, and fusion when
the file sets a ``[fusion]`` table).

Secrets never enter a spec: it names the environment variable that holds them.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from ragkit.config import (
    ChunkingConfig,
    EncoderConfig,
    FusionConfig,
    IndexConfig,
    SparseConfig,
    WorkspaceConfig,
)
from ragkit.errors import ConfigError

__all__ = [
    "DOCUMENT_VECTORS_DEFAULT",
    "STATES",
    "ChunkingSpec",
    "CollectionSpec",
    "DenseIndexSpec",
    "Drift",
    "EncoderSpec",
    "FusionSpec",
    "SparseSpec",
    "spec_drift",
]

#: building: a shadow being filled (every write reaches it); live: may be queried, kept in
#: step; retired: an alias moved away from it; still kept in step, so a rollback is instant
#: and loses nothing, until its migration is finalized (which deletes it).
STATES = ("building", "live", "retired")
SPEC_VERSION = 1
#: the version a spec with document vectors is stored under: a ragkit that does not know them
#: refuses the collection instead of writing it without keeping its document vectors
DOCUMENT_VECTORS_SPEC_VERSION = 2

#: ``[index]`` settings of the workspace rather than of a collection: never in a spec, no drift
_WORKSPACE_ONLY = ("qdrant_alias_prefix",)
_INDEX_PARAMS = tuple(
    f.name
    for f in dataclasses.fields(IndexConfig)
    if f.name
    not in (
        "backend",
        "kind",
        "qdrant_api_key",
        "qdrant_api_key_env",
        "document_vectors",
        *_WORKSPACE_ONLY,
    )
)
#: whether a new collection stores document vectors when ragkit.toml does not say
#: (``[index] document_vectors``); a collection made before the option has none
DOCUMENT_VECTORS_DEFAULT = True


@dataclass(frozen=True, kw_only=True)
class EncoderSpec:
    """The dense encoder: the settings it was configured with, and what they resolved to
    (``dim``, ``fingerprint``: the id every cached vector and query is checked against)."""

    provider: str = "sentence-transformers"
    model: str = "default"
    query_prompt: str | None = None
    document_prompt: str | None = None
    truncate_dim: int | None = None
    max_seq_length: int | None = None
    api_key_env: str = ""
    #: a remote provider's settings that decide its vectors or token budgets (``OPTIONS``)
    options: dict[str, Any] = field(default_factory=dict)
    name: str = "default"
    dim: int = 0
    fingerprint: str = ""

    #: backend (torch/onnx, quantization) and remote-encoder settings kept in the spec; where
    #: exports are kept, request pacing (concurrency, rate limits,
    #: timeouts, retries) stays with ragkit.toml, as it changes no vector
    OPTIONS = (
        "backend",
        "quantize",
        "preset",
        "base_url",
        "api_version",
        "dimensions",
        "encoding_format",
        "query_task",
        "document_task",
        "tokenizer",
    )

    #: the fields a TOML edit is compared on
    SEEDED = (
        "provider",
        "model",
        "query_prompt",
        "document_prompt",
        "truncate_dim",
        "max_seq_length",
        "api_key_env",
    )

    def config(self, runtime: EncoderConfig | None = None) -> EncoderConfig:
        """The config that loads this encoder; batch size, device and precision from
        ``runtime`` (ragkit.toml), as they do not change the vectors."""
        values = {name: getattr(self, name) for name in self.SEEDED if _has(EncoderConfig, name)}
        values.update({k: v for k, v in self.options.items() if _has(EncoderConfig, k)})
        return dataclasses.replace(runtime or EncoderConfig(), **values)


@dataclass(frozen=True, kw_only=True)
class ChunkingSpec:
    """Budget and overlap in tokens of the encoder's tokenizer (``tokenizer``: its digest);
    ``fingerprint`` keys the chunk rows of every collection chunked this way."""

    max_tokens: int = 0
    overlap_tokens: int = 32
    context_headers: bool = True
    tokenizer: str = ""
    fingerprint: str = ""

    SEEDED = ("max_tokens", "overlap_tokens", "context_headers")

    def config(self) -> ChunkingConfig:
        return ChunkingConfig(**{name: getattr(self, name) for name in self.SEEDED})


@dataclass(frozen=True, kw_only=True)
class DenseIndexSpec:
    backend: str = "faiss"
    kind: str = "flat"
    params: dict[str, Any] = field(default_factory=dict)
    api_key_env: str = "QDRANT_API_KEY"
    #: one vector per document beside the chunk vectors (:mod:`ragkit.document_vectors`);
    #: a spec stored before the option reads False: that collection has none
    document_vectors: bool = False

    def config(self) -> IndexConfig:
        known = {k: v for k, v in self.params.items() if k in _INDEX_PARAMS}
        return IndexConfig(
            backend=self.backend,
            kind=self.kind,
            qdrant_api_key_env=self.api_key_env,
            document_vectors=self.document_vectors,
            **known,
        )

    @classmethod
    def from_config(cls, config: IndexConfig) -> DenseIndexSpec:
        params = {name: getattr(config, name) for name in _INDEX_PARAMS}
        wanted = config.document_vectors
        return cls(
            backend=config.backend,
            kind=config.kind,
            params=params,
            api_key_env=config.qdrant_api_key_env,
            document_vectors=DOCUMENT_VECTORS_DEFAULT if wanted is None else wanted,
        )


@dataclass(frozen=True, kw_only=True)
class SparseSpec:
    """``bm25``, ``splade`` or a SPLADE model name or path, or ``none``."""

    model: str = "bm25"
    max_seq_length: int | None = None

    def config(self, runtime: SparseConfig | None = None) -> SparseConfig:
        runtime = runtime or SparseConfig()
        return dataclasses.replace(runtime, model=self.model, max_seq_length=self.max_seq_length)


@dataclass(frozen=True, kw_only=True)
class FusionSpec:
    """The fusion a hybrid query uses when ragkit.toml sets no ``[fusion]`` table."""

    method: str = "dbsf"
    k: int = 60
    weights: tuple[float, ...] = (1.0, 1.0)
    normalization: str = "minmax"
    depth: int = 100
    server_side: bool = False

    def config(self) -> FusionConfig:
        values = dataclasses.asdict(self)
        return FusionConfig(**{**values, "weights": list(self.weights)})


@dataclass(frozen=True, kw_only=True)
class CollectionSpec:
    encoder: EncoderSpec = field(default_factory=EncoderSpec)
    chunking: ChunkingSpec = field(default_factory=ChunkingSpec)
    index: DenseIndexSpec = field(default_factory=DenseIndexSpec)
    sparse: SparseSpec = field(default_factory=SparseSpec)
    fusion: FusionSpec = field(default_factory=FusionSpec)
    version: int = SPEC_VERSION

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        if self.index.document_vectors:
            values["version"] = max(self.version, DOCUMENT_VECTORS_SPEC_VERSION)
        return values

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, default=str)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> CollectionSpec:
        if int(raw.get("version", SPEC_VERSION)) > DOCUMENT_VECTORS_SPEC_VERSION:
            raise ConfigError("a collection spec was written by a newer ragkit; upgrade ragkit")
        parts = {
            "encoder": EncoderSpec,
            "chunking": ChunkingSpec,
            "index": DenseIndexSpec,
            "sparse": SparseSpec,
            "fusion": FusionSpec,
        }
        values: dict[str, Any] = {}
        for name, kind in parts.items():
            known = {f.name for f in dataclasses.fields(kind)}
            section = {k: v for k, v in raw.get(name, {}).items() if k in known}
            if name == "fusion" and "weights" in section:
                section["weights"] = tuple(section["weights"])
            values[name] = kind(**section)
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> CollectionSpec:
        return cls.from_dict(json.loads(text or "{}"))

    @classmethod
    def seed(
        cls,
        config: WorkspaceConfig,
        *,
        encoder: EncoderSpec,
        chunking: ChunkingSpec,
    ) -> CollectionSpec:
        """The spec of a new collection: ``encoder`` and ``chunking`` as resolved by the
        encoder that was loaded, the rest from ragkit.toml."""
        fusion = config.fusion
        return cls(
            encoder=encoder,
            chunking=chunking,
            index=DenseIndexSpec.from_config(config.index),
            sparse=SparseSpec(
                model=config.sparse.model, max_seq_length=config.sparse.max_seq_length
            ),
            fusion=FusionSpec(
                method=fusion.method,
                k=fusion.k,
                weights=tuple(fusion.weights),
                normalization=fusion.normalization,
                depth=fusion.depth,
                server_side=fusion.server_side,
            ),
        )

    def fusion_for(self, config: WorkspaceConfig) -> FusionConfig:
        """Query-time fusion: the workspace config's when ragkit.toml sets a ``[fusion]`` table
        (or the config was changed in memory), else the collection's own default."""
        if "fusion" in config.sections_set or config.fusion != FusionConfig():
            return config.fusion
        return self.fusion.config()


@dataclass(frozen=True, slots=True)
class Drift:
    """One setting where ragkit.toml and a collection's spec disagree."""

    field: str
    live: Any
    configured: Any

    def __str__(self) -> str:
        return (
            f"{self.field}: the collection has {self.live!r}, ragkit.toml says {self.configured!r}"
        )


MIGRATION_HINT = (
    "the collection keeps its own settings; revert the edit, or move to the new settings "
    "with `ragkit migrate start` (`ragkit migrate plan` shows what it changes)"
)


def spec_drift(
    spec: CollectionSpec, config: WorkspaceConfig, *, encoder_fp: dict[str, Any] | None = None
) -> list[Drift]:
    """The settings ragkit.toml would change in a collection's vectors or chunks.

    ``encoder_fp``: the fingerprint of an encoder handed to the workspace in memory (it stands
    for ``[encoder]``, which is then not compared field by field)."""
    found: list[Drift] = []
    if encoder_fp is None:
        for name in EncoderSpec.SEEDED:
            if not _has(EncoderConfig, name):
                continue
            live, configured = getattr(spec.encoder, name), getattr(config.encoder, name)
            if live != configured:
                found.append(Drift(f"encoder.{name}", live, configured))
        defaults = EncoderConfig()
        for name in EncoderSpec.OPTIONS:
            if not _has(EncoderConfig, name):
                continue
            live = spec.encoder.options.get(name, getattr(defaults, name))
            configured = getattr(config.encoder, name)
            if live != configured:
                found.append(Drift(f"encoder.{name}", live, configured))
    elif encoder_fp["id"] != spec.encoder.fingerprint and encoder_fp.get("legacy_id") != (
        spec.encoder.fingerprint
    ):
        found.append(Drift("encoder.fingerprint", spec.encoder.fingerprint, encoder_fp["id"]))
    for name in ChunkingSpec.SEEDED:
        live, configured = getattr(spec.chunking, name), getattr(config.chunking, name)
        if live != configured:
            found.append(Drift(f"chunking.{name}", live, configured))
    seeded = DenseIndexSpec.from_config(config.index)
    for name in ("backend", "kind", "api_key_env"):
        if getattr(spec.index, name) != getattr(seeded, name):
            found.append(Drift(f"index.{name}", getattr(spec.index, name), getattr(seeded, name)))
    wanted = config.index.document_vectors  # compared only where ragkit.toml sets it
    if wanted is not None and wanted != spec.index.document_vectors:
        found.append(Drift("index.document_vectors", spec.index.document_vectors, wanted))
    defaults = DenseIndexSpec.from_config(IndexConfig()).params
    for name in _INDEX_PARAMS:
        live = spec.index.params.get(name, defaults[name])
        if live != seeded.params[name]:
            found.append(Drift(f"index.{name}", live, seeded.params[name]))
    for name in ("model", "max_seq_length"):
        live, configured = getattr(spec.sparse, name), getattr(config.sparse, name)
        if name == "model":
            live, configured = _sparse_name(live), _sparse_name(configured)
        if live != configured:
            found.append(Drift(f"sparse.{name}", live, configured))
    return found


def _sparse_name(model: str) -> str:
    name = model.strip()
    return "none" if name.lower() in ("", "none", "off") else name


def _has(kind: type, name: str) -> bool:
    return any(f.name == name for f in dataclasses.fields(kind))
