"""The workspace: one folder holding config, store and collections for one corpus.

This is the public Python API: ``kit = ragkit.open("./.ragkit"); kit.ingest("docs/");
kit.query("how do I ...", k=5)``. Queries go through the ``default`` alias, so a migration can
build a new collection and swap the alias without readers noticing.
"""

from __future__ import annotations

import json
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
from ragkit.store import CollectionRecord, Store

if TYPE_CHECKING:
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
        self._readers: dict[str, tuple[int, DenseIndex]] = {}

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

    # -- queries ----------------------------------------------------------------------------
    def query(
        self,
        text: str,
        *,
        k: int = 10,
        where: str | list[str] | dict[str, Any] | None = None,
        mode: str | None = None,
        alias: str = DEFAULT_ALIAS,
    ) -> list[Hit]:
        return self.query_many([text], k=k, where=where, mode=mode, alias=alias)[0]

    def query_many(
        self,
        texts: list[str],
        *,
        k: int = 10,
        where: str | list[str] | dict[str, Any] | None = None,
        mode: str | None = None,
        alias: str = DEFAULT_ALIAS,
    ) -> list[list[Hit]]:
        modes = self.available_modes()
        if mode is not None and mode not in modes:
            raise ConfigError(f"query mode {mode!r} is not available here; use one of {modes}")
        collection = self._collection_for_query(alias)
        index = self._reader(collection)
        allowed = None
        filters = parse_filters(where)
        if filters:
            allowed = self.store.chunk_ids_where(*filters_sql(filters))
            if len(allowed) == 0:
                return [[] for _ in texts]
        vectors = self.encoder.encode_queries(texts)
        scores, ids = index.search(vectors, k, allowed_ids=allowed)
        rows = self.store.chunk_rows([int(i) for i in np.unique(ids) if i >= 0])
        return [
            _hits(row_scores, row_ids, rows)
            for row_scores, row_ids in zip(scores, ids, strict=True)
        ]

    def available_modes(self) -> list[str]:
        return ["dense"]

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

    def _reader(self, collection: Collection) -> DenseIndex:
        cached = self._readers.get(collection.name)
        if cached and cached[0] == collection.record.generation:
            return cached[1]
        index = collection.load_dense()
        self._readers[collection.name] = (collection.record.generation, index)
        return index

    # -- status -----------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        collections = []
        for record in self.store.collections():
            collection = Collection(self.store, self.root, record)
            path = collection.dense_path(record.generation)
            collections.append(
                {
                    "name": record.name,
                    "encoder": record.encoder.get("name"),
                    "fingerprint": record.model_fp,
                    "dim": record.dim,
                    "backend": record.backend,
                    "index": record.index.get("kind"),
                    "state": record.state,
                    "generation": record.generation,
                    "index_bytes": path.stat().st_size if path.exists() else 0,
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


def _hits(scores: np.ndarray, ids: np.ndarray, rows: dict[int, Any]) -> list[Hit]:
    hits = []
    for score, chunk in zip(scores, ids, strict=True):
        row = rows.get(int(chunk))
        if row is None:  # -1 padding, or a chunk deleted since the index generation was read
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
