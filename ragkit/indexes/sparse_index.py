"""Embedded inverted index for SPLADE (or any non-negative sparse weights), keyed by chunk ids.

The documents are stored term-major (a ``vocab × docs`` CSR matrix: row *t* is the posting list
of token *t*), so scoring a query is one sparse product that touches only the posting lists of
the query's own tokens, and a batch of queries is still a single product.

Updates stay cheap without rebuilding everything:

* ``add`` appends to a small *delta* (re-laid out from the recent rows alone) which is merged
  into the main matrix once it outgrows an eighth of it; merges are geometrically spaced, so
  ingesting 26k SPLADE documents in batches of 64 costs about two seconds in total.
* ``remove`` only clears an ``alive`` flag (a tombstone); the dead columns are dropped when they
  reach a fifth of the index, or when it is saved.
* Adding an id that is already present replaces its vector (upsert).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
from scipy import sparse

from ragkit.errors import ConfigError, IndexCorruptError
from ragkit.indexes.base import atomic_write

__all__ = ["SparseIndex", "csr_problem", "read_npz", "top_k_hits", "write_npz"]

_FORMAT = "ragkit-sparse-index"
_VERSION = 1
_MIN_DELTA = 1024  # below this many recent adds the delta is never merged
_QUERY_BLOCK = 256  # queries per sparse product: bounds the (queries × docs) result's memory


class SparseIndex:
    """Exact top-k by inner product over sparse vectors; ids are int64 chunk ids."""

    def __init__(self, vocab_size: int) -> None:
        if vocab_size <= 0:
            raise ConfigError(f"SparseIndex needs a positive vocab_size, got {vocab_size}")
        self.vocab_size = int(vocab_size)
        self._clear()

    def _clear(self) -> None:
        self._main = _empty_term_major(self.vocab_size)
        self._delta_rows: list[sparse.csr_matrix] = []  # doc-major blocks, oldest first
        self._delta = _empty_term_major(self.vocab_size)
        self._ids = np.zeros(0, dtype=np.int64)  # per column: main columns, then delta columns
        self._alive = np.zeros(0, dtype=bool)
        self._lookup: tuple[np.ndarray, np.ndarray] | None = None

    # -- protocol ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._alive.sum())

    def ids(self) -> np.ndarray:
        return self._ids[self._alive].copy()

    def add(self, ids: np.ndarray, matrix: sparse.spmatrix) -> None:
        ids = _unique_ids(ids)
        rows = self._as_documents(matrix, len(ids))
        if len(ids) == 0:
            return
        self._tombstone(ids)  # upsert: a re-added id replaces its old vector
        self._ids = np.concatenate([self._ids, ids])
        self._alive = np.concatenate([self._alive, np.ones(len(ids), dtype=bool)])
        self._delta_rows.append(rows)
        self._lookup = None
        n_delta = self._delta.shape[1] + len(ids)
        if n_delta >= max(_MIN_DELTA, self._main.shape[1] // 8):
            self._compact()
        else:
            self._delta = sparse.vstack(self._delta_rows, format="csr").T.tocsr()

    def remove(self, ids: np.ndarray) -> bool:
        """Remove ids in place (unknown ids are ignored); always True."""
        self._tombstone(_as_ids(ids))
        dead = len(self._alive) - len(self)
        if dead and dead >= max(_MIN_DELTA, len(self._alive) // 5):
            self._compact()
        return True

    def rebuild(self, ids: np.ndarray, matrix: sparse.spmatrix) -> None:
        ids = _unique_ids(ids)
        rows = self._as_documents(matrix, len(ids))
        self._clear()
        self._main = rows.T.tocsr()
        self._main.sort_indices()
        self._ids = ids.copy()
        self._alive = np.ones(len(ids), dtype=bool)

    def search(
        self,
        queries: sparse.spmatrix | np.ndarray,
        k: int,
        *,
        allowed_ids: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return (scores float32, ids int64), each (n_queries, k), best first.

        Only documents with a positive score are hits; missing slots hold score 0 and id -1.
        ``allowed_ids`` restricts the hits to that set; scores are exact, so a selective filter
        still yields k hits whenever k allowed documents match.
        """
        queries = sparse.csr_matrix(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.vocab_size:
            raise ConfigError(
                f"queries have shape {queries.shape}; this index expects width {self.vocab_size}"
            )
        if k < 0:
            raise ConfigError(f"k must be >= 0, got {k}")
        n_queries = queries.shape[0]
        out_scores = np.zeros((n_queries, k), dtype=np.float32)
        out_ids = np.full((n_queries, k), -1, dtype=np.int64)
        if k == 0 or n_queries == 0 or len(self) == 0:
            return out_scores, out_ids
        mask = self._alive if allowed_ids is None else self._alive & self._allowed(allowed_ids)
        if not mask.any():
            return out_scores, out_ids
        offset = self._main.shape[1]
        for start in range(0, n_queries, _QUERY_BLOCK):
            block = queries[start : start + _QUERY_BLOCK]
            main = (block @ self._main).tocsr()
            delta = (block @ self._delta).tocsr() if self._delta.shape[1] else None
            for row in range(block.shape[0]):
                positions, scores = _row(main, row)
                if delta is not None:
                    extra_positions, extra_scores = _row(delta, row)
                    positions = np.concatenate([positions, extra_positions + offset])
                    scores = np.concatenate([scores, extra_scores])
                keep = mask[positions] & (scores > 0)
                hit_ids = self._ids[positions[keep]]
                top_scores, top_ids = top_k_hits(scores[keep], hit_ids, k)
                out_scores[start + row, : len(top_ids)] = top_scores
                out_ids[start + row, : len(top_ids)] = top_ids
        return out_scores, out_ids

    def documents(self, ids: np.ndarray | None = None) -> tuple[np.ndarray, sparse.csr_matrix]:
        """(ids, one row of weights each) of the live documents among ``ids`` (all: None),
        so another engine (a Qdrant collection's sparse vector) can hold the same vectors."""
        self._compact()
        positions = (
            np.arange(len(self._ids))
            if ids is None
            else np.sort(self._positions_of(np.unique(_as_ids(ids))))
        )
        return self._ids[positions].copy(), self._main[:, positions].T.tocsr()

    # -- persistence ------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """Write one ``.npz`` (term-major CSR + ids) atomically; dead entries are dropped first."""
        write_npz(Path(path), self.to_arrays())

    @classmethod
    def load(cls, path: Path) -> SparseIndex:
        path = Path(path)
        return cls.from_arrays(read_npz(path, what="sparse index"), source=path)

    def to_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        """The compacted index as named arrays: what :meth:`save` writes, for embedding in
        another container's ``.npz`` (the BM25 index does) under a name ``prefix``."""
        self._compact()
        arrays = {
            "format": np.array(_FORMAT),
            "version": np.array(_VERSION, dtype=np.int64),
            "vocab_size": np.array(self.vocab_size, dtype=np.int64),
            "ids": self._ids,
            "indptr": self._main.indptr.astype(np.int64),
            "indices": self._main.indices.astype(np.int32),
            "data": self._main.data.astype(np.float32),
        }
        return {prefix + name: value for name, value in arrays.items()}

    @classmethod
    def from_arrays(
        cls, arrays: dict[str, np.ndarray], *, source: Path | str, prefix: str = ""
    ) -> SparseIndex:
        """Inverse of :meth:`to_arrays`; validates everything, since the file may be damaged."""

        def corrupt(reason: str) -> IndexCorruptError:
            return IndexCorruptError(
                f"{source}: not a valid ragkit sparse index ({reason}); rebuild it from the store "
                "(`ragkit doctor --repair`)"
            )

        needed = ["format", "version", "vocab_size", "ids", "indptr", "indices", "data"]
        if missing := [prefix + name for name in needed if prefix + name not in arrays]:
            raise corrupt(f"missing arrays {missing}")
        fmt, version, vocab_size, ids, indptr, indices, data = (
            arrays[prefix + name] for name in needed
        )
        if str(fmt) != _FORMAT or version.shape != () or int(version) != _VERSION:
            raise corrupt(f"format {fmt!s} version {version!s}")
        vocab_size = int(vocab_size)
        n_docs = len(ids)
        if vocab_size <= 0:
            raise corrupt("inconsistent matrix shape")
        problem = csr_problem(
            ids,
            indptr,
            indices,
            data,
            rows=vocab_size,
            columns=n_docs,
            matrix="matrix",
            column="document positions",
        )
        if problem:
            raise corrupt(problem)
        if not np.all(np.isfinite(data)) or (len(data) and data.min() < 0):
            raise corrupt("negative or non-finite weights")
        if len(np.unique(ids)) != n_docs:
            raise corrupt("duplicate ids")
        index = cls(vocab_size)
        index._main = sparse.csr_matrix(
            (data.astype(np.float32), indices.astype(np.int32), indptr),
            shape=(vocab_size, n_docs),
        )
        index._ids = ids.astype(np.int64)
        index._alive = np.ones(n_docs, dtype=bool)
        return index

    # -- internals --------------------------------------------------------------------------
    def _as_documents(self, matrix: sparse.spmatrix, n_ids: int) -> sparse.csr_matrix:
        rows = sparse.csr_matrix(matrix, dtype=np.float32)
        if rows.shape != (n_ids, self.vocab_size):
            raise ConfigError(
                f"got a matrix of shape {rows.shape} for {n_ids} ids; "
                f"expected ({n_ids}, {self.vocab_size})"
            )
        rows.sum_duplicates()
        rows.eliminate_zeros()
        if len(rows.data) and (rows.data.min() < 0 or not np.all(np.isfinite(rows.data))):
            raise ConfigError(
                "SparseIndex stores non-negative finite weights (SPLADE, BM25); "
                "got negative or non-finite values"
            )
        return rows

    def _positions_of(self, ids: np.ndarray) -> np.ndarray:
        """Column positions of the live entries among ``ids`` (unknown ids are skipped)."""
        if self._lookup is None:
            live = np.flatnonzero(self._alive)
            order = np.argsort(self._ids[live], kind="stable")
            self._lookup = (self._ids[live][order], live[order])
        sorted_ids, positions = self._lookup
        if len(sorted_ids) == 0 or len(ids) == 0:
            return np.zeros(0, dtype=np.int64)
        where = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
        found = sorted_ids[where] == ids
        return positions[where[found]]

    def _allowed(self, allowed_ids: np.ndarray) -> np.ndarray:
        mask = np.zeros(len(self._ids), dtype=bool)
        mask[self._positions_of(np.unique(_as_ids(allowed_ids)))] = True
        return mask

    def _tombstone(self, ids: np.ndarray) -> None:
        positions = self._positions_of(ids)
        if len(positions):
            self._alive[positions] = False
            self._lookup = None

    def _compact(self) -> None:
        """Fold the delta into the main matrix and drop dead columns: O(total nnz)."""
        if not self._delta_rows and self._alive.all():
            return
        parts = [self._main]
        if self._delta_rows:
            parts.append(sparse.vstack(self._delta_rows, format="csr").T.tocsr())
        merged = sparse.hstack(parts, format="csc") if len(parts) > 1 else parts[0].tocsc()
        if not self._alive.all():
            merged = merged[:, np.flatnonzero(self._alive)]
            self._ids = self._ids[self._alive]
        self._main = merged.tocsr()
        self._main.sort_indices()
        self._alive = np.ones(len(self._ids), dtype=bool)
        self._delta_rows = []
        self._delta = _empty_term_major(self.vocab_size)
        self._lookup = None


def top_k_hits(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best (score, id) pairs, by score descending then id ascending (deterministic)."""
    if len(scores) > k:
        # Keep everything tied with the k-th score so the id tie-break sees all candidates.
        kth = np.partition(scores, len(scores) - k)[len(scores) - k]
        chosen = np.flatnonzero(scores >= kth)
        scores, ids = scores[chosen], ids[chosen]
    order = np.lexsort((ids, -scores))[:k]
    return scores[order].astype(np.float32), ids[order].astype(np.int64)


def csr_problem(
    ids: np.ndarray,
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    *,
    rows: int,
    columns: int,
    matrix: str,
    column: str,
) -> str | None:
    """What makes CSR arrays read from a file unusable as a ``rows × columns`` matrix keyed by
    int64 ``ids`` (None: nothing); ``matrix`` and ``column`` name them in the message."""
    if (
        ids.dtype != np.int64
        or ids.ndim != 1
        or indptr.shape != (rows + 1,)
        or indices.ndim != 1
        or indices.shape != data.shape
        or indptr[0] != 0
        or indptr[-1] != len(indices)
        or np.any(np.diff(indptr) < 0)
    ):
        return f"inconsistent {matrix} shape"
    if len(indices) and (indices.min() < 0 or indices.max() >= columns):
        return f"{column} out of range"
    return None


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Save arrays as an uncompressed ``.npz`` through :func:`atomic_write` (no pickle)."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:  # a handle: np.savez would append ".npz" to a name
            np.savez(handle, **arrays)

    atomic_write(path, write)


def read_npz(path: Path, *, what: str) -> dict[str, np.ndarray]:
    """Every array of an ``.npz``; a missing or unreadable file is an :class:`IndexCorruptError`."""
    try:
        # Our own handle: np.load leaves the file open when it fails to parse it.
        with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as stored:
            return {name: stored[name] for name in stored.files}
    except FileNotFoundError as exc:
        raise IndexCorruptError(
            f"{path}: the {what} file is missing; rebuild it from the store "
            "(`ragkit doctor --repair`)"
        ) from exc
    except (OSError, ValueError, TypeError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise IndexCorruptError(
            f"{path}: cannot read the {what} ({exc}); rebuild it from the store "
            "(`ragkit doctor --repair`)"
        ) from exc


def _row(matrix: sparse.csr_matrix, row: int) -> tuple[np.ndarray, np.ndarray]:
    start, end = matrix.indptr[row], matrix.indptr[row + 1]
    return matrix.indices[start:end], matrix.data[start:end]


def _as_ids(ids: np.ndarray) -> np.ndarray:
    return np.asarray(ids, dtype=np.int64).reshape(-1)


def _unique_ids(ids: np.ndarray) -> np.ndarray:
    ids = _as_ids(ids)
    if len(np.unique(ids)) != len(ids):
        raise ConfigError("the ids given to add/rebuild repeat; each chunk id may appear once")
    return ids


def _empty_term_major(vocab_size: int) -> sparse.csr_matrix:
    return sparse.csr_matrix((vocab_size, 0), dtype=np.float32)
