"""The workspace: one folder holding config, store and collections for one corpus.

This is the public Python API: ``kit = ragkit.open(".ragkit", create=True); kit.ingest("docs/");
kit.query("how do I ...", k=5)``. Queries go through the ``default`` alias (or name another
alias or collection), resolved once per query to a collection that is answered with its own
spec, encoder included, so a migration can build a new collection and swap the alias without
readers noticing.
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
from ragkit.collection_parts import (
    CollectionParts,
    chunker_for,
    chunking_spec_of,
    encoder_spec_of,
    tokenizer_id,
)
from ragkit.collection_spec import CollectionSpec
from ragkit.compute import make_engine
from ragkit.config import WorkspaceConfig
from ragkit.documents import Hit
from ragkit.encoders.fingerprint import is_legacy_of
from ragkit.encoders.protocol import Encoder
from ragkit.encoders.registry import load_encoder
from ragkit.errors import StoreDamagedError, WorkspaceError
from ragkit.indexes import close_index
from ragkit.lock import WorkspaceLock
from ragkit.retrieval.limits import check_k, check_query_text
from ragkit.retrieval.search import Searcher
from ragkit.sparse_channel import SparseChannel, make_sparse_channel
from ragkit.store import CollectionRecord, Store
from ragkit.workspace_status import alias_history, workspace_status

if TYPE_CHECKING:
    from ragkit.config import ChunkingConfig, EncoderConfig, IndexConfig, SparseConfig
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
        self.store = Store(root / "store.sqlite", seed_config=self.config)
        # Where the cache's missing vectors are encoded ([compute]); connects to nothing yet.
        self.store.encode_engine = make_engine(self.config.compute, self.config.encoder)
        self.lock = WorkspaceLock(root / "write.lock")
        self._encoder = encoder
        self._chunker: Chunker | None = None
        self._sparse_channel: SparseChannel | bool | None = False
        self.parts = CollectionParts(self.config, encoder, export_dir=str(root / "models"))
        self.searcher = Searcher(self)

    # -- the configured parts (ragkit.toml), which seed a new collection --------------------
    @property
    def encoder(self) -> Encoder:
        """The configured encoder (or the one given to :func:`open_workspace`). A collection
        is written and queried with its own: :meth:`encoder_for`."""
        if self._encoder is None:
            config = self.config.encoder
            if not config.export_dir:  # ONNX exports live beside the collections they built
                config = dataclasses.replace(config, export_dir=str(self.root / "models"))
            self._encoder = load_encoder(config)
        return self._encoder

    @property
    def loaded_encoder(self) -> Encoder | None:
        """The configured (or given) encoder if it is in memory already; None loads nothing."""
        return self._encoder

    @property
    def chunker(self) -> Chunker:
        if self._chunker is None:
            self._chunker = chunker_for(self.encoder, self.config.chunking)
        return self._chunker

    @property
    def sparse_channel(self) -> SparseChannel | None:
        """The configured sparse channel (BM25 or SPLADE), or None when switched off."""
        if self._sparse_channel is False:
            self._sparse_channel = make_sparse_channel(self.config.sparse)
        return self._sparse_channel  # type: ignore[return-value]

    # -- each collection's own parts, from its spec ----------------------------------------
    def encoder_for(self, collection: Collection) -> Encoder:
        return self.parts.encoder(collection)

    def chunker_for(self, collection: Collection) -> Chunker:
        return self.parts.chunker(collection)

    def sparse_channel_for(self, collection: Collection) -> SparseChannel | None:
        return self.parts.sparse_channel(collection)

    def warm_encoder(self, collection: Collection) -> None:
        self.parts.warm(collection)

    # -- collections ------------------------------------------------------------------------
    def collection(self, alias: str = DEFAULT_ALIAS) -> Collection | None:
        """The collection an alias points at, or the collection of that name."""
        name = self.store.resolve_alias(alias) or alias
        record = self.store.collection(name)
        return Collection(self.store, self.root, record) if record else None

    def collections(self) -> list[Collection]:
        return [Collection(self.store, self.root, r) for r in self.store.collections()]

    def ensure_collection(self) -> Collection:
        """The collection that ``default`` points at, created from ragkit.toml (and the
        encoder given to the workspace) when there is none."""
        existing = self.collection()
        if existing is not None:
            record = existing.record
            encoder = self.encoder_for(existing)
            fingerprint = encoder.fingerprint
            if is_legacy_of(record.model_fp, record.encoder, fingerprint):
                # Recorded by 0.1.0, whose fingerprint left the tokenizer out: re-key it and
                # its cached vectors once, keeping the old id in the record.
                described = {**fingerprint, "name": encoder.name}
                self.store.rekey_encoder(
                    record.name, record.model_fp, {**described, "upgraded_from": record.model_fp}
                )
                existing.refresh()
            return existing
        name = f"{_slug(self.encoder.name)}-{self.encoder.fingerprint['id'][:8]}"
        record = self.new_collection_record(name, state="live")
        _refuse_a_shared_place_taken(Collection(self.store, self.root, record))
        with self.store.transaction():
            self.store.put_collection(record)
            self.store.set_alias(DEFAULT_ALIAS, name)
        return Collection(self.store, self.root, record)

    def new_collection_record(
        self,
        name: str,
        *,
        encoder: Encoder | EncoderConfig | None = None,
        chunking: ChunkingConfig | None = None,
        index: IndexConfig | None = None,
        sparse: SparseConfig | None = None,
        state: str = "building",
    ) -> CollectionRecord:
        """The record of a new collection: its spec seeded from ragkit.toml, with any part
        given here instead (an encoder in memory or an encoder config, chunking, index and
        sparse settings)."""
        config = self.config
        if encoder is None:
            # an encoder handed to open() is described by what it does, not by ragkit.toml
            described = None if self.parts.override is not None else config
            loaded = self.encoder
        elif hasattr(encoder, "fingerprint"):
            loaded, described = encoder, None  # type: ignore[assignment]
            self.parts.add_encoder(loaded)
        else:
            described = dataclasses.replace(config, encoder=encoder)
            settings = encoder
            if not getattr(settings, "export_dir", "x"):  # ONNX exports beside the collections
                settings = dataclasses.replace(settings, export_dir=str(self.root / "models"))
            loaded = load_encoder(settings)  # type: ignore[arg-type]
            self.parts.add_encoder(loaded)
        self.parts.add_encoder(loaded)
        chunking = chunking or config.chunking
        chunker = chunker_for(loaded, chunking)
        seed = dataclasses.replace(
            config, index=index or config.index, sparse=sparse or config.sparse
        )
        spec = CollectionSpec.seed(
            seed,
            encoder=encoder_spec_of(loaded, described),
            chunking=chunking_spec_of(chunker, chunking, tokenizer_id(loaded)),
        )
        if sparse is None:  # the configured channel serves it: one model loaded, not two
            self.parts.remember_channel(spec, self.sparse_channel)
        fingerprint = loaded.fingerprint
        return CollectionRecord(
            name=name,
            model_fp=fingerprint["id"],
            chunking_fp=chunker.fingerprint,
            backend=spec.index.backend,
            dim=loaded.dim,
            state=state,
            generation=0,
            encoder={**fingerprint, "name": loaded.name},
            index=json.loads(json.dumps(spec.index.config().__dict__)),
            spec=spec,
        )

    def create_collection(
        self,
        name: str,
        *,
        encoder: Encoder | EncoderConfig | None = None,
        chunking: ChunkingConfig | None = None,
        index: IndexConfig | None = None,
        sparse: SparseConfig | None = None,
        state: str = "building",
        wait: float = 0.0,
    ) -> Collection:
        """A second collection over the stored documents, built in one commit: re-chunked
        from the stored blocks (no re-parsing; rows shared with any collection chunked the
        same way), vectors from the embedding cache where present. From then on every ingest
        keeps it in step; :meth:`set_alias` makes queries use it."""
        from ragkit.pipelines.build_collection import build_collection  # a writer job

        return build_collection(
            self,
            name,
            encoder=encoder,
            chunking=chunking,
            index=index,
            sparse=sparse,
            state=state,
            wait=wait,
        )

    def set_alias(self, alias: str, collection: str) -> None:
        """Point ``alias`` at ``collection`` in one store transaction: queries then use that
        collection, with its own encoder, sparse channel and indexes. A Qdrant alias of the
        same name follows (:mod:`ragkit.qdrant_aliases`)."""
        from ragkit.qdrant_aliases import follow_store_aliases_or_warn

        self.store.set_alias(alias, collection)
        follow_store_aliases_or_warn(self)

    def alias_history(self, alias: str | None = None, *, limit: int = 50) -> list[dict[str, Any]]:
        """Where each alias pointed and when, newest first (see ``workspace_status``)."""
        return alias_history(self.store, alias, limit)

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
        collection: str | None = None,
        documents: bool | str = False,
    ) -> list[Hit]:
        """``collection`` (a collection or alias name) is the same as ``alias``."""
        check_query_text(text)
        return self.query_many(
            [text],
            k=k,
            where=where,
            mode=mode,
            rerank=rerank,
            alias=collection or alias,
            documents=documents,
        )[0]

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
        collection: str | None = None,
        documents: bool | str = False,
    ) -> list[list[Hit]]:
        """Search with ``mode`` dense, sparse or hybrid (default: hybrid when a sparse channel
        exists). ``"<mode>+rerank"`` or ``rerank=True``/a model name adds the cross-encoder.
        ``alias`` or ``collection`` names an alias or a collection (default: ``default``).
        ``query_vectors``: the texts already encoded by that collection's encoder.

        Hits are chunks (for a prompt) unless ``documents``: then one hit per document, its
        best chunk's text, ranked by the ``[query] documents`` scoring of all its retrieved
        chunks (``True``), or by the scoring named (``"max"``, ``"decayed"``)."""
        check_k(k)
        return self.searcher.query_many(
            texts,
            k=k,
            where=where,
            mode=mode,
            rerank=rerank,
            alias=collection or alias,
            query_vectors=query_vectors,
            documents=documents,
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
        """Counts, sources, and each collection: state, aliases, spec and the drift between
        its spec and ragkit.toml (reported, never applied)."""
        return workspace_status(self)

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


def _slug(name: str) -> str:
    tail = Path(name).name if name != "default" else "all-MiniLM-L6-v2"
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in tail)[:40] or "encoder"


def _refuse_a_shared_place_taken(collection: Collection) -> None:
    """A first collection on a Qdrant that other workspaces may use (a server, or a folder
    named by ``qdrant_path``) opens its Qdrant collection before any record is written: one
    that another workspace created is refused then, and nothing is left to undo."""
    config = collection.index_config
    if config.backend == "qdrant" and (config.qdrant_url or config.qdrant_path):
        close_index(collection.empty_dense())
