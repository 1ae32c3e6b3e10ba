"""Drop mined negatives that a teacher thinks are answers too (false negatives).

Mining takes the student's near misses, and some of them are as relevant as the labelled
positive (a corpus often holds two descriptions of one thing). Training against them teaches the
model to push correct answers away. A negative ``n`` of query ``q`` with positive ``p`` is
dropped when the teacher's cosine ``t(q, n) ≥ margin × t(q, p)`` (margin 0.95 as in NV-Retriever's
"TopK-PercPos", arXiv:2407.15831). Only the teacher's own scores are compared, so its dimension
does not matter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ragkit.training.pairs import Pair

if TYPE_CHECKING:
    from ragkit.encoders.dense import DenseEncoder

__all__ = ["drop_false_negatives"]


def drop_false_negatives(
    pairs: Sequence[Pair], teacher: DenseEncoder, *, margin: float = 0.95
) -> tuple[list[Pair], dict[str, Any]]:
    """The pairs without their teacher-flagged negatives, and counts for the run report."""
    queries = list(dict.fromkeys(p.query for p in pairs))
    documents = list(dict.fromkeys(t for p in pairs for t in (p.positive, *p.negatives)))
    q_index = {t: i for i, t in enumerate(queries)}
    d_index = {t: i for i, t in enumerate(documents)}
    q_vectors = _unit(teacher.encode_queries(queries))
    d_vectors = _unit(teacher.encode_documents(documents))
    kept: list[Pair] = []
    dropped = 0
    for pair in pairs:
        q = q_vectors[q_index[pair.query]]
        positive = float(q @ d_vectors[d_index[pair.positive]])
        keep = tuple(
            n for n in pair.negatives if float(q @ d_vectors[d_index[n]]) < margin * positive
        )
        dropped += len(pair.negatives) - len(keep)
        kept.append(replace(pair, negatives=keep) if len(keep) != len(pair.negatives) else pair)
    total = sum(len(p.negatives) for p in pairs)
    stats = {
        "margin": margin,
        "negatives": total,
        "dropped": dropped,
        "pairs_left_without_negatives": sum(1 for p in kept if not p.negatives),
    }
    return kept, stats


def _unit(vectors: Any) -> np.ndarray:
    array = np.asarray(vectors, dtype=np.float32)
    return array / np.maximum(np.linalg.norm(array, axis=1, keepdims=True), 1e-12)
