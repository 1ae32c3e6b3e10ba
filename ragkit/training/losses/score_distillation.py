"""Distil the teacher's ranking: KL between its and the student's score distributions.

For query i the candidates are every positive and mined negative of the batch. With the
teacher's cosines ``t_ij`` and the student's ``s_ij``,

    L = 1/B Σ_i KL( softmax_j(t_ij / τ_t) ‖ softmax_j(s_ij / τ_s) )

so the student learns how much the teacher prefers each candidate, not only which one is right
(RocketQAv2, arXiv:2110.07367; sentence-transformers' ``DistillKLDivLoss`` does this over a row's
own columns only, without the in-batch candidates). Embedding matching needs a projection when
the teacher's dimension differs; scores do not, which is why this works with any teacher.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from ragkit.training.losses.guided_infonce import candidate_scores, teacher_columns

__all__ = ["ScoreDistillationLoss"]


class ScoreDistillationLoss(nn.Module):
    def __init__(
        self, model: Any, *, temperature: float = 0.05, teacher_temperature: float | None = None
    ) -> None:
        super().__init__()
        self.model = model
        self.temperature = float(temperature)
        self.teacher_temperature = float(teacher_temperature or temperature)

    def forward(
        self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None
    ) -> Tensor:
        from sentence_transformers.base.losses.merged_forward import embed_columns

        return self.compute_loss_from_embeddings(
            embed_columns(self.model, sentence_features), labels
        )

    def compute_loss_from_embeddings(
        self, embeddings: list[Tensor], labels: Tensor | None
    ) -> Tensor:
        teacher = teacher_columns(labels)[: len(embeddings)]
        student = F.log_softmax(candidate_scores(embeddings) / self.temperature, dim=1)
        target = F.log_softmax(candidate_scores(teacher) / self.teacher_temperature, dim=1)
        return F.kl_div(student, target, log_target=True, reduction="batchmean")

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "teacher_temperature": self.teacher_temperature,
            "candidates": "in-batch positives and hard negatives",
        }
