"""Workspace configuration: ``ragkit.toml``, human-editable, loaded into plain dataclasses.

Only values that differ from the defaults need to be written; unknown keys are refused so a typo
never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from ragkit.config_index import QDRANT_COUNTS, QDRANT_QUANTIZATIONS, IndexConfig
from ragkit.errors import ConfigError
from ragkit.retrieval.grouping import DocumentScoring

__all__ = [
    "QDRANT_COUNTS",
    "QDRANT_QUANTIZATIONS",
    "ChunkingConfig",
    "ComputeConfig",
    "EncoderConfig",
    "FusionConfig",
    "IndexConfig",
    "IngestConfig",
    "QueryConfig",
    "RerankConfig",
    "RunsConfig",
    "SourceConfig",
    "SparseConfig",
    "WorkspaceConfig",
]


@dataclass(kw_only=True)
class EncoderConfig:
    """The dense encoder. ``model = "default"`` is all-MiniLM-L6-v2 shipped as a PyPI package.

    ``provider`` names the encoder registry entry that builds it (``ragkit.encoders.registry``);
    the other keys are read by that provider.
    """

    provider: str = "sentence-transformers"
    model: str = "default"
    query_prompt: str | None = None
    document_prompt: str | None = None
    truncate_dim: int | None = None
    max_seq_length: int | None = None
    batch_size: int = 64
    device: str | None = None
    # auto: bfloat16 where the hardware computes it natively (CUDA with bf16, CPUs with
    # AVX512-BF16 or AMX), float32 elsewhere; or fp32 | bf16 | fp16 (fp16: CUDA only).
    precision: str = "auto"
    # torch | onnx (ONNX Runtime, exported once into the workspace's models/ folder; needs
    # pip install 'ragkit[onnx]'); quantize: none | int8 (onnx only). Both are part of the
    # fingerprint, so a collection refuses queries from another backend's vectors.
    backend: str = "torch"
    quantize: str = "none"
    # where ONNX exports are kept; empty: <workspace>/models, or ~/.cache/ragkit/models
    export_dir: str = ""
    # One word for a known model's provider, prompts, dimension and input limit
    # (``ragkit encoders`` lists them); keys set here win over the preset's.
    preset: str = ""
    # Remote providers (openai, gemini, tei, ollama; see ragkit/encoders/http/). The key is
    # read from the environment variable named here ("" = the provider's default), so no
    # secret is ever written to ragkit.toml or the store.
    base_url: str = ""
    api_key_env: str = ""
    api_version: str = ""  # Azure OpenAI: sends ``api-version`` and an ``api-key`` header
    dimensions: int | None = None  # asked of the server (Matryoshka), checked on every reply
    encoding_format: str = "float"  # openai: float | base64
    query_task: str = ""  # gemini task_type for queries ("" = RETRIEVAL_QUERY)
    document_task: str = ""  # gemini task_type for documents ("" = RETRIEVAL_DOCUMENT)
    tokenizer: str = ""  # a local tokenizer for chunk budgets ("" = the byte estimate)
    batch_tokens: int = 0  # estimated tokens per request (0 = the provider's default)
    concurrency: int = 4  # requests in flight at once
    requests_per_minute: int = 0  # 0 = no limit
    tokens_per_minute: int = 0  # 0 = no limit
    timeout: float = 60.0  # seconds per request
    max_retries: int = 6  # on 429, 5xx, timeouts and dropped connections
    retry_base_delay: float = 0.5  # seconds; doubles per attempt, with jitter
    retry_max_delay: float = 30.0


@dataclass(kw_only=True)
class ChunkingConfig:
    """Token budget per chunk, measured with the encoder's own tokenizer.

    ``max_tokens = 0`` means "the encoder's max_seq_length", so the whole chunk is always seen.
    """

    max_tokens: int = 0
    overlap_tokens: int = 32
    context_headers: bool = True


@dataclass(kw_only=True)
class SparseConfig:
    """The sparse channel: ``"bm25"``, ``"splade"`` (the SPLADE shipped with ragkit[sparse]),
    any SPLADE model name or path, or ``"none"``."""

    model: str = "bm25"
    batch_size: int = 32
    max_seq_length: int | None = None
    device: str | None = None


@dataclass(kw_only=True)
class FusionConfig:
    """How hybrid mode merges the dense and sparse rankings (and, for document hits, the
    document vectors' ranking). DBSF by default: it scored above RRF on every set measured
    (Debian, and the Git, Python and PostgreSQL manuals; BENCHMARKS.md, "Fusion default")."""

    method: str = "dbsf"
    k: int = 60
    weights: list[float] = field(default_factory=lambda: [1.0, 1.0])
    normalization: str = "minmax"
    depth: int = 100
    #: let Qdrant fuse (prefetch + RRF or DBSF, one request) where the collection allows it:
    #: its index is Qdrant with ``qdrant_sparse``, the method is rrf or dbsf and the weights
    #: are equal; any other collection is fused by ragkit, with the same result
    server_side: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.server_side, bool):
            raise ConfigError("[fusion] server_side must be true or false")


@dataclass(kw_only=True)
class QueryConfig:
    """How hits grouped into documents score (``kit.query(..., documents=True)``,
    ``ragkit query --documents``): ``"max"`` by a document's best chunk;
    ``"decayed"`` by its best chunk plus ``decay`` times its next best, ``decay²`` times the one
    after, over its ``decay_chunks`` best chunks. In hybrid mode each channel's chunks are
    grouped first and the document rankings fused. ``"max"`` is the default because decayed
    scoring measured worse on long documentation pages (BENCHMARKS.md, "Long documents")."""

    documents: str = "max"
    decay: float = 0.5
    decay_chunks: int = 3

    def __post_init__(self) -> None:
        self.scoring()  # refuse a bad value when the file is read, not at the first query

    def scoring(self) -> DocumentScoring:
        return DocumentScoring(method=self.documents, decay=self.decay, chunks=self.decay_chunks)


@dataclass(kw_only=True)
class RerankConfig:
    """An optional cross-encoder over the top ``top_n`` hits (any CrossEncoder name or path)."""

    model: str = ""
    top_n: int = 50
    batch_size: int = 32


@dataclass(kw_only=True)
class IngestConfig:
    """Per-file limits, because sources are untrusted: a file that would take minutes or GBs
    to parse, or make an enormous number of chunks, fails alone and the batch goes on.

    ``parse_timeout`` is in seconds of wall time, ``parse_memory_mib`` the address space a
    parse may add to its worker process; ``0`` switches a limit off.
    """

    parse_timeout: float = 30.0
    parse_memory_mib: int = 2048
    #: one document (a whole txt, one jsonl record) past this fails its file: what stops a huge
    #: unbroken text from becoming hours of embedding
    max_chunks_per_document: int = 10_000
    #: a bound on a whole file too (0: none): record files legitimately hold many documents
    max_chunks_per_file: int = 0
    #: chunks read, parsed and chunked ahead of the encoder by the producer thread (the
    #: memory the pipeline may hold); 0 parses on the main thread, one file after another
    pipeline_chunks: int = 4096

    def __post_init__(self) -> None:
        names = (
            "parse_timeout",
            "parse_memory_mib",
            "max_chunks_per_document",
            "max_chunks_per_file",
            "pipeline_chunks",
        )
        for name in names:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigError(f"[ingest] {name} must be a number >= 0 (0: no limit)")


@dataclass(kw_only=True)
class RunsConfig:
    """How much run history the ``runs`` table keeps: a scheduled reindex adds a row or two
    every run, so without a bound the table only grows. The job runner prunes finished rows at
    the start of each job: all but the newest ``keep``, and those older than ``keep_days``
    (``0`` switches either bound off). A row still ``running`` is never pruned."""

    keep: int = 1000
    keep_days: float = 0

    def __post_init__(self) -> None:
        for name in ("keep", "keep_days"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigError(f"[runs] {name} must be a number >= 0 (0: no limit)")


@dataclass(kw_only=True)
class ComputeConfig:
    """Where chunk texts missing from the embedding cache are encoded (see ``ragkit.compute``).

    ``engine = "in-process"`` encodes in the writer's own process; ``"ray"`` fans the texts out
    to a pool of Ray actors at ``address`` (``"auto"``: the cluster this machine belongs to,
    ``"ray://host:port"``: a remote head through Ray Client, ``"local"``: start a throwaway
    cluster on this machine). Vectors still come back to the one writer, which caches and
    commits them, so the store keeps its single-writer guarantees.

    ``actors = 0``: one per GPU when the cluster has GPUs, else one per two CPU cores.
    ``cpus_per_actor`` is fractional on purpose: Ray Data's own read tasks need a share of the
    CPUs too, and actors holding every whole CPU of a small cluster would starve them.
    ``gpus_per_actor < 0``: one GPU each where the cluster has GPUs, none elsewhere.
    ``threads_per_actor = 0``: this machine's cores divided among the actors.
    ``batch_size = 0``: the in-process engine's part size (encoder batch size × 8, ≥ 256).
    ``max_restarts``: how often a dead actor is restarted and its batch retried before the
    job fails (a bound, so a batch that kills every worker cannot loop forever).
    """

    engine: str = "in-process"
    address: str = "auto"
    actors: int = 0
    cpus_per_actor: float = 0.5
    gpus_per_actor: float = -1.0
    threads_per_actor: int = 0
    batch_size: int = 0
    max_restarts: int = 3

    def __post_init__(self) -> None:
        for name in ("actors", "cpus_per_actor", "threads_per_actor", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigError(f"[compute] {name} must be a number >= 0")
        if isinstance(self.max_restarts, bool) or not isinstance(self.max_restarts, int):
            raise ConfigError("[compute] max_restarts must be an integer")


@dataclass(kw_only=True)
class SourceConfig:
    """A directory (or single file) that ingest and reindex read."""

    path: str
    name: str = ""
    include: list[str] = field(default_factory=lambda: ["**/*"])
    exclude: list[str] = field(default_factory=list)
    follow_symlinks: bool = False


_SECTIONS = {
    "encoder": EncoderConfig,
    "chunking": ChunkingConfig,
    "index": IndexConfig,
    "sparse": SparseConfig,
    "fusion": FusionConfig,
    "query": QueryConfig,
    "rerank": RerankConfig,
    "ingest": IngestConfig,
    "runs": RunsConfig,
    "compute": ComputeConfig,
}


@dataclass(kw_only=True)
class WorkspaceConfig:
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    chunking: ChunkingConfig = field(default_factory=ChunkingConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    sparse: SparseConfig = field(default_factory=SparseConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    query: QueryConfig = field(default_factory=QueryConfig)
    rerank: RerankConfig = field(default_factory=RerankConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    runs: RunsConfig = field(default_factory=RunsConfig)
    compute: ComputeConfig = field(default_factory=ComputeConfig)
    sources: list[SourceConfig] = field(default_factory=list)
    #: the sections the file sets (a query takes ``[fusion]`` from the file only when set)
    sections_set: frozenset[str] = field(default_factory=frozenset, compare=False, repr=False)

    @classmethod
    def load(cls, path: Path) -> WorkspaceConfig:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls()
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc}); fix or delete the file") from exc
        return cls.from_dict(raw, origin=str(path))

    @classmethod
    def from_dict(cls, raw: dict[str, Any], *, origin: str = "config") -> WorkspaceConfig:
        unknown = set(raw) - {*_SECTIONS, "sources"}
        if unknown:
            raise ConfigError(f"{origin}: unknown section(s) {sorted(unknown)}")
        sections = {
            name: _build(kind, raw.get(name, {}), origin, name) for name, kind in _SECTIONS.items()
        }
        sources = [_build(SourceConfig, s, origin, "sources") for s in raw.get("sources", [])]
        return cls(**sections, sources=sources, sections_set=frozenset(raw))

    def set_fusion(self, fusion: FusionConfig) -> None:
        """Use ``fusion`` as if ragkit.toml set it: it wins over a collection's own fusion
        even when it is the default, and :meth:`save` keeps the ``[fusion]`` table."""
        self.fusion = fusion
        self.sections_set = self.sections_set | {"fusion"}

    def to_dict(self) -> dict[str, Any]:
        """Only non-default values, so the file stays short and readable; a section the file
        set stays (empty when all its values are the defaults), since a set ``[fusion]`` wins
        over a collection's own."""
        out: dict[str, Any] = {}
        for name, kind in _SECTIONS.items():
            values = _non_default(getattr(self, name), kind())
            if values or name in self.sections_set:
                out[name] = values
        if self.sources:
            out["sources"] = [
                {k: v for k, v in dataclasses.asdict(s).items() if v not in (None, "")}
                for s in self.sources
            ]
        return out

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".toml.tmp")
        tmp.write_text(tomli_w.dumps(self.to_dict()), encoding="utf-8")
        tmp.replace(path)


