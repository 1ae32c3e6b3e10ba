"""The workspace: one folder holding config, store and collections for one corpus.

This is the public Python API: ``kit = ragkit.open(".ragkit", create=True); kit.ingest("docs/");
kit.query("how do I ...", k=5)``. Queries go through the ``default`` alias, so a migration can
build a new collection and swap the alias without readers noticing.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragkit.chunking import Chunker
from ragkit.collection import Collection
from ragkit.compute import make_engine
from ragkit.config import WorkspaceConfig
from ragkit.documents import Hit
from ragkit.encoders.fingerprint import is_legacy_of
from ragkit.encoders.protocol import Encoder
from ragkit.encoders.registry import load_encoder
from ragkit.errors import EncoderMismatchError, StoreDamagedError, WorkspaceError
from ragkit.lock import WorkspaceLock
from ragkit.retrieval.limits import check_k, check_query_text
from ragkit.retrieval.search import Searcher
from ragkit.sparse_channel import SparseChannel, make_sparse_channel
from ragkit.store import CollectionRecord, Store

if TYPE_CHECKING:
    from ragkit.doctor import DoctorReport
    from ragkit.pipelines.ingest import IngestReport

__all__ = ["DEFAULT_ALIAS", "Workspace", "open_workspace"]

DEFAULT_ALIAS = "default"
CONFIG_NAME = "ragkit.toml"


def open_workspace(
    path: str | Path = ".ragkit",
    *,
    create: bool = False,
    encoder: Encoder | None = None,
) -> Workspace:
    """Open a workspace folder; ``create=True`` makes one there when there is none (a typo'd
    path must not leave an empty workspace behind). ``encoder`` overrides the configured one."""
    root = Path(path)
    _refuse_a_lost_store(root)
    if not (root / "store.sqlite").exists():
        if not create:
            raise WorkspaceError(
                f"{root}: no ragkit workspace here; create one with `ragkit ingest PATH "
                f"--workspace {root}` (or ragkit.open(path, create=True) in Python), or point "
                "--workspace at an existing one"
            )
        root.mkdir(parents=True, exist_ok=True)
    return Workspace(root, encoder=encoder)


class Workspace:
    def __init__(self, root: Path, *, encoder: Encoder | None = None) -> None:
        self.root = root
        self.config_path = root / CONFIG_NAME
        _refuse_a_lost_store(root)
        self.config = WorkspaceConfig.load(self.config_path)
        if not self.config_path.exists():
            self.config.save(self.config_path)
        self.store = Store(root / "store.sqlite")
        # Where the cache's missing vectors are encoded ([compute]); connects to nothing yet.
        self.store.encode_engine = make_engine(self.config.compute, self.config.encoder)
        self.lock = WorkspaceLock(root / "write.lock")
        self._encoder = encoder
        self._chunker: Chunker | None = None
        self._sparse_channel: SparseChannel | bool | None = False
        self.searcher = Searcher(self)

    # -- parts, built on first use ----------------------------------------------------------
    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            config = self.config.encoder
            if not config.export_dir:  # ONNX exports live beside the collections they built
                config = dataclasses.replace(config, export_dir=str(self.root / "models"))
            self._encoder = load_encoder(config)
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
            record = existing.record
            if is_legacy_of(record.model_fp, record.encoder, fingerprint):
                # Recorded by 0.1.0, whose fingerprint left the tokenizer out: re-key it and
                # its cached vectors once, keeping the old id in the record.
                described = {**fingerprint, "name": self.encoder.name}
                self.store.rekey_encoder(
                    record.name, record.model_fp, {**described, "upgraded_from": record.model_fp}
                )
                existing.refresh()
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

    # -- jobs: each runs through the job runner (pipelines/_runner.py), never takes the lock --
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

    # -- queries (the work is done by ragkit.retrieval.search.Searcher) ----------------------
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
        check_query_text(text)
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
        check_k(k)
        return self.searcher.query_many(
            texts,
            k=k,
            where=where,
            mode=mode,
            rerank=rerank,
            alias=alias,
            query_vectors=query_vectors,
        )

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
        return self.searcher.channel_runs(
            texts,
            depth=depth,
            where=where,
            channels=channels,
            alias=alias,
            query_vectors=query_vectors,
        )

    def available_modes(self, alias: str = DEFAULT_ALIAS) -> list[str]:
        return self.searcher.available_modes(alias)

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


def _refuse_a_lost_store(root: Path) -> None:
    """A missing or empty store beside committed index files is a lost record of truth, not a
    new workspace: creating an empty store there would hide the loss (and the next ingest would
    remove those files as stray)."""
    store = root / "store.sqlite"
    wal = root / "store.sqlite-wal"
    empty = not store.exists() or (store.stat().st_size == 0 and _size_or_zero(wal) <= 32)
    if not empty:
        return
    generations = sorted((root / "collections").glob("*/*.g[0-9]*.*"))
    if not generations:
        return
    state = "empty (0 bytes)" if store.exists() else "missing"
    raise StoreDamagedError(
        f"{store} is {state}, but {root / 'collections'} holds {len(generations)} index files "
        "of committed generations: the store was lost or truncated. Restore store.sqlite from "
        "a backup; without one, move the workspace aside and ingest the sources again."
    )


def _size_or_zero(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _slug(name: str) -> str:
    tail = Path(name).name if name != "default" else "all-MiniLM-L6-v2"
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in tail)[:40] or "encoder"


def _tokenizer_id(encoder: Encoder) -> str:
    return encoder.tokens.id or encoder.fingerprint["id"]
