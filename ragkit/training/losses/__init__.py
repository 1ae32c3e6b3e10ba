"""Training losses, one per file, shaped like sentence-transformers' (``forward``, config dict).

``build_loss`` composes them: hardness-weighted InfoNCE (reused from sentence-transformers),
our spread-out regulariser, optional embedding distillation (reused), and optional Matryoshka
training at several truncated dimensions (sentence-transformers' ``MatryoshkaLoss``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ragkit.errors import ConfigError
from ragkit.training.losses.combined import RetrievalLoss
from ragkit.training.losses.distillation import (
    DISTANCES,
    distillation_loss,
    teacher_embeddings,
)
from ragkit.training.losses.spread_out import SpreadOutLoss, spread_out_term
from ragkit.training.losses.weighted_infonce import weighted_infonce_loss

__all__ = [
    "DISTANCES",
    "RetrievalLoss",
    "SpreadOutLoss",
    "build_loss",
    "distillation_loss",
    "spread_out_term",
    "teacher_embeddings",
    "weighted_infonce_loss",
]


def build_loss(
    model: Any,
    *,
    temperature: float = 0.05,
    alpha: float = 5.0,
    spread_out_weight: float = 0.0,
    matryoshka_dims: Sequence[int] = (),
    distillation_weight: float = 0.0,
    distillation_distance: str = "cosine",
    teacher_dim: int | None = None,
) -> Any:
    """The training objective for ``model`` (see :class:`RetrievalLoss`)."""
    if spread_out_weight < 0 or distillation_weight < 0:
        raise ConfigError("loss weights must be >= 0")
    distill = None
    if distillation_weight > 0:
        if matryoshka_dims and teacher_dim and teacher_dim != model.get_embedding_dimension():
            raise ConfigError(
                f"Matryoshka training truncates the teacher's embeddings too, so the teacher "
                f"must have the student's dimension ({model.get_embedding_dimension()}), not "
                f"{teacher_dim}; drop --matryoshka-dims or pick a teacher of that dimension"
            )
        distill = distillation_loss(model, distance=distillation_distance, teacher_dim=teacher_dim)
    loss = RetrievalLoss(
        model,
        infonce=weighted_infonce_loss(model, temperature=temperature, alpha=alpha),
        spread_out_weight=spread_out_weight,
        distillation=distill,
        distillation_weight=distillation_weight,
    )
    if not matryoshka_dims:
        return loss
    from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss

    full = model.get_embedding_dimension()
    dims = sorted({int(d) for d in matryoshka_dims}, reverse=True)
    if any(d <= 0 or (full and d > full) for d in dims):
        raise ConfigError(
            f"matryoshka dims {dims} must be between 1 and the model's dimension ({full})"
        )
    if full and full not in dims:
        dims.insert(0, full)  # the full dimension is what the index uses by default
    return MatryoshkaLoss(model, loss, dims)
