"""What an ingest reports: counts, failures and problems, as the CLI and ``--json`` show them.

Its own module because both halves of an ingest fill it: the walk (files seen, skipped,
failed) in :mod:`ragkit.pipelines.ingest` and the staging and commits (documents, chunks,
encoding) in :mod:`ragkit.pipelines.ingest_stage`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["FileFailure", "IngestReport"]


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
