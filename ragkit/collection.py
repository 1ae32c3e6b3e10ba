"""A collection: one physical index built from its own spec (``record.spec``: encoder,
chunking, dense index, sparse channel, default fusion) over the chunks of its chunking
fingerprint.

Index files are written per *generation* (``dense.g000007.faiss``): a writer saves generation
N+1 under a new name and then commits ``generation = N+1`` in the same store transaction as the
chunk rows. A crash before the commit leaves an unreferenced file (removed on the next write);
a crash after it leaves the new state complete. Readers always see one whole generation.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ragkit.config import IndexConfig
from ragkit.document_vectors import DocumentVectorWriter, document_path
from ragkit.errors import IndexCorruptError, RagkitError
from ragkit.index_checksums import file_digest
from ragkit.indexes import (
    DenseIndex,
    NeedsRetrain,
    SupportsReconcile,
    create_dense_index,
    dense_backend,
    load_dense_index,
)
from ragkit.sparse_channel import SparseChannel, load_sparse, sparse_path
from ragkit.sparse_mirror import SparseMirror
from ragkit.store import CollectionRecord, Store

__all__ = ["Collection", "CollectionWriter", "committing"]

_GENERATION_FILE = re.compile(r"^(?:dense|sparse|documents)\.g(\d+)\.")


class Collection:
    def __init__(self, store: Store, workspace_dir: Path, record: CollectionRecord) -> None:
        self.store = store
        self.record = record
        self.dir = workspace_dir / "collections" / record.name
        self.index_config: IndexConfig = record.spec.index.config()

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def state(self) -> str:
        return self.record.state

    @property
    def chunking_fp(self) -> str:
        """The chunk rows this collection indexes are those of this chunking fingerprint."""
        return self.record.spec.chunking.fingerprint or self.record.chunking_fp

    def refresh(self) -> None:
        record = self.store.collection(self.name)
        if record is not None:
            self.record = record

    def dense_path(self, generation: int) -> Path:
        suffix = dense_backend(self.index_config.backend).suffix
        return self.dir / f"dense.g{generation:06d}.{suffix}"

    def empty_dense(self) -> DenseIndex:
        """A new, empty dense index of this collection's backend and dimension."""
        return create_dense_index(
            self.record.dim,
            self.index_config,
            directory=self.dir,
            name=self.name,
            owner=self.store.workspace_id(),
        )

    def load_dense(self) -> DenseIndex:
        """The committed generation; retried once if a writer replaced it meanwhile."""
        dim = self.record.dim
        for attempt in range(3):
            generation = self.record.generation
            if generation == 0:
                return self.empty_dense()
            path = self.dense_path(generation)
            if path.exists():
                owner = self.store.workspace_id()
                load = partial(load_dense_index, path, dim, self.index_config, owner)
                return _loaded(path, load)
            if attempt < 2:
                self.refresh()
        raise IndexCorruptError(
            f"collection {self.name!r}: index file {path} is missing; "
            "run `ragkit doctor --repair` to rebuild it from the store"
        )

    def has_sparse(self, channel: SparseChannel | None) -> bool:
        return channel is not None and self.record.sparse_fp == channel.fingerprint

    def load_sparse(self, channel: SparseChannel) -> Any:
        path = sparse_path(self.dir, channel, self.record.generation)
        return _loaded(path, lambda: load_sparse(self.dir, channel, self.record.generation))

    def checksummed_files(self, channel: SparseChannel | None, generation: int) -> dict[str, Path]:
        """``{"dense"|"sparse": path}`` of the generation's files that ragkit writes whole and
        can checksum. A Qdrant backend's vectors live in Qdrant (a server or its own folder),
        and its generation file only points there, so it has no entry."""
        files = {}
        if self.index_config.backend == "faiss":
            files["dense"] = self.dense_path(generation)
        if channel is not None:
            files["sparse"] = sparse_path(self.dir, channel, generation)
        if self.record.spec.index.document_vectors:
            files["documents"] = document_path(self, generation)
        return files

    def vectors_from_cache(self) -> tuple[np.ndarray, np.ndarray, list[tuple[int, str, str]]]:
        """Every chunk's id and cached vector; chunks without one are returned to be encoded."""
        rows = self.store.chunk_hashes(self.chunking_fp)
        cached = self.store.cached_vectors(
            [h for _, h, _ in rows], self.record.model_fp, self.record.dim
        )
        ids = [i for i, h, _ in rows if h in cached]
        vectors = np.stack([cached[h] for _, h, _ in rows if h in cached]) if ids else None
        missing = [row for row in rows if row[1] not in cached]
        if vectors is None:
            vectors = np.zeros((0, self.record.dim), dtype=np.float32)
        return np.array(ids, dtype=np.int64), vectors, missing

    def stale_files(self) -> list[Path]:
        """Files of generations other than the committed one, and temporary files and working
        copies a writer left behind: what a crash before a commit leaves. While a writer is at
        work, its next generation is listed too, so only a lock holder may act on the list.

        The open-lock of the committed generation (``.dense.g….qedge.lock``, which readers of
        a Qdrant Edge generation hold while opening it) is not stale."""
        if not self.dir.exists():
            return []
        open_lock = f".{self.dense_path(self.record.generation).name}.lock"
        stale = []
        for path in sorted(self.dir.iterdir()):
            match = _GENERATION_FILE.match(path.name)
            other_generation = match is not None and int(match.group(1)) != self.record.generation
            leftover = path.name.startswith((".dense.", ".sparse.", ".documents."))
            leftover = leftover and path.name != open_lock
            if other_generation or leftover:
                stale.append(path)
        return stale

    def remove_stale_files(self) -> None:
        """Drop what :meth:`stale_files` lists (only a lock holder may call this)."""
        for path in self.stale_files():
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def _loaded(path: Path, load: Any) -> Any:
    """A backend's own failure to read a damaged file (faiss RuntimeError, numpy ValueError,
    ...) becomes an :class:`IndexCorruptError` naming the file and the repair."""
    try:
        return load()
    except RagkitError:
        raise  # already says what to do (e.g. an embedded Qdrant held by another process)
    except Exception as exc:
        raise IndexCorruptError(
            f"index file {path} does not load ({type(exc).__name__}: {exc}); run "
            "`ragkit doctor --repair` to rebuild it from the store"
        ) from exc


