"""Embedding-matching distillation: pull the student's embeddings towards a teacher's.

Each text column (query, positive, negatives) of a training row carries the teacher's embedding of
that text in the row's ``label`` column, computed once before training (a teacher forward per
step would double the cost). sentence-transformers' ``EmbedDistillLoss`` computes exactly the
per-column ``1 − cos`` (or MSE) matching we want, with an optional learned projection when the
teacher's dimension differs, so we reuse it and only add the precomputation here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ragkit.errors import ConfigError

__all__ = ["DISTANCES", "distillation_loss", "teacher_embeddings"]

DISTANCES = ("cosine", "mse", "l2")


def distillation_loss(
    model: Any, *, distance: str = "cosine", teacher_dim: int | None = None
) -> Any:
    """``EmbedDistillLoss`` for a teacher of ``teacher_dim`` (a projection when it differs)."""
    from sentence_transformers.sentence_transformer.losses import EmbedDistillLoss

    if distance not in DISTANCES:
        raise ConfigError(f"distillation distance {distance!r} is unknown; use one of {DISTANCES}")
    student_dim = model.get_embedding_dimension()
    projection = teacher_dim if teacher_dim and teacher_dim != student_dim else None
    return EmbedDistillLoss(model, distance_metric=distance, projection_dim=projection)


def teacher_embeddings(
    teacher: Any, columns: Sequence[Sequence[str]], *, kinds: Sequence[str]
) -> np.ndarray:
    """Embeddings of every text column, shape (rows, columns, dim), for the ``label`` column.

    ``teacher`` is a :class:`ragkit.encoders.DenseEncoder`, so its own query and document prompts
    are used; ``kinds`` says per column whether it holds ``"query"`` or ``"document"`` texts.
    Repeated texts (a popular hard negative) are encoded once.
    """
    if len(columns) != len(kinds):
        raise ValueError("one kind per column")
    out = []
    for texts, kind in zip(columns, kinds, strict=True):
        unique = list(dict.fromkeys(texts))
        encode = teacher.encode_queries if kind == "query" else teacher.encode_documents
        vectors = encode(unique)
        index = {text: i for i, text in enumerate(unique)}
        out.append(vectors[[index[t] for t in texts]])
    return np.stack(out, axis=1).astype(np.float32)
