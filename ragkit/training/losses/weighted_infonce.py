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
"""

from __future__ import annotations

from typing import Any

from ragkit.errors import ConfigError

__all__ = ["weighted_infonce_loss"]


def weighted_infonce_loss(model: Any, *, temperature: float = 0.05, alpha: float = 5.0) -> Any:
    """A ``MultipleNegativesRankingLoss`` computing hardness-weighted InfoNCE (see module doc)."""
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    if not temperature > 0:
        raise ConfigError(f"temperature must be > 0 (got {temperature}); 0.05 is a usual value")
    if alpha < 0:
        raise ConfigError(f"alpha (hardness weighting) must be >= 0 (got {alpha}); 0 disables it")
    return MultipleNegativesRankingLoss(
        model,
        scale=1.0 / temperature,
        hardness_mode="hard_negatives" if alpha > 0 else None,
        hardness_strength=float(alpha),
    )
