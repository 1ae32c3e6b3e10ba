"""Training losses, one per file, shaped like sentence-transformers' (``forward``, config dict).

``build_loss`` composes them: hardness-weighted InfoNCE (reused from sentence-transformers; plain,
symmetric or GTE-bidirectional; cached for large batches), or its teacher-guided form that drops
in-batch false negatives; our spread-out regulariser; optional distillation of a teacher's
embeddings (reused) or of its score distribution; and optional Matryoshka training at several
truncated dimensions (sentence-transformers' ``MatryoshkaLoss``).
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
from ragkit.training.losses.guided_infonce import GuidedInfoNCELoss
from ragkit.training.losses.score_distillation import ScoreDistillationLoss
from ragkit.training.losses.spread_out import SpreadOutLoss, spread_out_term
from ragkit.training.losses.weighted_infonce import INFONCE_VARIANTS, weighted_infonce_loss

__all__ = [
    "DISTANCES",
    "DISTILLATION_KINDS",
    "INFONCE_VARIANTS",
    "GuidedInfoNCELoss",
    "RetrievalLoss",
    "ScoreDistillationLoss",
    "SpreadOutLoss",
    "build_loss",
    "distillation_loss",
    "spread_out_term",
    "teacher_embeddings",
    "weighted_infonce_loss",
]


DISTILLATION_KINDS = ("embedding", "scores", "none")


def build_loss(
    model: Any,
    *,
    temperature: float = 0.05,
    alpha: float = 5.0,
    variant: str = "infonce",
    cached: bool = False,
    mini_batch_size: int = 64,
    spread_out_weight: float = 0.0,
    matryoshka_dims: Sequence[int] = (),
    distillation_weight: float = 0.0,
    distillation_distance: str = "cosine",
    distillation: str = "embedding",
    teacher_dim: int | None = None,
    guided: bool = False,
    guide_margin: float = 0.0,
) -> Any:
    """The training objective for ``model`` (see :class:`RetrievalLoss`).

    A cached loss embeds the batch in mini-batches inside the loss itself, so the terms that read
    the whole batch's embeddings (spread-out, distillation, teacher guidance) cannot join it.
    """
    if spread_out_weight < 0 or distillation_weight < 0:
        raise ConfigError("loss weights must be >= 0")
    if distillation not in DISTILLATION_KINDS:
        raise ConfigError(f"distillation {distillation!r} is unknown; use {DISTILLATION_KINDS}")
    if guided and teacher_dim is None:
        raise ConfigError("teacher guidance (false-negative filtering) needs a teacher")
    if guided and variant != "infonce":
        raise ConfigError(f"teacher guidance works with --loss infonce, not {variant!r}")
    distilling = distillation_weight > 0 and teacher_dim is not None and distillation != "none"
    if cached:
        extras = [
            name
            for name, on in (
                ("--spread-out", spread_out_weight > 0),
                ("distillation", distilling),
                ("teacher guidance", guided),
            )
            if on
        ]
        if extras:
            raise ConfigError(
                f"--cached computes the loss in mini-batches, so {', '.join(extras)} cannot join "
                "it; drop --cached (and use a smaller --batch-size) or drop those terms"
            )
        loss = weighted_infonce_loss(
            model,
            temperature=temperature,
            alpha=alpha,
            variant=variant,
            cached=True,
            mini_batch_size=mini_batch_size,
        )
        return _matryoshka(model, loss, matryoshka_dims)
    distill = None
    if distilling and distillation == "embedding":
        if matryoshka_dims and teacher_dim and teacher_dim != model.get_embedding_dimension():
            raise ConfigError(
                f"Matryoshka training truncates the teacher's embeddings too, so the teacher "
                f"must have the student's dimension ({model.get_embedding_dimension()}), not "
                f"{teacher_dim}; drop --matryoshka-dims, pick a teacher of that dimension, or "
                "distil scores (--distill scores), which works with any dimension"
            )
        distill = distillation_loss(model, distance=distillation_distance, teacher_dim=teacher_dim)
    elif distilling:
        distill = ScoreDistillationLoss(model, temperature=temperature)
    if guided:
        infonce = GuidedInfoNCELoss(
            model, temperature=temperature, alpha=alpha, margin=guide_margin
        )
    else:
        infonce = weighted_infonce_loss(
            model, temperature=temperature, alpha=alpha, variant=variant
        )
    loss = RetrievalLoss(
        model,
        infonce=infonce,
        spread_out_weight=spread_out_weight,
        distillation=distill,
        distillation_weight=distillation_weight,
    )
    return _matryoshka(model, loss, matryoshka_dims)


def _matryoshka(model: Any, loss: Any, matryoshka_dims: Sequence[int]) -> Any:
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
