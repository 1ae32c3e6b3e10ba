"""EmbeddingGemma's spread-out regulariser (a global orthogonal regularisation, GOR).

    L_S = 1/(B(B-1)) Σ_{i≠j} (q̂_i·q̂_j)²  +  1/(B(B-1)) Σ_{i≠j} (p̂_i·p̂_j)²

over the batch's queries ``q`` and positives ``p`` (unit-normalised). It pushes unrelated texts
towards orthogonality, so the embedding space is used evenly; that keeps retrieval working after
quantisation or Matryoshka truncation (arXiv:2509.20354, §3.2).

Why not sentence-transformers' ``GlobalOrthogonalRegularizationLoss(mean_weight=0.0,
aggregation="sum")``: its second-moment term is ``relu(M₂ − 1/d)``, the original GOR paper's
hinge, not ``M₂``; below ``1/d`` it gives no value and no gradient, and it also regularises the
negative columns. The test suite shows both differences on hand-made embeddings.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SpreadOutLoss", "spread_out_term"]


def spread_out_term(embeddings: Tensor) -> Tensor:
    """Mean over i≠j of (ê_i·ê_j)²; 0 for a batch of one."""
    batch = embeddings.size(0)
    if batch < 2:
        return embeddings.sum() * 0.0
    unit = F.normalize(embeddings, p=2, dim=-1)
    sims = unit @ unit.T
    off_diagonal = ~torch.eye(batch, dtype=torch.bool, device=sims.device)
    return sims[off_diagonal].pow(2).mean()


class SpreadOutLoss(nn.Module):
    """Spread-out regulariser on the query and positive columns of a batch."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None
    ) -> Tensor:
        from sentence_transformers.base.losses.merged_forward import embed_columns

        return self.compute_loss_from_embeddings(embed_columns(self.model, sentence_features))

    def compute_loss_from_embeddings(self, embeddings: list[Tensor]) -> Tensor:
        terms = [spread_out_term(column) for column in embeddings[:2]]
        return torch.stack(terms).sum()

    def get_config_dict(self) -> dict[str, Any]:
        return {"columns": ["query", "positive"], "similarity": "cosine", "term": "mean (q·q)^2"}
