"""``[index] qdrant_sparse``: the collection's sparse channel, also held by its Qdrant points.

The channel's own index (a ``sparse.g….`` file) stays the record: it is what a commit saves
and what ``ragkit doctor`` checks. The writer copies its vectors into the sparse named vector
of the Qdrant collection, so that a hybrid query can be answered by Qdrant alone (prefetch on
both vectors, fused by RRF or DBSF in one request, ``[fusion] server_side``).

What is copied at each commit: the new points' vectors (SPLADE: a chunk's vector never
changes), or every point's when all of them changed (BM25, whose weights follow the whole
corpus; a dense rebuild, which recreates the points; a rebuilt sparse index; a reconcile that
repaired points after a crash). Qdrant is written before the store transaction commits, like
the dense vectors, so a commit that rolls back is followed by a reconcile and a full copy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ragkit.errors import ConfigError
from ragkit.indexes import HoldsSparseVectors
from ragkit.sparse_channel import ExportsSparseVectors, SparseChannel

__all__ = ["SparseMirror"]


class SparseMirror:
    """Keeps one Qdrant index's sparse vectors equal to a sparse channel's index."""

    def __init__(self, index: Any, channel: ExportsSparseVectors, *, in_step: bool) -> None:
        """``in_step``: Qdrant holds the committed sparse vectors already; otherwise the next
        :meth:`write` copies every point's."""
        self.index = index
        self.channel = channel
        self._pending: set[int] | None = set() if in_step else None  # None: every point

    @classmethod
    def attach(
        cls, collection: Any, index: Any, channel: SparseChannel | None, *, in_step: bool
    ) -> SparseMirror | None:
        """The mirror a writer of ``collection`` keeps, if its spec asks for one."""
        if not collection.index_config.qdrant_sparse or channel is None:
            return None
        if not isinstance(index, HoldsSparseVectors):
            raise ConfigError(
                f"collection {collection.name!r}: index.qdrant_sparse needs a backend whose "
                f"points hold a sparse vector (qdrant, qdrant-edge), not "
                f"{collection.index_config.backend!r}; switch it off or migrate the collection"
            )
        if not isinstance(channel, ExportsSparseVectors):
            raise ConfigError(
                f"collection {collection.name!r}: its sparse channel {channel.kind!r} cannot "
                "give its vectors to Qdrant; switch index.qdrant_sparse off"
            )
        return cls(index, channel, in_step=in_step)

    def changed(self, removed: np.ndarray, added: np.ndarray) -> None:
        """Points were removed (with their sparse vectors) and ``added`` were written."""
        if self._pending is None:
            return
        if self.channel.corpus_wide and (len(removed) or len(added)):
            self._pending = None
        else:
            self._pending.update(int(i) for i in added)

    def again(self, ids: np.ndarray) -> None:
        """Copy these points' vectors at the next :meth:`write` though they did not change:
        Qdrant lost or garbled them (``ragkit doctor --repair``)."""
        if self._pending is not None:
            self._pending.update(int(i) for i in ids)

    def everything(self) -> None:
        """Copy every point's vector at the next :meth:`write`."""
        self._pending = None

    def write(self, sparse_index: Any) -> int:
        """Copy what changed from ``sparse_index`` (the channel's index, as committed now);
        returns how many points were written."""
        if self._pending is not None and not self._pending:
            return 0
        wanted = None if self._pending is None else np.array(sorted(self._pending), np.int64)
        ids, rows = self.channel.document_vectors(sparse_index, wanted)
        # Only points that exist: a sparse vector alone would make a point without a dense
        # vector (a shadow still being backfilled holds fewer points than chunks).
        keep = np.isin(ids, self.index.ids()) if wanted is None else np.isin(ids, wanted)
        keep &= np.diff(rows.indptr) > 0  # a text of stopwords only has nothing to match
        if keep.any():
            self.index.add_sparse(ids[keep], rows[np.flatnonzero(keep)])
        self._pending = set()
        return int(keep.sum())
