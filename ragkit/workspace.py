"""The workspace: one folder holding config, store and collections for one corpus.

This is the public Python API: ``kit = ragkit.open("./.ragkit"); kit.ingest("docs/");
kit.query("how do I ...", k=5)``. Queries go through the ``default`` alias, so a migration can
build a new collection and swap the alias without readers noticing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragkit.chunking import Chunker
from ragkit.collection import Collection
from ragkit.config import WorkspaceConfig
from ragkit.documents import Hit
from ragkit.encoders.dense import DenseEncoder
from ragkit.encoders.fingerprint import hash_text
from ragkit.errors import ConfigError, EncoderMismatchError, WorkspaceError
from ragkit.lock import WorkspaceLock
from ragkit.retrieval.filters import filters_sql, parse_filters
from ragkit.retrieval.fusion import fuse
from ragkit.sparse_channel import SparseChannel, make_sparse_channel
from ragkit.store import CollectionRecord, Store

if TYPE_CHECKING:
    from ragkit.doctor import DoctorReport
    from ragkit.indexes import DenseIndex
    from ragkit.pipelines.ingest import IngestReport

__all__ = ["DEFAULT_ALIAS", "Workspace", "open_workspace"]

DEFAULT_ALIAS = "default"
CONFIG_NAME = "ragkit.toml"


def open_workspace(
    path: str | Path = ".ragkit",
    *,
    create: bool = True,
    encoder: DenseEncoder | None = None,
) -> Workspace:
    """Open (or create) a workspace folder. ``encoder`` overrides the configured one."""
    root = Path(path)
    if not (root / "store.sqlite").exists():
        if not create:
            raise WorkspaceError(
                f"{root}: no ragkit workspace here; run `ragkit ingest PATH --workspace {root}` "
                "first, or point --workspace at an existing one"
            )
        root.mkdir(parents=True, exist_ok=True)
    return Workspace(root, encoder=encoder)


class Workspace:
    def __init__(self, root: Path, *, encoder: DenseEncoder | None = None) -> None:
        self.root = root
        self.config_path = root / CONFIG_NAME
        self.config = WorkspaceConfig.load(self.config_path)
        if not self.config_path.exists():
            self.config.save(self.config_path)
        self.store = Store(root / "store.sqlite")
        self.lock = WorkspaceLock(root / "write.lock")
        self._encoder = encoder
        self._chunker: Chunker | None = None
        self._sparse_channel: SparseChannel | bool | None = False
        self._readers: dict[str, tuple[int, DenseIndex, Any]] = {}
        self._rerankers: dict[str, Any] = {}

    # -- parts, built on first use ----------------------------------------------------------
    @property
    def encoder(self) -> DenseEncoder:
        if self._encoder is None:
            self._encoder = DenseEncoder.load(self.config.encoder)
        return self._encoder

    @property
    def chunker(self) -> Chunker:
        if self._chunker is None:
            encoder = self.encoder
            self._chunker = Chunker(
                encoder.tokens,
                self.config.chunking,
                encoder_max_tokens=encoder.max_seq_length,
                prompt=encoder.document_prompt,
                tokenizer_id=_tokenizer_id(encoder),
            )
        return self._chunker

    @property
    def sparse_channel(self) -> SparseChannel | None:
        """The configured sparse channel (BM25 or SPLADE), or None when switched off."""
        if self._sparse_channel is False:
            self._sparse_channel = make_sparse_channel(self.config.sparse)
        return self._sparse_channel  # type: ignore[return-value]

    def collection(self, alias: str = DEFAULT_ALIAS) -> Collection | None:
        name = self.store.resolve_alias(alias)
        record = self.store.collection(name) if name else None
        return Collection(self.store, self.root, record) if record else None

    def ensure_collection(self) -> Collection:
        """The collection that ``default`` points at, created for the configured encoder."""
        fingerprint = self.encoder.fingerprint
        existing = self.collection()
        if existing is not None:
            if existing.record.model_fp != fingerprint["id"]:
                raise EncoderMismatchError(
                    f"collection {existing.name!r} was built with encoder "
                    f"{existing.record.encoder.get('name')!r} ({existing.record.model_fp[:12]}), "
                    f"but the workspace now uses {self.encoder.name!r} ({fingerprint['id'][:12]}). "
                    "Put the old encoder back in ragkit.toml, or start a new workspace."
                )
            return existing
        name = f"{_slug(self.encoder.name)}-{fingerprint['id'][:8]}"
        record = CollectionRecord(
            name=name,
            model_fp=fingerprint["id"],
            chunking_fp=self.chunker.fingerprint,
            backend=self.config.index.backend,
            dim=self.encoder.dim,
            state="ready",
            generation=0,
            encoder={**fingerprint, "name": self.encoder.name},
            index=json.loads(json.dumps(self.config.index.__dict__)),
        )
        with self.store.transaction():
            self.store.put_collection(record)
            self.store.set_alias(DEFAULT_ALIAS, name)
        return Collection(self.store, self.root, record)

    # -- jobs -------------------------------------------------------------------------------
    def ingest(self, *paths: str | Path, **options: Any) -> IngestReport:
        """Ingest files or folders (or the configured sources when none are given)."""
        from ragkit.pipelines.ingest import ingest  # the facade reaches up to the job layer

        return ingest(self, [str(p) for p in paths], **options)

    def doctor(
        self,
        *,
        repair: bool = False,
        quick: bool = False,
        wait: float = 0.0,
        progress: Callable[[str, int], None] | None = None,
    ) -> DoctorReport:
        """Check that each collection's index files agree with the store (read-only); with
        ``repair``, rebuild what does not from the store under the writer lock, then check
        again. ``quick`` runs SQLite's quick_check instead of the full integrity_check."""
        if not repair:
            from ragkit.doctor import check_workspace

            return check_workspace(self, quick=quick)
        from ragkit.pipelines.repair import repair as run_repair  # a writer job, like ingest

        return run_repair(self, quick=quick, wait=wait, progress=progress)

    # -- queries ----------------------------------------------------------------------------
    def query(
        self,
        text: str,
        *,
        k: int = 10,
        where: str | list[str] | dict[str, Any] | None = None,
        mode: str | None = None,
        rerank: bool | str | None = None,
        alias: str = DEFAULT_ALIAS,
    ) -> list[Hit]:
        return self.query_many([text], k=k, where=where, mode=mode, rerank=rerank, alias=alias)[0]

    def query_many(
        self,
        texts: list[str],
        *,
        k: int = 10,
        where: str | list[str] | dict[str, Any] | None = None,
        mode: str | None = None,
        rerank: bool | str | None = None,
        alias: str = DEFAULT_ALIAS,
        query_vectors: np.ndarray | None = None,
    ) -> list[list[Hit]]:
        """Search with ``mode`` dense, sparse or hybrid (default: hybrid when a sparse channel
        exists). ``"<mode>+rerank"`` or ``rerank=True``/a model name adds the cross-encoder.
        ``query_vectors``: the texts already encoded by this workspace's encoder."""
        collection = self._collection_for_query(alias)
        base_mode, use_rerank = self._resolve_mode(collection, mode, rerank)
        fusion = self.config.fusion
        depth = k
        if base_mode == "hybrid":
            depth = max(k, fusion.depth)
        if use_rerank:
            depth = max(depth, self.config.rerank.top_n)
        channels = ("dense", "sparse") if base_mode == "hybrid" else (base_mode,)
        runs = self.channel_runs(
            texts,
            depth=depth,
            where=where,
            channels=channels,
            alias=alias,
            query_vectors=query_vectors,
        )
        if base_mode == "hybrid":
            ranked = [
                fuse(
                    [run[i] for run in runs],
                    method=fusion.method,
                    weights=fusion.weights,
                    k=fusion.k,
                    normalization=fusion.normalization,
                )
                for i in range(len(texts))
            ]
        else:
            ranked = [sorted(run.items(), key=lambda x: (-x[1], x[0])) for run in runs[0]]
        rows = self.store.chunk_rows(sorted({i for r in ranked for i, _ in r}))
        if use_rerank:
            ranked = self._rerank(texts, ranked, rows, rerank)
        return [_hits(r[:k], rows) for r in ranked]

    def channel_runs(
        self,
        texts: list[str],
        *,
        depth: int,
        where: str | list[str] | dict[str, Any] | None = None,
        channels: tuple[str, ...] = ("dense", "sparse"),
        alias: str = DEFAULT_ALIAS,
        query_vectors: np.ndarray | None = None,
    ) -> list[list[dict[int, float]]]:
        """Each channel's raw ``{chunk id: score}`` per query, before fusion (for tuning)."""
        collection = self._collection_for_query(alias)
        dense, sparse = self._reader(collection)
        allowed = None
        filters = parse_filters(where)
        if filters:
            allowed = self.store.chunk_ids_where(*filters_sql(filters))
            if len(allowed) == 0:
                return [[{} for _ in texts] for _ in channels]
        runs: list[list[dict[int, float]]] = []
        for channel_name in channels:
            if channel_name == "dense":
                vectors = query_vectors
                if vectors is None:
                    vectors = self.encoder.encode_queries(texts)
                elif len(vectors) != len(texts):
                    raise ConfigError(f"{len(vectors)} query vectors for {len(texts)} queries")
                runs.append(_as_runs(*dense.search(vectors, depth, allowed_ids=allowed)))
            elif sparse is not None and self.sparse_channel is not None:
                found = self.sparse_channel.search(sparse, texts, depth, allowed)
                runs.append(_as_runs(*found))
            else:
                raise ConfigError(f"collection {collection.name!r} has no sparse index")
        return runs

    def available_modes(self, alias: str = DEFAULT_ALIAS) -> list[str]:
        collection = self.collection(alias)
        modes = ["dense"]
        if collection is not None and collection.has_sparse(self.sparse_channel):
            modes += ["sparse", "hybrid"]
        if self.config.rerank.model:
            modes.append(f"{modes[-1]}+rerank")
        return modes

    def _resolve_mode(
        self, collection: Collection, mode: str | None, rerank: bool | str | None
    ) -> tuple[str, bool]:
        has_sparse = collection.has_sparse(self.sparse_channel)
        requested = mode or ("hybrid" if has_sparse else "dense")
        base, _, suffix = requested.partition("+")
        if base not in ("dense", "sparse", "hybrid") or suffix not in ("", "rerank"):
            raise ConfigError(
                f"query mode {requested!r} is unknown; use dense, sparse or hybrid "
                "(optionally with +rerank)"
            )
        if base != "dense" and not has_sparse:
            raise ConfigError(
                f"query mode {base!r} needs a sparse index, and collection {collection.name!r} "
                f"has none for the configured channel ({self.config.sparse.model!r}); set "
                "[sparse] model in ragkit.toml and run `ragkit ingest` to build it"
            )
        use_rerank = (
            bool(suffix) or bool(rerank) or (rerank is None and bool(self.config.rerank.model))
        )
        if use_rerank and not (isinstance(rerank, str) or self.config.rerank.model):
            raise ConfigError("rerank needs a cross-encoder: set [rerank] model or pass a model")
        return base, use_rerank

    def _rerank(
        self,
        texts: list[str],
        ranked: list[list[tuple[int, float]]],
        rows: dict[int, Any],
        model: bool | str | None,
    ) -> list[list[tuple[int, float]]]:
        reranker = self._reranker(model if isinstance(model, str) else self.config.rerank.model)
        top_n = self.config.rerank.top_n
        out = []
        for query, candidates in zip(texts, ranked, strict=True):
            head = [(i, _embed_text(rows[i])) for i, _ in candidates[:top_n] if i in rows]
            out.append(reranker.rerank(query, head) + candidates[top_n:])
        return out

    def _reranker(self, name: str) -> Any:
        cached = self._rerankers.get(name)
        if cached is None:
            from ragkit.retrieval.rerank import CrossEncoderReranker

            cached = CrossEncoderReranker.load(name, batch_size=self.config.rerank.batch_size)
            self._rerankers[name] = cached
        return cached

    def _collection_for_query(self, alias: str) -> Collection:
        collection = self.collection(alias)
        if collection is None:
            raise WorkspaceError(
                f"{self.root}: nothing is indexed yet (no collection behind alias {alias!r}); "
                "run `ragkit ingest PATH` first"
            )
        fingerprint = self.encoder.fingerprint["id"]
        if collection.record.model_fp != fingerprint:
            raise EncoderMismatchError(
                f"collection {collection.name!r} was built with encoder "
                f"{collection.record.encoder.get('name')!r} ({collection.record.model_fp[:12]}); "
                f"the query encoder {self.encoder.name!r} has fingerprint {fingerprint[:12]}. "
                "Query with the collection's encoder, or migrate the collection."
            )
        return collection

    def _reader(self, collection: Collection) -> tuple[DenseIndex, Any]:
        """Indexes of the committed generation, reloaded when a writer committed a new one."""
        collection.refresh()
        cached = self._readers.get(collection.name)
        if cached and cached[0] == collection.record.generation:
            return cached[1], cached[2]
        dense = collection.load_dense()
        channel = self.sparse_channel
        sparse = collection.load_sparse(channel) if collection.has_sparse(channel) else None
        self._readers[collection.name] = (collection.record.generation, dense, sparse)
        return dense, sparse

    # -- status -----------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        collections = []
        for record in self.store.collections():
            collection = Collection(self.store, self.root, record)
            files = list(collection.dir.glob(f"*.g{record.generation:06d}.*"))
            collections.append(
                {
                    "name": record.name,
                    "encoder": record.encoder.get("name"),
                    "fingerprint": record.model_fp,
                    "dim": record.dim,
                    "backend": record.backend,
                    "index": record.index.get("kind"),
                    "sparse": record.sparse.get("kind", ""),
                    "state": record.state,
                    "generation": record.generation,
                    "index_bytes": sum(_size(path) for path in files),
                    "aliases": [
                        a for a in (DEFAULT_ALIAS,) if self.store.resolve_alias(a) == record.name
                    ],
                }
            )
        return {
            "workspace": str(self.root),
            "counts": self.store.counts(),
            "sources": self.store.sources(),
            "collections": collections,
            "runs": self.store.runs(limit=1),
        }

    def close(self) -> None:
        self.lock.release()
        self.store.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _as_runs(scores: np.ndarray, ids: np.ndarray) -> list[dict[int, float]]:
    return [
        {int(i): float(s) for s, i in zip(row_scores, row_ids, strict=True) if i >= 0}
        for row_scores, row_ids in zip(scores, ids, strict=True)
    ]


def _embed_text(row: Any) -> str:
    return f"{row['context']}\n\n{row['text']}" if row["context"] else row["text"]


def _hits(ranked: list[tuple[int, float]], rows: dict[int, Any]) -> list[Hit]:
    hits = []
    for chunk, score in ranked:
        row = rows.get(int(chunk))
        if row is None:  # a chunk deleted since the index generation was read
            continue
        metadata = {
            **json.loads(row["metadata_json"]),
            "source": row["source"],
            "format": row["format"],
        }
        hits.append(
            Hit(
                chunk_id=row["chunk_id"],
                score=float(score),
                text=row["text"],
                doc_id=row["doc_id"],
                uri=row["uri"],
                title=row["title"],
                headings=tuple(json.loads(row["headings_json"])),
                metadata=metadata,
                rank=len(hits) + 1,
            )
        )
    return hits


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _slug(name: str) -> str:
    tail = Path(name).name if name != "default" else "all-MiniLM-L6-v2"
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in tail)[:40] or "encoder"


def _tokenizer_id(encoder: DenseEncoder) -> str:
    tokenizer = encoder.model.tokenizer
    backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
    try:
        return hash_text(backend.to_str())
    except AttributeError:
        return encoder.fingerprint["id"]
