"""Sources: which ones an ingest works on, listing them, and removing one.

One source per real folder, whatever the spelling. Kept apart from the ingest job because the
answer is needed twice: before the writer lock, to refuse a bad path without side effects, and
under it, where ragkit.toml is written. A source keeps the include and exclude globs it was
saved with, so a cron line or a second ``ragkit ingest docs`` without ``-x`` does not quietly
start indexing what the first one excluded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ragkit.collection import committing
from ragkit.config import SourceConfig, WorkspaceConfig
from ragkit.connectors.base import printable_path
from ragkit.errors import ConfigError
from ragkit.pipelines._runner import job
from ragkit.pipelines.ingest_commit import open_targets
from ragkit.workspace import Workspace

__all__ = [
    "DeletionGuard",
    "SourceInfo",
    "SourceRemoval",
    "list_sources",
    "refuse_missing_paths",
    "remember_sources",
    "remove_source",
    "resolve_sources",
    "saved_filter_notes",
]

DEFAULT_INCLUDE = ["**/*"]


@dataclass(frozen=True)
class DeletionGuard:
    """When a walk's deletions look like a lost mount rather than deleted files: a root that
    finds no file where the store has some (unmounted, or emptied by accident), or, with
    ``max_fraction``, one that would delete more than that share of the source's files."""

    allow_empty: bool = False
    max_fraction: float | None = None

    def refuse(self, known: int, deleting: int, found_any: bool) -> str | None:
        if not known or not deleting:
            return None
        if not found_any and not self.allow_empty:
            return (
                f"the walk found no files where the store has {known} (an unmounted or emptied "
                "folder?); pass --allow-empty to delete them all"
            )
        if self.max_fraction is not None and deleting > self.max_fraction * known:
            return (
                f"{deleting} of {known} files would be deleted, more than --max-delete-fraction "
                f"{self.max_fraction:g}; check the folder, or raise the fraction"
            )
        return None


def resolve_sources(
    workspace: Workspace,
    paths: list[str],
    include: list[str] | None,
    exclude: list[str] | None,
    follow_symlinks: bool,
) -> list[SourceConfig]:
    """The sources to ingest, without changing the config.

    A source is identified by its resolved real path: ``docs``, ``./docs/``, its absolute
    path or a spelling through a symlinked parent are one source, with one name and the same
    document ids.  A new source is named by the spelling first given (workspaces written
    before this rule are named that way too); an existing one keeps its name.
    """
    if not paths:
        if not workspace.config.sources:
            raise ConfigError(
                f"{workspace.config_path}: no sources configured; run `ragkit ingest PATH` once"
            )
        return workspace.config.sources
    known = workspace.config.sources
    sources: list[SourceConfig] = []
    for raw in paths:
        real = os.path.realpath(raw)
        existing = _source_at(known, real)
        if existing is None:
            refuse_missing_paths([raw])
        if not _is_utf8(real):
            raise ConfigError(
                f"{printable_path(real)}: a source path must be valid UTF-8 to be kept in "
                "ragkit.toml; rename the folder, or ingest a folder above it (file names below "
                "a source may be anything)"
            )
        if existing is not None:
            name = existing.name
        else:
            name = os.path.normpath(raw)
            if any(s.name == name for s in known):  # the same spelling, another folder
                name = real
        saved_include = existing.include if existing else DEFAULT_INCLUDE
        saved_exclude = existing.exclude if existing else []
        source = SourceConfig(
            path=real,
            name=name,
            include=list(include or saved_include),
            exclude=list(saved_exclude if exclude is None else exclude),
            follow_symlinks=follow_symlinks,
        )
        if all(s.name != name for s in sources):
            sources.append(source)
    return sources


def refuse_missing_paths(paths: list[str]) -> None:
    """Raise ConfigError for the first path that does not exist, before anything is written:
    a typo must not leave a workspace or a source behind."""
    for raw in paths:
        if not os.path.exists(raw):
            raise ConfigError(
                f"{printable_path(raw)}: no such file or directory; nothing was ingested and "
                "no source was added. Check the path."
            )


def saved_filter_notes(
    workspace: Workspace,
    paths: list[str],
    include: list[str] | None,
    exclude: list[str] | None,
) -> list[str]:
    """What an ingest of ``paths`` does with the globs saved for those sources, when that
    differs from what the flags alone suggest: said, so that nobody wonders why a file is
    (not) indexed."""
    notes: list[str] = []
    for raw in paths:
        source = _source_at(workspace.config.sources, os.path.realpath(raw))
        if source is None:
            continue
        for kind, flag, given, saved, default in (
            ("excludes", "-x", exclude, source.exclude, []),
            ("includes", "-i", include or None, source.include, DEFAULT_INCLUDE),
        ):
            if given is None and saved != default:
                notes.append(
                    f"using the saved {kind} of source {source.name!r} ({_globs(saved)}); "
                    f"pass {flag} to replace them"
                )
            elif given is not None and list(given) != saved:
                notes.append(
                    f"replacing the saved {kind} of source {source.name!r} ({_globs(saved)}) "
                    f"with {_globs(given)}"
                )
    return notes


def remember_sources(workspace: Workspace, sources: list[SourceConfig]) -> None:
    """Add or update the given sources in ragkit.toml; only a job holding the lock calls it."""
    config = workspace.config
    updated = [s for s in config.sources if all(s.name != new.name for new in sources)]
    merged = [*updated, *sources]
    order = [s.name for s in config.sources]
    merged.sort(key=lambda s: order.index(s.name) if s.name in order else len(order))
    if merged != config.sources:
        config.sources = merged
        config.save(workspace.config_path)


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """A source as ``ragkit sources`` shows it. ``configured``: in ragkit.toml (False for one
    only the store knows, e.g. left by a removal that was interrupted)."""

    name: str
    path: str
    include: list[str]
    exclude: list[str]
    files: int
    documents: int
    last_ingest: float | None  # when the last ingest run that walked it ended
    last_status: str | None
    configured: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}  # type: ignore[attr-defined]


