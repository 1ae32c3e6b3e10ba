"""Hardness-weighted InfoNCE whose in-batch false negatives a teacher removes (GISTEmbed-style).

In a batch of 256 texts from one corpus, another row's positive is often a fine answer to this
row's query too (two near-identical package descriptions). InfoNCE then pushes the query away
from a correct answer. GISTEmbed (arXiv:2402.16829) asks a guide model: a candidate the guide
scores above the row's own positive (less ``margin``) is a likely false negative, so it leaves the
denominator (its logit becomes −∞). Everything else is :mod:`weighted_infonce` unchanged.

Unlike sentence-transformers' ``GISTEmbedLoss``, the guide's embeddings are not computed per step
but read from the row's ``label`` (computed once before training, as for distillation), so the
guide costs no forward pass per step, may have any dimension (its scores are only compared with
its own scores), and the hardness weighting of the default recipe is kept.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["GuidedInfoNCELoss", "candidate_scores", "teacher_columns"]


def teacher_columns(labels: Tensor | None) -> list[Tensor]:
    """The teacher's per-column embeddings from a (rows, columns, dim) label tensor."""
    if labels is None or labels.dim() != 3:
        raise ValueError(
            "a teacher term needs the teacher's embeddings as a (rows, columns, dim) label"
        )
    return [labels[:, i].detach() for i in range(labels.size(1))]


def candidate_scores(embeddings: list[Tensor]) -> Tensor:
    """Cosine of each query with every positive and negative of the batch, (B, B × columns)."""
    queries = F.normalize(embeddings[0], p=2, dim=-1)
    documents = F.normalize(torch.cat(embeddings[1:], dim=0), p=2, dim=-1)
    return queries @ documents.T


def own_columns(batch: int, documents: int, device: torch.device) -> Tensor:
    """True where column j is row i's own positive or own negative."""
    eye = torch.eye(batch, dtype=torch.bool, device=device)
    return eye.repeat(1, documents)


class GuidedInfoNCELoss(nn.Module):
    """InfoNCE (hardness-weighted) with teacher-flagged false negatives masked out."""

    def __init__(
        self, model: Any, *, temperature: float = 0.05, alpha: float = 5.0, margin: float = 0.0
    ) -> None:
        super().__init__()
        self.model = model
        self.temperature = float(temperature)
        self.alpha = float(alpha)
        self.margin = float(margin)

    def forward(
        self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None
    ) -> Tensor:
        from sentence_transformers.base.losses.merged_forward import embed_columns

        return self.compute_loss_from_embeddings(
            embed_columns(self.model, sentence_features), labels
        )

    def false_negatives(self, teacher: list[Tensor]) -> Tensor:
        """(B, B × columns) mask of candidates the teacher scores above the positive − margin."""
        scores = candidate_scores(teacher)
        rows = torch.arange(scores.size(0), device=scores.device)
        positive = scores[rows, rows]
        mask = scores > (positive - self.margin)[:, None]
        mask[rows, rows] = False
        return mask

    def compute_loss_from_embeddings(
        self, embeddings: list[Tensor], labels: Tensor | None
    ) -> Tensor:
        sims = candidate_scores(embeddings)
        batch = sims.size(0)
        rows = torch.arange(batch, device=sims.device)
        logits = sims / self.temperature
        if self.alpha > 0:
            hard = own_columns(batch, len(embeddings) - 1, sims.device)
            hard[:, :batch] = False  # the positives are not weighted, only own hard negatives
            logits = logits + self.alpha * sims.detach() * hard
        mask = self.false_negatives(teacher_columns(labels)[: len(embeddings)])
        logits = logits.masked_fill(mask, float("-inf"))
        return F.cross_entropy(logits, rows)

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "hardness_strength": self.alpha,
            "margin": self.margin,
            "guide": "teacher embeddings (label column)",
        }
