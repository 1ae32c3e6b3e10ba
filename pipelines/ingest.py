"""Incremental ingest: walk sources, parse, chunk, embed what is new, commit in batches.

Unchanged files are skipped on (size, mtime) and then on content hash without parsing; changed
files replace only the documents that changed; files gone from a source leave store and index.

Every ``building`` and ``live`` collection is kept in step: a document is chunked once per
chunking spec among them (collections chunked alike share the rows), each collection's
vectors come from its own encoder (through the cache), and one store transaction per batch
commits the rows and a new index generation of every collection together (see
``ragkit.collection``). Killing the process at any point leaves the last committed state, and
the next run finishes the work without duplicates — texts already embedded come from the
cache, not the encoder.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ragkit.chunking import Chunker, TooManyChunksError, doc_id_for
from ragkit.collection_spec import MIGRATION_HINT
from ragkit.compute import ray_engine_at
from ragkit.config import SourceConfig
from ragkit.connectors import LoadOptions, read_source_bytes
from ragkit.connectors.base import UnsafeSourceError, printable_path
from ragkit.connectors.filesystem import FileEntry, WalkFailure, WalkSkip, walk_files
from ragkit.connectors.pool import ParsePool
from ragkit.documents import Chunk, Document
from ragkit.embedding_cache import encode_into_cache
from ragkit.errors import ConnectorError
from ragkit.pipelines._runner import job
from ragkit.pipelines.ingest_commit import Batch, Target, commit_batch, open_targets
from ragkit.pipelines.sources import (
    DeletionGuard,
    remember_sources,
    resolve_sources,
    saved_filter_notes,
)
from ragkit.store import FileRecord
from ragkit.workspace import Workspace
from ragkit.workspace_status import collection_drift

__all__ = ["FileFailure", "IngestReport", "ingest"]

ProgressCallback = Callable[[str, int], None]

_FORGOTTEN = "its earlier content was removed from the index"


@dataclass(frozen=True, slots=True)
class FileFailure:
    """A file not ingested; ``path`` is printable (see ``printable_path``) for any output."""

    path: str
    reason: str


@dataclass
class IngestReport:
    run_id: int = 0
    files_seen: int = 0
    files_new: int = 0
    files_changed: int = 0
    files_unchanged: int = 0
    files_deleted: int = 0
    files_failed: int = 0
    files_skipped: int = 0  # unsupported types found in a folder: ".css" -> how many
    skipped_types: dict[str, int] = field(default_factory=dict)
    documents_added: int = 0
    documents_updated: int = 0
    documents_deleted: int = 0
    chunks_added: int = 0
    chunks_deleted: int = 0
    chunks_encoded: int = 0
    chunks_from_cache: int = 0
    commits: int = 0
    seconds: float = 0.0
    encode_seconds: float = 0.0
    failures: list[FileFailure] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    #: sources left as they were because their walk looked like a lost mount (see DeletionGuard)
    sources_refused: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. the saved excludes that were used
    sources: list[str] = field(default_factory=list)  # names of the sources this run walked

    @property
    def ok(self) -> bool:
        return not self.failures and not self.sources_refused

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def ingest(
    workspace: Workspace,
    paths: list[str],
    *,
    include: list[str] | None = None,
    exclude: list[str] | None = None,
    follow_symlinks: bool = False,
    load_options: LoadOptions | None = None,
    commit_every: int = 4096,
    wait: float = 0.0,
    progress: ProgressCallback | None = None,
    allow_empty: bool = False,
    max_delete_fraction: float | None = None,
    strict: bool = False,
    ray: str | None = None,
) -> IngestReport:
    """Ingest ``paths`` (each a file or folder) or, when empty, every configured source.

    The sources are worked out (and a path that does not exist refused) before the writer
    lock is taken, but ragkit.toml is written only under the lock: a job refused with 75
    must leave the config as it found it. A source whose walk finds no file where the store
    has some (an unmounted disk), or would delete more than ``max_delete_fraction`` of its
    files, is left as it was and named in ``sources_refused``; ``allow_empty`` lets an empty
    walk delete. ``strict``: files of unsupported types
    are failures, not skips. ``ray``: encode on the Ray cluster at this address for this run
    (as ``[compute] engine = "ray"`` would).
    """
    sources = resolve_sources(workspace, paths, include, exclude, follow_symlinks)
    params = {
        "paths": paths,
        "include": include,
        "exclude": exclude,
        "follow_symlinks": follow_symlinks,
        "commit_every": commit_every,
        "allow_empty": allow_empty,
        "max_delete_fraction": max_delete_fraction,
        "strict": strict,
        "ray": ray,
    }
    engine = ray_engine_at(workspace.config, ray)
    notes = saved_filter_notes(workspace, paths, include, exclude)
    with job(workspace, "ingest", params, wait=wait) as run, workspace.store.using_engine(engine):
        if paths:
            remember_sources(workspace, sources)
        options = load_options or LoadOptions.from_config(workspace.config.ingest)
        ingest_job = _IngestJob(workspace, run.run_id, options, commit_every, progress)
        ingest_job.guard = DeletionGuard(allow_empty, max_delete_fraction)
        ingest_job.strict = strict
        ingest_job.report.notes, ingest_job.report.sources = notes, [s.name for s in sources]
        report = ingest_job.run(sources)
        run.outcome(report.ok, report.to_dict())
    return report


def _document_hash(document: Document) -> str:
    payload = json.dumps(
        [
            document.title,
            document.format,
            document.metadata,
            [list(map(str, (b.text, b.headings, b.kind))) for b in document.blocks],
        ],
        sort_keys=True,
        default=str,
    )
    return hashlib.blake2b(payload.encode("utf-8"), digest_size=16).hexdigest()


class _IngestJob:
    def __init__(
        self,
        workspace: Workspace,
        run_id: int,
        load_options: LoadOptions,
        commit_every: int,
        progress: ProgressCallback | None,
    ) -> None:
        self.ws = workspace
        self.store = workspace.store
        self.options = load_options
        self.commit_every = max(1, commit_every)
        self.progress = progress or (lambda event, n: None)
        self.report = IngestReport(run_id=run_id)
        self.batch = Batch()
        self.root: Path | None = None  # the source being walked, set by _ingest_source
        self.follow_symlinks = False
        self.guard = DeletionGuard()
        self.strict = False

    def run(self, sources: list[SourceConfig]) -> IngestReport:
        started = time.perf_counter()
        default = self.ws.ensure_collection()
        drift = collection_drift(self.ws, default)
        if drift:
            self.report.problems.append(
                f"collection {default.name!r}: ragkit.toml differs from its spec ("
                + "; ".join(map(str, drift))
                + f"): {MIGRATION_HINT}"
            )
        self.targets = open_targets(self.ws)
        self.chunkers: dict[str, Chunker] = {}
        for target in self.targets:
            self.chunkers.setdefault(target.chunking_fp, self.ws.chunker_for(target.collection))
            if target.writer.sparse_needs_rebuild and target.channel is not None:
                target.channel.warm(self.store, self.progress, target.chunking_fp)
        # One pool for the whole job: workers start on the first file that needs parsing and
        # are stopped on the way out, also when an exception or Ctrl-C ends the job early.
        with ParsePool.for_options(self.options) as self.pool:
            for source in sources:
                self._ingest_source(source)
        self._flush()
        self.report.seconds = time.perf_counter() - started
        return self.report

    # -- discovery --------------------------------------------------------------------------
    def _ingest_source(self, source: SourceConfig) -> None:
        root = Path(source.path)
        if not root.exists():
            # Never treat a vanished root as "every file deleted": that would empty the index.
            self._fail(source.name, "source path does not exist; nothing was changed for it")
            self.report.sources_refused.append(source.name)
            return
        self.store.upsert_source(source.name, str(root), asdict(source))
        # The read checks each file against the root it was walked from (see read_source_bytes).
        self.root, self.follow_symlinks = root, source.follow_symlinks
        known = self.store.files(source.name)
        entries = list(
            walk_files(
                root,
                include=source.include,
                exclude=source.exclude,
                follow_symlinks=source.follow_symlinks,
            )
        )
        self.progress("files_total", len(entries))
        seen: set[str] = set()
        for entry in entries:
            if isinstance(entry, WalkSkip) and not self.strict:
                seen.add(printable_path(_relative(entry.path, root)))  # keep what it had
                self._skip(entry)
            elif isinstance(entry, WalkFailure):
                uri = printable_path(_relative(entry.path, root))
                if entry.forget and uri in known:
                    # Not added to `seen`: its record and documents go with the deleted files.
                    self._fail(entry.path, f"{entry.reason}; {_FORGOTTEN}")
                else:
                    self._fail(entry.path, entry.reason)
                    seen.add(uri)  # keep what an unreadable file had
            else:
                seen.add(entry.uri)
                self._ingest_file(source.name, entry, known.get(entry.uri))
            self.progress("file", 1)
        gone = sorted(set(known) - seen)
        refusal = self.guard.refuse(
            len(known), len(gone), any(isinstance(e, FileEntry) for e in entries)
        )
        if refusal:
            self._fail(source.name, f"{refusal}; nothing was deleted for it")
            self.report.sources_refused.append(source.name)
            gone = []
        for path in gone:
            self.report.files_deleted += 1
            self.batch.delete_files.append((source.name, path))
            self._delete_documents(self.store.documents_of_file(source.name, path))
        if not refusal:
            # A run killed mid-file commits documents before their file record; when the file
            # is gone by the next run, nothing else would ever remove them.
            self._delete_documents(self.store.documents_without_file(source.name, seen))
        self._maybe_flush()

    def _ingest_file(self, source: str, entry: FileEntry, known: FileRecord | None) -> None:
        self.report.files_seen += 1
        if known and known.size == entry.size and known.mtime_ns == entry.mtime_ns:
            self.report.files_unchanged += 1
            return
        try:
            # Read once: the bytes hashed are the bytes parsed, even if the file changes meanwhile.
            data = read_source_bytes(
                entry.path,
                self.options.max_file_bytes,
                root=self.root,
                follow_symlinks=self.follow_symlinks,
            )
            content_hash = _hash_bytes(data)
            record = FileRecord(
                source, entry.uri, entry.size, entry.mtime_ns, content_hash, entry.format
            )
            if known and known.content_hash == content_hash:
                self.report.files_unchanged += 1
                self.batch.put_files.append(record)  # only the mtime moved
                return
            result = self.pool.parse(
                data, fmt=entry.format, path=entry.path, uri=entry.uri, options=self.options
            )
            self._stage_documents(source, entry.uri, result.documents)
        except UnsafeSourceError as exc:
            if known:  # the path leads elsewhere now: what it held must not stay searchable
                self.batch.delete_files.append((source, entry.uri))
                self._delete_documents(self.store.documents_of_file(source, entry.uri))
            self._fail(entry.path, exc.reason + (f"; {_FORGOTTEN}" if known else ""))
            return
        except ConnectorError as exc:
            self._fail(entry.path, exc.reason)
            return
        except OSError as exc:
            self._fail(entry.path, f"cannot read: {exc.strerror or exc}")
            return
        shown = printable_path(entry.path)
        self.report.problems.extend(f"{shown}: {p}" for p in result.problems)
        if known:
            self.report.files_changed += 1
        else:
            self.report.files_new += 1
        self.batch.put_files.append(record)
        self._maybe_flush()

    def _stage_documents(self, source: str, file_path: str, documents: list[Document]) -> None:
        """Stage the file's new and changed documents, or none of them: the file's chunks are
        made first, so one over ``max_chunks_per_document`` (or, when set,
        ``max_chunks_per_file``) fails alone (ConnectorError)."""
        existing = self.store.documents_of_file(source, file_path)
        staged: set[str] = set()
        todo: list[tuple[str, Document, str, dict[str, list[Chunk]]]] = []
        cap = self.options.max_chunks_per_file or None
        room = dict.fromkeys(self.chunkers, cap)  # chunks the file may still make, per chunking
        for document in documents:
            doc_id = doc_id_for(source, document.uri)
            if doc_id in staged:
                self.report.problems.append(
                    f"{file_path}: duplicate document {document.uri!r} skipped"
                )
                continue
            staged.add(doc_id)
            content_hash = _document_hash(document)
            if existing.get(doc_id) == content_hash:
                continue
            chunks = {}
            for fp, chunker in self.chunkers.items():
                chunks[fp] = self._chunk_capped(chunker, file_path, doc_id, document, room[fp])
                left = room[fp]
                room[fp] = None if left is None else left - len(chunks[fp])
            todo.append((doc_id, document, content_hash, chunks))
        for doc_id, document, content_hash, chunks in todo:
            if doc_id in existing:
                self.batch.delete_docs.append(doc_id)
                self.report.documents_updated += 1
            else:
                self.report.documents_added += 1
            self._stage_document(doc_id, source, file_path, document, content_hash, chunks)
            # Safe mid-file: the file record is written last, so after a crash the file is read
            # again and the documents committed so far are skipped by their content hash.
            self._maybe_flush()
        self._delete_documents({d: h for d, h in existing.items() if d not in staged})

    def _chunk_capped(
        self,
        chunker: Chunker,
        file_path: str,
        doc_id: str,
        document: Document,
        file_room: int | None,
    ) -> list[Chunk]:
        """Chunks of one document, at most ``max_chunks_per_document`` and the ``file_room``
        its file has left (None: no file cap). The document cap is what stops one huge
        unbroken text; record files (jsonl/csv exports, BEIR corpora) hold many documents."""
        per_document = self.options.max_chunks_per_document or None
        caps = [
            (cap, name)
            for cap, name in (
                (per_document, "max_chunks_per_document"),
                (file_room, "max_chunks_per_file"),
            )
            if cap is not None
        ]
        room = min((cap for cap, _ in caps), default=None)
        try:
            return chunker.chunk(doc_id, document, max_chunks=room)
        except TooManyChunksError:
            name = min(caps)[1]
            limit = getattr(self.options, name)
            unit = "one document would make" if name == "max_chunks_per_document" else "would make"
            raise ConnectorError(
                file_path,
                f"{unit} more than {limit} chunks; raise [ingest] {name} in ragkit.toml or "
                "split the file",
            ) from None

    def _stage_document(
        self,
        doc_id: str,
        source: str,
        file_path: str,
        document: Document,
        content_hash: str,
        chunks: dict[str, list[Chunk]],
    ) -> None:
        self.batch.put_docs.append((doc_id, source, file_path, document, content_hash))
        for fp, made in chunks.items():
            self.batch.chunks.setdefault(fp, []).extend(made)

    def _delete_documents(self, documents: dict[str, str]) -> None:
        self.report.documents_deleted += len(documents)
        self.batch.delete_docs.extend(documents)

    def _skip(self, entry: WalkSkip) -> None:
        kind = entry.extension or "(no extension)"
        self.report.files_skipped += 1
        self.report.skipped_types[kind] = self.report.skipped_types.get(kind, 0) + 1

    def _fail(self, path: str | Path, reason: str) -> None:
        self.report.files_failed += 1
        self.report.failures.append(FileFailure(printable_path(path), reason))

    # -- commit -----------------------------------------------------------------------------
    def _maybe_flush(self) -> None:
        if self.batch.size >= self.commit_every:
            self._flush()

    def _flush(self) -> None:
        """One store transaction for the batch's rows and a new generation of every target."""
        batch, self.batch = self.batch, Batch()
        targets = self.targets
        if not batch and not any(t.writer.dirty for t in targets):
            return
        vectors, prepared = {}, {}
        for target in targets:
            chunks = batch.chunks.get(target.chunking_fp, [])
            vectors[target.collection.name] = self._vectors_for(target, chunks)
            if target.channel is not None:
                prepared[target.collection.name] = target.channel.prepare(
                    chunks, self.store, self.progress
                )
        deleted = commit_batch(self.store, targets, list(self.chunkers), batch, vectors, prepared)
        self.report.chunks_added += sum(len(chunks) for chunks in batch.chunks.values())
        self.report.chunks_deleted += deleted
        self.report.commits += 1

    def _vectors_for(self, target: Target, chunks: list[Chunk]) -> np.ndarray:
        encoder, model_fp = target.encoder, target.model_fp
        if not chunks:
            return np.zeros((0, encoder.dim), dtype=np.float32)
        hashes = [c.text_hash for c in chunks]
        cached = self.store.cached_vectors(hashes, model_fp, encoder.dim)
        todo: dict[str, str] = {}
        for chunk in chunks:
            if chunk.text_hash not in cached:
                todo.setdefault(chunk.text_hash, chunk.embed_text)
        self.report.chunks_from_cache += len(chunks) - sum(1 for c in chunks if c.text_hash in todo)
        if todo:
            started = time.perf_counter()
            cached.update(encode_into_cache(encoder, self.store, model_fp, todo, self.progress))
            self.report.encode_seconds += time.perf_counter() - started
            self.report.chunks_encoded += len(todo)
        return np.stack([cached[h] for h in hashes])


def _hash_bytes(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _relative(path: str, root: Path) -> str:
    base = root if root.is_dir() else root.parent
    return Path(os.path.relpath(path, base)).as_posix()