class CollectionWriter:
    """Applies chunk changes to a collection's indexes and commits a new generation.

    ``channel`` is the collection's own sparse channel (from its spec). When the committed
    sparse index is of another channel, or of a format that must be rebuilt, it is rebuilt
    from the store at the next commit.
    """

    def __init__(
        self,
        collection: Collection,
        channel: SparseChannel | None = None,
        *,
        rebuild: Iterable[str] = (),
    ) -> None:
        """``rebuild`` ("dense", "sparse", "documents") starts those indexes empty, without
        reading their files, and rebuilds them from the store at the next commit: how ``ragkit
        doctor --repair`` replaces a missing or damaged index through the same commit as
        ingest."""
        self.collection = collection
        self.channel = channel
        self._rebuild = frozenset(rebuild)
        known = {"dense", "sparse", "documents"}
        if not self._rebuild <= known:
            raise ValueError(f"cannot rebuild {sorted(self._rebuild - known)}")
        collection.dir.mkdir(parents=True, exist_ok=True)
        collection.remove_stale_files()
        self._load()

    def _load(self) -> None:
        self._needs_rebuild = "dense" in self._rebuild
        repaired = False
        if self._needs_rebuild:
            self.index = self.collection.empty_dense()
        else:
            self.index = self.collection.load_dense()
            if isinstance(self.index, SupportsReconcile):
                repaired = self._reconcile(self.index)
        self._dirty = bool(self._rebuild)
        rebuild_documents = "documents" in self._rebuild
        self.documents = DocumentVectorWriter.attach(self.collection, rebuild=rebuild_documents)
        self.sparse: Any = None
        self._sparse_rebuild = False
        if self.channel is not None:
            keep = "sparse" not in self._rebuild
            if keep and self.collection.has_sparse(self.channel):
                self.sparse = self.collection.load_sparse(self.channel)
            else:
                self.sparse = self.channel.empty()
                self._dirty = True
                # With no chunks stored yet the empty index is already right: new chunks are
                # added from their prepared form instead of re-read from the store at commit.
                store, fp = self.collection.store, self.collection.chunking_fp
                self._sparse_rebuild = store.has_chunks(fp)
        elif self.collection.record.sparse_fp:
            self._dirty = True  # the sparse channel was switched off: drop it at the next commit
        in_step = not (self._needs_rebuild or self._sparse_rebuild or repaired)
        self._mirror = SparseMirror.attach(
            self.collection, self.index, self.channel, in_step=in_step
        )
        if self._mirror is not None and repaired and not self._sparse_rebuild:
            self._mirror.write(self.sparse)  # the committed vectors, back where a crash left

    def _reconcile(self, index: SupportsReconcile) -> bool:
        """A backend written in place (a Qdrant server or store) may hold changes of a batch
        whose store transaction never committed; make it match the store before writing.
        True when it did not match."""
        store_ids = self.collection.store.all_chunk_ids(self.collection.chunking_fp)
        extra, missing = index.reconcile(store_ids)
        if len(extra):
            self.index.remove(extra)
        if len(missing):
            ids, vectors, _ = self.collection.vectors_from_cache()
            wanted = np.isin(ids, missing)
            self.index.add(ids[wanted], vectors[wanted])
        return bool(len(extra) or len(missing))

    def apply(
        self,
        removed_ids: np.ndarray,
        new_ids: np.ndarray,
        vectors: np.ndarray,
        sparse_prepared: Any = None,
        *,
        sparse: bool = True,
    ) -> None:
        """Remove and add chunks. ``sparse=False`` leaves the sparse index alone: a backfill
        adds dense vectors of chunks the sparse index already holds."""
        if len(removed_ids) and not self._needs_rebuild:
            self._needs_rebuild = not self.index.remove(removed_ids)
        if not self._needs_rebuild and isinstance(self.index, NeedsRetrain):
            self._needs_rebuild = self.index.needs_retrain(len(new_ids))
        if not self._needs_rebuild:
            self.index.add(new_ids, vectors)
            if self._mirror is not None:
                self._mirror.changed(removed_ids, new_ids)
        if sparse and self.channel is not None and not self._sparse_rebuild:
            self._sparse_rebuild = not self.channel.apply(
                self.sparse, removed_ids, new_ids, sparse_prepared
            )
        self._dirty = self._dirty or bool(len(removed_ids) or len(new_ids))

    @property
    def dirty(self) -> bool:
        return self._dirty

    def copy_sparse_again(self, ids: np.ndarray) -> bool:
        """Have the next commit copy these points' sparse vectors into the index again, as a
        new generation (an engine that saves a copy, Qdrant Edge, keeps them only so); False
        when the collection keeps no sparse vectors in its points."""
        if self._mirror is None:
            return False
        self._mirror.again(ids)
        self._dirty = True
        return True

    def _documents_out_of_step(self) -> bool:
        return self.documents is not None and self.documents.out_of_step(self.collection.store)

    @property
    def sparse_needs_rebuild(self) -> bool:
        return self.channel is not None and self._sparse_rebuild

    def commit(self) -> None:
        """Call inside the store transaction that wrote the chunk rows."""
        if not self._dirty and not self._documents_out_of_step():
            return
        store = self.collection.store
        if self._needs_rebuild:
            ids, vectors, missing = self.collection.vectors_from_cache()
            # A shadow being backfilled holds the chunks whose vectors exist so far: the
            # backfill adds the rest (it adds what the index lacks, whoever cached it).
            if missing and store.backfilling(self.collection.name) is None:
                raise IndexCorruptError(
                    f"collection {self.collection.name!r}: {len(missing)} chunks have no cached "
                    "vector; run `ragkit doctor --repair`"
                )
            self.index.rebuild(ids, vectors)
            self._needs_rebuild = False
            if self._mirror is not None:
                self._mirror.everything()  # the points were made again, dense vectors only
        generation = self.collection.record.generation + 1
        if self.documents is not None:
            self.documents.commit(store, generation)
        fields: dict[str, Any] = {"generation": generation}
        if self.channel is not None:
            if self._sparse_rebuild:
                self.channel.rebuild(self.sparse, store, self.collection.chunking_fp)
                self._sparse_rebuild = False
                if self._mirror is not None:
                    self._mirror.everything()
            self.sparse.save(sparse_path(self.collection.dir, self.channel, generation))
            if self._mirror is not None:
                self._mirror.write(self.sparse)
            fields["sparse_fp"] = self.channel.fingerprint
            fields["sparse_json"] = json.dumps(self.channel.describe(), default=str)
        else:
            fields["sparse_fp"] = ""
            fields["sparse_json"] = "{}"
        # After the sparse mirror: Qdrant Edge saves a copy of its shard, so vectors written
        # into the points later would miss this generation.
        self.index.save(self.collection.dense_path(generation))
        store.set_collection(self.collection.name, **fields)
        files = self.collection.checksummed_files(self.channel, generation)
        digests = {path.name: file_digest(path) for path in files.values() if path.is_file()}
        store.set_index_checksums(self.collection.name, generation, digests)
        self._dirty = False

    def committing(self) -> AbstractContextManager[CollectionWriter]:
        """The one commit protocol of every writer job: ``with writer.committing() as w:``
        opens the store transaction; the block writes its rows and calls ``w.apply(...)``;
        :meth:`commit` then saves generation N+1 inside that same transaction. After the
        commit the collection moves on to the new generation (:meth:`after_commit`); on any
        exception, the transaction rolls back and the writer reloads the committed
        generation (:meth:`after_rollback`), so a later batch starts from what the store
        says, and the exception goes on. Encode before entering: the block holds the
        store's write lock. Several collections commit together with :func:`committing`."""
        return _single(self)

    def after_commit(self) -> None:
        self._rebuild = frozenset()  # done: a later rollback reloads the committed files
        self.collection.refresh()
        self.collection.remove_stale_files()

    def after_rollback(self) -> None:
        self.collection.refresh()
        self._load()


@contextmanager
def committing(store: Store, writers: Sequence[CollectionWriter]) -> Iterator[None]:
    """:meth:`CollectionWriter.committing` for several collections in one store transaction:
    every writer commits its generation N+1 at the end of the block, and all of them move on
    (or, on any exception, all reload their committed generation): the collections an ingest
    keeps in step never end up one batch apart."""
    try:
        with store.transaction():
            yield
            for writer in writers:
                writer.commit()
    except BaseException as exc:
        for writer in writers:
            try:
                writer.after_rollback()
            except Exception as reload_error:  # keep the first error: it says what went wrong
                exc.add_note(f"reloading the committed generation failed too: {reload_error}")
        raise
    for writer in writers:
        writer.after_commit()


@contextmanager
def _single(writer: CollectionWriter) -> Iterator[CollectionWriter]:
    with committing(writer.collection.store, [writer]):
        yield writer