def _build(kind: type, values: Any, origin: str, section: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{origin}: [{section}] must be a table")
    names = {f.name for f in dataclasses.fields(kind)}
    for key, value in values.items():
        if _SECRET_KEY.search(key) and not key.endswith("_env") and value:
            raise ConfigError(f"{origin}: {_secret_message(section, key, f'{key}_env')}")
    unknown = set(values) - names
    if unknown:
        raise ConfigError(
            f"{origin}: unknown key(s) {sorted(unknown)} in [{section}]; known: {sorted(names)}"
        )
    try:
        return kind(**values)
    except ConfigError as exc:
        raise ConfigError(f"{origin}: {exc}") from exc
    except TypeError as exc:
        raise ConfigError(f"{origin}: [{section}]: {exc}") from exc


_SECRET_KEY = re.compile(r"(api_key|password|secret|token)(_env)?$")


def _secret_message(section: str, key: str, env_key: str) -> str:
    return (
        f"[{section}] {key} holds a secret, and ragkit keeps secrets out of ragkit.toml and "
        f"the store: put it in an environment variable and name that variable with "
        f"[{section}] {env_key} instead"
    )


def _non_default(value: Any, default: Any) -> dict[str, Any]:
    return {
        f.name: getattr(value, f.name)
        for f in dataclasses.fields(value)
        if getattr(value, f.name) != getattr(default, f.name) and getattr(value, f.name) is not None
    }
