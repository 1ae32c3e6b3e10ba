"""InfoNCE over in-batch and mined hard negatives, with EmbeddingGemma's hardness weighting.

For query ``q_i``, its positive ``p_i`` and its own mined negatives ``n_ik`` the loss is

    -log  exp(s(q_i, p_i)/τ) / ( Σ_j exp(s(q_i, p_j)/τ)
                                 + Σ_{j≠i,k} exp(s(q_i, n_jk)/τ)
                                 + Σ_k w_ik · exp(s(q_i, n_ik)/τ) )

with ``s`` the cosine similarity and ``w_ik = exp(α · stopgrad(s(q_i, n_ik)))`` (α = 5 in
EmbeddingGemma, arXiv:2509.20354): the harder a query's own negative, the more it weighs in the
denominator, so the gradient concentrates on the confusions that matter. α = 0 is plain InfoNCE.

sentence-transformers' ``MultipleNegativesRankingLoss(hardness_mode="hard_negatives")`` computes
exactly this (its logit for an own hard negative is ``s/τ + α·stopgrad(s)``, and
``exp(s/τ + α·sg(s)) = w · exp(s/τ)``), which ``tests/test_training_losses.py`` checks against
an independent formula, so we configure it instead of keeping a copy. Other queries' negatives
stay in the denominator unweighted, as ordinary in-batch negatives.

Variants, all the same sentence-transformers loss with other ``directions``:

- ``infonce``: the query → document softmax above.
- ``symmetric``: the mean of that and a document → query softmax (each positive must also pick
  its own query among the batch's queries); ``partition_mode="per_direction"``.
- ``bidirectional``: GTE's improved contrastive loss (arXiv:2308.03281): one softmax whose
  denominator also holds the other queries (q_i·q_j), the positive against the other queries
  (p_i·q_j) and against the other documents (p_i·d_j) — more negatives per row for free.

``cached=True`` gives ``CachedMultipleNegativesRankingLoss`` (GradCache, arXiv:2101.06983): the
same loss value and gradients, computed in mini-batches, so a batch of 512 costs the memory of
one mini-batch. It supports the same directions and hardness weighting, which the tests check.
"""

from __future__ import annotations

from typing import Any

from ragkit.errors import ConfigError

__all__ = ["INFONCE_VARIANTS", "weighted_infonce_loss"]

#: variant name -> (directions, partition mode) of sentence-transformers' MNRL
INFONCE_VARIANTS: dict[str, tuple[tuple[str, ...], str]] = {
    "infonce": (("query_to_doc",), "joint"),
    "symmetric": (("query_to_doc", "doc_to_query"), "per_direction"),
    "bidirectional": (("query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc"), "joint"),
}


def weighted_infonce_loss(
    model: Any,
    *,
    temperature: float = 0.05,
    alpha: float = 5.0,
    variant: str = "infonce",
    cached: bool = False,
    mini_batch_size: int = 64,
) -> Any:
    """A (cached) ``MultipleNegativesRankingLoss`` computing the variant (see module doc)."""
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        MultipleNegativesRankingLoss,
    )

    if not temperature > 0:
        raise ConfigError(f"temperature must be > 0 (got {temperature}); 0.05 is a usual value")
    if alpha < 0:
        raise ConfigError(f"alpha (hardness weighting) must be >= 0 (got {alpha}); 0 disables it")
    if variant not in INFONCE_VARIANTS:
        raise ConfigError(f"loss {variant!r} is unknown; use one of {sorted(INFONCE_VARIANTS)}")
    directions, partition = INFONCE_VARIANTS[variant]
    options: dict[str, Any] = {
        "scale": 1.0 / temperature,
        "directions": directions,
        "partition_mode": partition,
        "hardness_mode": "hard_negatives" if alpha > 0 else None,
        "hardness_strength": float(alpha),
    }
    if not cached:
        return MultipleNegativesRankingLoss(model, **options)
    if mini_batch_size < 1:
        raise ConfigError(f"mini_batch_size must be >= 1 (got {mini_batch_size})")
    try:
        return CachedMultipleNegativesRankingLoss(model, mini_batch_size=mini_batch_size, **options)
    except ValueError as exc:  # a static (bag-of-words) model has no batch axis to split
        raise ConfigError(
            f"--cached needs a transformer encoder; this one cannot be split into mini-batches "
            f"({exc}); a static model is cheap enough to train without it"
        ) from exc
