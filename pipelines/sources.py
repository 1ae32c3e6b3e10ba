"""Which sources an ingest works on: one source per real folder, whatever the spelling.

Kept apart from the ingest job because the answer is needed twice: before the writer lock, to
refuse a bad path without side effects, and under it, where ragkit.toml is written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ragkit.config import SourceConfig
from ragkit.connectors.base import printable_path
from ragkit.errors import ConfigError
from ragkit.workspace import Workspace

__all__ = ["DeletionGuard", "remember_sources", "resolve_sources"]


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
        if existing is None and not os.path.exists(raw):
            raise ConfigError(
                f"{printable_path(raw)}: no such file or directory; nothing was ingested and "
                "no source was added. Check the path."
            )
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
        source = SourceConfig(
            path=real,
            name=name,
            include=include or ["**/*"],
            exclude=exclude or [],
            follow_symlinks=follow_symlinks,
        )
        if all(s.name != name for s in sources):
            sources.append(source)
    return sources


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
