"""One exception hierarchy: every error a user can see derives from :class:`RagkitError`.

Messages say what happened, to which file/collection/value, and what to do about it.
"""

from __future__ import annotations

__all__ = [
    "AliasConflictWarning",
    "AliasSyncWarning",
    "ConfigError",
    "ConnectorError",
    "DegradedSearchWarning",
    "EncoderMismatchError",
    "IndexCorruptError",
    "MissingDependencyError",
    "RagkitError",
    "StoreDamagedError",
    "WorkspaceError",
    "WorkspaceLockedError",
]


class RagkitError(Exception):
    """Base of every error ragkit raises on purpose."""


class ConfigError(RagkitError):
    """A configuration value is missing or invalid."""


class WorkspaceError(RagkitError):
    """The workspace on disk is missing, unreadable or inconsistent."""


class WorkspaceLockedError(WorkspaceError):
    """Another process holds the workspace's writer lock."""


class MigrationRefusedError(WorkspaceError):
    """A migration step refused on purpose (an incomplete or inconsistent shadow, a gate the
    new collection failed, an adapter below its threshold); the message has the figures."""


class ConnectorError(RagkitError):
    """A source file could not be read or parsed; the batch goes on without it."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class EncoderMismatchError(RagkitError):
    """A query encoder does not match the encoder a collection was built with."""


class IndexCorruptError(RagkitError):
    """An index file on disk is missing or unreadable; it can be rebuilt from the store."""


class MissingDependencyError(RagkitError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the package {package!r}, which is not installed. "
            f"Install it with: pip install 'ragkit[{extra}]'"
        )
        self.package = package
        self.extra = extra


class StoreDamagedError(WorkspaceError):
    """``store.sqlite`` is unreadable, truncated or missing beside index files: restore it."""


class DegradedSearchWarning(UserWarning):
    """A query was answered with less than asked for (a hybrid query by its dense channel
    alone, because the sparse index is damaged); the message says what to repair."""


class AliasSyncWarning(UserWarning):
    """The store's aliases moved but an engine's aliases (Qdrant) could not follow yet; the
    message says when they will."""


class AliasConflictWarning(UserWarning):
    """A Qdrant alias this workspace mirrors points at another workspace's collection, so it
    was left alone; the message names both collections and the prefix setting to use."""
