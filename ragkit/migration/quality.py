"""How well an adapter serves, two ways.

- :func:`relative_recall` (the serving gate, as Drift-Adapter reports it): recall@k of the
  relevant items when the old index is searched with adapted queries, divided by the recall@k
  the new model reaches on the new index. 1.0 means the adapter keeps all of the new model's
  retrieval quality while the backfill runs.
- :func:`adapter_recall` (agreement): the share of the new index's own top-k that the adapted
  search finds. Bounded by how much the two models' rankings agree at all, so two models that
  rank differently (a fine-tuned one that moved the ranking on purpose) score low however good
  the map; reported beside the gate, not used for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ragkit.errors import ConfigError

if TYPE_CHECKING:
    from ragkit.migration.adapters import QueryAdapter

__all__ = ["adapter_recall", "relative_recall", "split_holdout"]

#: scores held at once by :func:`adapter_recall`: 16M float32 = 64 MB per score block
_SCORE_BLOCK = 1 << 24


def adapter_recall(
    adapter: QueryAdapter,
    *,
    queries_new: np.ndarray,
    docs_new: np.ndarray,
    docs_old: np.ndarray,
    k: int = 10,
) -> float:
    """Mean ``|native ∩ served| / k`` over the queries, by exact inner-product search.

    ``native`` is the top ``k`` of ``docs_new`` for the query as the new model encodes it,
    ``served`` the top ``k`` of ``docs_old`` for ``adapter(query)``; row ``i`` of ``docs_new``
    and ``docs_old`` is the same item.
    """
    queries = np.ascontiguousarray(queries_new, dtype=np.float32)
    docs_new = np.ascontiguousarray(docs_new, dtype=np.float32)
    docs_old = np.ascontiguousarray(docs_old, dtype=np.float32)
    if queries.ndim != 2 or docs_new.ndim != 2 or docs_old.ndim != 2:
        raise ConfigError("queries_new, docs_new and docs_old must be 2-D arrays, one row each")
    if len(docs_new) != len(docs_old):
        raise ConfigError(
            f"docs_new has {len(docs_new)} rows and docs_old {len(docs_old)}: row i of both must "
            "be the same item encoded by the new and by the old encoder"
        )
    if not 1 <= k <= len(docs_new):
        raise ConfigError(f"k={k} must be between 1 and the number of documents ({len(docs_new)})")
    if len(queries) == 0:
        raise ConfigError("queries_new is empty; recall needs at least one query")
    served_queries = adapter(queries)
    rows = max(1, _SCORE_BLOCK // len(docs_new))
    found = 0
    for start in range(0, len(queries), rows):
        native = _top_k(queries[start : start + rows] @ docs_new.T, k)
        served = _top_k(served_queries[start : start + rows] @ docs_old.T, k)
        found += int((native[:, :, None] == served[:, None, :]).any(axis=2).sum())
    return found / (len(queries) * k)


def relative_recall(
    adapter: QueryAdapter,
    *,
    queries_new: np.ndarray,
    relevant: np.ndarray,
    docs_new: np.ndarray,
    docs_old: np.ndarray,
    k: int = 10,
) -> tuple[float, float, float]:
    """``(served recall@k, new model's recall@k, their ratio)``; ``relevant[i]`` is the row of
    ``docs_new``/``docs_old`` that query ``i`` should find."""
    queries = np.ascontiguousarray(queries_new, dtype=np.float32)
    relevant = np.asarray(relevant, dtype=np.int64)
    if len(relevant) != len(queries) or len(queries) == 0:
        raise ConfigError("relative_recall needs one relevant row per query, and a query")
    if len(docs_new) != len(docs_old):
        raise ConfigError("docs_new and docs_old must hold the same items, row by row")
    k = min(k, len(docs_new))
    served_queries = adapter(queries)
    rows = max(1, _SCORE_BLOCK // max(1, len(docs_new)))
    native_hits = served_hits = 0
    new_t, old_t = np.asarray(docs_new, np.float32).T, np.asarray(docs_old, np.float32).T
    for start in range(0, len(queries), rows):
        want = relevant[start : start + rows, None]
        native = _top_k(queries[start : start + rows] @ new_t, k)
        served = _top_k(served_queries[start : start + rows] @ old_t, k)
        native_hits += int((native == want).any(axis=1).sum())
        served_hits += int((served == want).any(axis=1).sum())
    served_recall, native_recall = served_hits / len(queries), native_hits / len(queries)
    ratio = served_recall / native_recall if native_recall else 0.0
    return served_recall, native_recall, ratio


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """The column indices of each row's ``k`` highest scores, in no particular order."""
    if k == scores.shape[1]:
        return np.broadcast_to(np.arange(k), scores.shape)
    return np.argpartition(-scores, k - 1, axis=1)[:, :k]


def split_holdout(n: int, fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(fit, held_out)`` sorted index arrays, a seeded shuffle of ``range(n)``.

    ``held_out`` has ``round(n * fraction)`` indices, at least one, so an adapter can be
    judged on pairs it was not fitted on.
    """
    if not 0 < fraction < 1:
        raise ConfigError(f"fraction={fraction!r} must be between 0 and 1 (e.g. 0.2)")
    if n < 2:
        raise ConfigError(f"n={n}: a split needs at least 2 pairs")
    order = np.random.default_rng(seed).permutation(n)
    held = min(n - 1, max(1, round(n * fraction)))
    return np.sort(order[held:]), np.sort(order[:held])