def list_sources(workspace: Workspace) -> list[SourceInfo]:
    """Every source of ragkit.toml, then any the store still holds rows for."""
    store = workspace.store
    counts = _counts_by_source(workspace)
    last = _last_ingests(workspace)
    configured = {s.name: s for s in workspace.config.sources}
    out = []
    for name, root in [(s.name, s.path) for s in configured.values()] + [
        (n, r) for n, r in store.sources().items() if n not in configured
    ]:
        source = configured.get(name)
        files, documents = counts.get(name, (0, 0))
        out.append(
            SourceInfo(
                name=name,
                path=root,
                include=list(source.include) if source else [],
                exclude=list(source.exclude) if source else [],
                files=files,
                documents=documents,
                last_ingest=last.get(name, (None, None))[0],
                last_status=last.get(name, (None, None))[1],
                configured=source is not None,
            )
        )
    return out


@dataclass
class SourceRemoval:
    """What ``remove_source`` took out of the workspace."""

    name: str
    run_id: int = 0
    files: int = 0
    documents: int = 0
    chunks: int = 0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def remove_source(workspace: Workspace, name: str, *, wait: float = 0.0) -> SourceRemoval:
    """Remove source ``name``: it leaves ragkit.toml, then its files, documents and chunks
    leave the store and the indexes in one commit (the ingest commit protocol).

    The config goes first, under the writer lock: a crash between the two steps leaves
    documents that ``ragkit sources`` still lists (as not configured) and a second removal
    finishes, while a cron ``ragkit ingest`` no longer brings them back.
    """
    report = SourceRemoval(name)
    with job(workspace, "remove-source", {"name": name}, wait=wait) as run:
        report.run_id = run.run_id
        config = WorkspaceConfig.load(workspace.config_path)  # as it is now, under the lock
        store = workspace.store
        if name not in {s.name for s in config.sources} | set(store.sources()):
            known = ", ".join(repr(s.name) for s in config.sources) or "none"
            raise ConfigError(
                f"{workspace.root}: no source named {name!r} (known: {known}); "
                "`ragkit sources` lists them"
            )
        if any(s.name == name for s in config.sources):
            config.sources = [s for s in config.sources if s.name != name]
            config.save(workspace.config_path)
            workspace.config.sources = list(config.sources)
        files = sorted(store.files(name))
        # The store has no per-source query of its own; one read, inside the job.
        doc_ids = [
            row[0] for row in store._query("SELECT doc_id FROM documents WHERE source=?", (name,))
        ]
        report.files, report.documents = len(files), len(doc_ids)
        # Every building and live collection loses the source's chunks in one commit.
        targets = open_targets(workspace)
        quiet = lambda event, n: None  # noqa: E731
        prepared = {}
        for target in targets:
            if target.channel is not None:
                if target.writer.sparse_needs_rebuild:
                    target.channel.warm(store, quiet, target.chunking_fp)
                # no chunks: what ingest hands over
                prepared[target.collection.name] = target.channel.prepare([], store, quiet)
        with committing(store, [target.writer for target in targets]):
            removed = {
                t.collection.name: np.array(
                    store.chunk_ids_of_documents(doc_ids, t.chunking_fp), dtype=np.int64
                )
                for t in targets
            }
            _delete_rows(workspace, name, files, doc_ids)
            for target in targets:
                gone = removed[target.collection.name]
                no_vectors = np.zeros((0, target.collection.record.dim), dtype=np.float32)
                target.writer.apply(
                    gone,
                    np.zeros(0, dtype=np.int64),
                    no_vectors,
                    prepared.get(target.collection.name),
                )
        default = workspace.collection()  # the count the report gives: the default's chunks
        report.chunks = len(removed.get(default.name, ())) if default is not None else 0
        run.outcome(True, report.to_dict())
    return report


def _delete_rows(workspace: Workspace, name: str, files: list[str], doc_ids: list[str]) -> None:
    store = workspace.store
    store.delete_documents(doc_ids)
    for path in files:
        store.delete_file(name, path)
    store._exec("DELETE FROM sources WHERE name=?", (name,))


def _counts_by_source(workspace: Workspace) -> dict[str, tuple[int, int]]:
    query = workspace.store._query
    files = dict(query("SELECT source, COUNT(*) FROM files GROUP BY source"))
    documents = dict(query("SELECT source, COUNT(*) FROM documents GROUP BY source"))
    return {n: (files.get(n, 0), documents.get(n, 0)) for n in {*files, *documents}}


def _last_ingests(workspace: Workspace, depth: int = 500) -> dict[str, tuple[float, str]]:
    """Source name -> (end time, status) of the newest finished ingest that walked it; runs
    recorded before ingest reports named their sources are not attributed."""
    out: dict[str, tuple[float, str]] = {}
    for run in workspace.store.runs(limit=depth):
        if run["kind"] != "ingest" or run["finished"] is None:
            continue
        for name in run["stats"].get("sources", []):
            out.setdefault(name, (run["finished"], run["status"]))
    return out


def _globs(patterns: list[str]) -> str:
    return ", ".join(patterns) or "none"


def _source_at(sources: list[SourceConfig], real: str) -> SourceConfig | None:
    """The configured source whose folder is ``real``, whichever way it was spelled."""
    for source in sources:
        if os.path.realpath(source.path) == real:
            return source
    return None


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
