"""The index_checksums table: a digest of each committed index file, kept in the store.

A flipped byte in a FAISS file still loads and still holds the right ids, so only a digest
taken when the file was written tells it apart. The digest is recorded in the same transaction
that commits the file's generation; ``ragkit doctor`` compares it and ``--repair`` rebuilds a
file that no longer matches. A mixin of :class:`ragkit.store.Store` (schema version 2).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

__all__ = ["IndexChecksums", "file_digest"]


def file_digest(path: Path) -> tuple[str, int]:
    """(blake2b hex, size) of a file, read in 1 MiB blocks."""
    digest = hashlib.blake2b(digest_size=16)
    size = 0
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


class IndexChecksums:
    if TYPE_CHECKING:  # provided by Store
        schema_version: int

        def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]: ...

        def _exec(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor: ...

    def set_index_checksums(
        self, collection: str, generation: int, digests: dict[str, tuple[str, int]]
    ) -> None:
        """``{file name: (digest, size)}`` of a generation being committed; replaces the
        collection's older rows. Call in the commit's transaction (a no-op before schema 2)."""
        if self.schema_version < 2:
            return
        self._exec("DELETE FROM index_checksums WHERE collection=?", (collection,))
        for name, (digest, size) in digests.items():
            self._exec(
                "INSERT INTO index_checksums(collection, file, generation, digest, size)"
                " VALUES(?,?,?,?,?)",
                (collection, name, generation, digest, size),
            )

    def index_checksums(self, collection: str, generation: int) -> dict[str, tuple[str, int]]:
        """What :meth:`set_index_checksums` recorded for that generation (empty when none)."""
        if self.schema_version < 2:
            return {}
        rows = self._query(
            "SELECT file, digest, size FROM index_checksums WHERE collection=? AND generation=?",
            (collection, generation),
        )
        return {name: (digest, size) for name, digest, size in rows}
