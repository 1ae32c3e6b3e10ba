"""One training objective: hardness-weighted InfoNCE + λ·spread-out [+ μ·distillation].

The InfoNCE term may be teacher-guided and the distillation term may match embeddings or score
distributions; each term that needs the teacher reads its embeddings from the ``label`` column.

The texts of a batch go through the model once and every term reads the same embeddings, so the
regularisers cost no extra forward pass. Wrapped in sentence-transformers' ``MatryoshkaLoss``,
the whole objective is computed again on each truncated (re-normalised) dimension.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import Tensor, nn

from ragkit.training.losses.guided_infonce import teacher_columns
from ragkit.training.losses.score_distillation import ScoreDistillationLoss
from ragkit.training.losses.spread_out import SpreadOutLoss

__all__ = ["RetrievalLoss"]


class RetrievalLoss(nn.Module):
    def __init__(
        self,
        model: Any,
        *,
        infonce: nn.Module,
        spread_out_weight: float = 0.0,
        distillation: nn.Module | None = None,
        distillation_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.model = model
        self.infonce = infonce
        self.spread_out = SpreadOutLoss(model) if spread_out_weight > 0 else None
        self.spread_out_weight = float(spread_out_weight)
        self.distillation = distillation
        self.distillation_weight = float(distillation_weight)

    def forward(
        self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None
    ) -> Tensor:
        from sentence_transformers.base.losses.merged_forward import embed_columns

        embeddings = embed_columns(self.model, sentence_features)
        return self.compute_loss_from_embeddings(embeddings, labels)

    def compute_loss_from_embeddings(
        self, embeddings: list[Tensor], labels: Tensor | None
    ) -> Tensor:
        loss = self.infonce.compute_loss_from_embeddings(embeddings, labels)  # MNRL ignores labels
        if self.spread_out is not None:
            loss = loss + self.spread_out_weight * self.spread_out.compute_loss_from_embeddings(
                embeddings
            )
        if self.distillation is not None:
            teacher: Any = teacher_columns(labels)
            if isinstance(self.distillation, ScoreDistillationLoss):
                teacher = labels  # it reads the columns itself
            loss = loss + self.distillation_weight * self.distillation.compute_loss_from_embeddings(
                embeddings, teacher
            )
        return loss

    def get_config_dict(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "infonce": {"loss": type(self.infonce).__name__, **self.infonce.get_config_dict()},
            "spread_out_weight": self.spread_out_weight,
        }
        if self.distillation is not None:
            config["distillation"] = {
                "loss": type(self.distillation).__name__,
                **self.distillation.get_config_dict(),
            }
            config["distillation_weight"] = self.distillation_weight
        return config

    @property
    def citation(self) -> str:
        return (
            "@misc{vera2025embeddinggemma, title={EmbeddingGemma: Powerful and Lightweight Text "
            "Representations}, author={Henrique Schechter Vera and others}, year={2025}, "
            "eprint={2509.20354}, archivePrefix={arXiv}}"
        )
