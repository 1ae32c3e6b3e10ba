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

This module is the job: what becomes of files that are new, changed, unchanged, gone or
refused. The walk, the reads, the parse in the worker pool and the chunking run ahead of it on
a producer thread (:mod:`ragkit.pipelines.ingest_pipeline`); what becomes of the parsed
documents (vectors, the batch commit) is :mod:`ragkit.pipelines.ingest_stage`, on this thread.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

from ragkit.chunking import Chunker
from ragkit.collection_spec import MIGRATION_HINT
from ragkit.compute import ray_engine_at
from ragkit.config import SourceConfig
from ragkit.connectors import LoadOptions
from ragkit.connectors.base import UnsafeSourceError, printable_path
from ragkit.connectors.filesystem import FileEntry, WalkFailure, WalkSkip, walk_files
from ragkit.connectors.pool import ParsePool
from ragkit.errors import ConnectorError
from ragkit.pipelines._runner import job
from ragkit.pipelines.ingest_commit import open_targets
from ragkit.pipelines.ingest_pipeline import AHEAD_FILES, FileProducer, FileWork, Walked, run_ahead
from ragkit.pipelines.ingest_report import FileFailure, IngestReport
from ragkit.pipelines.ingest_stage import Staging
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
        self.commit_every = commit_every
        self.progress = progress or (lambda event, n: None)
        self.report = IngestReport(run_id=run_id)
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
        targets = open_targets(self.ws)
        chunkers: dict[str, Chunker] = {}
        for target in targets:
            chunkers.setdefault(target.chunking_fp, self.ws.chunker_for(target.collection))
            if target.writer.sparse_needs_rebuild and target.channel is not None:
                target.channel.warm(self.store, self.progress, target.chunking_fp)
        self.staging = Staging(
            self.store,
            targets,
            chunkers,
            self.options,
            self.report,
            self.commit_every,
            self.progress,
        )
        # One pool for the whole job: workers start on the first file that needs parsing and
        # are stopped on the way out, also when an exception or Ctrl-C ends the job early.
        pool = ParsePool.for_options(self.options, max_pending=AHEAD_FILES + 1)
        with pool as self.pool:
            for source in sources:
                self._ingest_source(source)
        self.staging.flush()
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
        known = self.store.files(source.name)
        walk = walk_files(
            root,
            include=source.include,
            exclude=source.exclude,
            follow_symlinks=source.follow_symlinks,
        )
        depth = self.options.pipeline_chunks
        # The read checks each file against the root it was walked from (see read_source_bytes).
        producer = FileProducer(
            source.name,
            root,
            follow_symlinks=source.follow_symlinks,
            known=known,
            options=self.options,
            pool=self.pool,
            chunkers=self._thread_chunkers if depth > 0 else lambda: self.staging.chunkers,
        )
        if depth <= 0:
            self._consume(source.name, root, known, producer.items(walk))
            return
        with run_ahead(
            lambda stopped: producer.items(walk, stopped), depth=depth, weight=_weight
        ) as handoff:
            self._consume(source.name, root, known, handoff.items(idle=self.staging.encode_ahead))

    def _consume(
        self,
        source: str,
        root: Path,
        known: dict[str, FileRecord],
        items: Iterator[Walked | FileWork],
    ) -> None:
        """Stage the producer's items in walk order, then delete what the walk did not find."""
        entries: list[FileEntry | WalkFailure] = []
        seen: set[str] = set()
        for item in items:
            if isinstance(item, Walked):
                entries = item.entries
                self.progress("files_total", len(entries))
                continue
            entry = item.entry
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
                self._ingest_file(source, item)
            self.progress("file", 1)
        gone = sorted(set(known) - seen)
        refusal = self.guard.refuse(
            len(known), len(gone), any(isinstance(e, FileEntry) for e in entries)
        )
        if refusal:
            self._fail(source, f"{refusal}; nothing was deleted for it")
            self.report.sources_refused.append(source)
            gone = []
        for path in gone:
            self.report.files_deleted += 1
            self.staging.forget_file(source, path)
        if not refusal:
            # A run killed mid-file commits documents before their file record; when the file
            # is gone by the next run, nothing else would ever remove them.
            self.staging.delete_documents(self.store.documents_without_file(source, seen))
        self.staging.maybe_flush()

    def _ingest_file(self, source: str, work: FileWork) -> None:
        entry, known = work.entry, work.known
        assert isinstance(entry, FileEntry)
        self.report.files_seen += 1
        if work.unchanged:
            self.report.files_unchanged += 1
            if work.record is not None:
                self.staging.put_file(work.record)  # only the mtime moved
            return
        try:
            if work.error is not None:
                raise work.error
            assert work.result is not None and work.record is not None
            self.staging.stage_documents(source, entry.uri, work.result.documents, work.chunked)
        except UnsafeSourceError as exc:
            if known:  # the path leads elsewhere now: what it held must not stay searchable
                self.staging.forget_file(source, entry.uri)
            self._fail(entry.path, exc.reason + (f"; {_FORGOTTEN}" if known else ""))
            return
        except ConnectorError as exc:
            self._fail(entry.path, exc.reason)
            return
        except OSError as exc:
            self._fail(entry.path, f"cannot read: {exc.strerror or exc}")
            return
        shown = printable_path(entry.path)
        self.report.problems.extend(f"{shown}: {p}" for p in work.result.problems)
        if known:
            self.report.files_changed += 1
        else:
            self.report.files_new += 1
        self.staging.put_file(work.record)
        self.staging.maybe_flush()

    @functools.cached_property
    def _twins(self) -> dict[str, Chunker | None]:
        return {fp: chunker.for_thread() for fp, chunker in self.staging.chunkers.items()}

    def _thread_chunkers(self) -> dict[str, Chunker] | None:
        """The producer thread's chunkers, over tokenizer copies of their own (a tokenizer is not
        thread-safe), made when the first file needs chunking (a copy takes ~0.1 s); None when
        one cannot be made: this thread chunks then."""
        twins = self._twins
        return None if None in twins.values() else twins  # type: ignore[return-value]

    def _skip(self, entry: WalkSkip) -> None:
        kind = entry.extension or "(no extension)"
        self.report.files_skipped += 1
        self.report.skipped_types[kind] = self.report.skipped_types.get(kind, 0) + 1

    def _fail(self, path: str | Path, reason: str) -> None:
        self.report.files_failed += 1
        self.report.failures.append(FileFailure(printable_path(path), reason))


def _weight(item: Walked | FileWork) -> int:
    return item.weight if isinstance(item, FileWork) else 1


def _relative(path: str, root: Path) -> str:
    base = root if root.is_dir() else root.parent
    return Path(os.path.relpath(path, base)).as_posix()
