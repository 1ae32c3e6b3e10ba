"""Train a SPLADE model with sentence-transformers' sparse trainer, on the dense run's data.

The rows are the same (query, positive, negative_1..n) tuples the dense encoder trains on. The
objective is SPLADE's: a sparse InfoNCE over in-batch and mined negatives on the raw dot
product (SPLADE scores are unnormalised term-weight overlaps, so the scale is 1, not 1 / 0.05),
plus FLOPS regularisers on the query and document vectors. The regularisers are what keep the
vectors sparse: without them the contrastive term alone is free to light up the whole
vocabulary, and an inverted index over dense rows is slower than a dense index.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragkit.errors import ConfigError, MissingDependencyError
from ragkit.training.pairs import Pair
from ragkit.training.trainer import (
    TrainRun,
    dataset_from_pairs,
    finished_run,
    run_trainer,
    trainer_arguments,
)

if TYPE_CHECKING:
    from ragkit.encoders.sparse import SpladeEncoder

__all__ = ["SparseTrainConfig", "build_splade_loss", "train_sparse_encoder"]

ProgressCallback = Callable[[str, int], None]


@dataclass(kw_only=True)
class SparseTrainConfig:
    epochs: float = 1.0
    batch_size: int = 64  # as the dense default: the CLI gives both the same --batch-size
    learning_rate: float = 2e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_seq_length: int | None = 128
    # SparseMultipleNegativesRankingLoss multiplies dot products by 1 / temperature
    temperature: float = 1.0
    alpha: float = 0.0  # hardness weighting of the mined negatives, as in the dense loss
    # FLOPS weights: sentence-transformers' SPLADE recipes use these magnitudes
    query_regularizer_weight: float = 5e-5
    document_regularizer_weight: float = 3e-5
    device: str | None = None  # None: CUDA when present, else CPU
    precision: str = "auto"
    logging_steps: int = 10

    def validate(self) -> None:
        if self.epochs <= 0 or self.batch_size < 2 or self.learning_rate <= 0:
            raise ConfigError(
                "sparse training needs epochs > 0, batch_size >= 2 (in-batch negatives) and lr > 0"
            )
        if self.temperature <= 0 or self.alpha < 0:
            raise ConfigError("sparse training needs temperature > 0 and alpha >= 0")
        if self.query_regularizer_weight < 0 or self.document_regularizer_weight < 0:
            raise ConfigError(
                "the FLOPS regulariser weights must be >= 0 (0 switches one off; the vectors "
                "then grow denser as training goes on)"
            )


def build_splade_loss(model: Any, config: SparseTrainConfig) -> Any:
    """``SpladeLoss(SparseMultipleNegativesRankingLoss)`` with FLOPS on queries and documents."""
    from sentence_transformers.sparse_encoder import losses

    inner = losses.SparseMultipleNegativesRankingLoss(
        model,
        scale=1.0 / config.temperature,
        hardness_mode="hard_negatives" if config.alpha > 0 else None,
        hardness_strength=config.alpha,
    )
    return losses.SpladeLoss(
        model,
        loss=inner,
        document_regularizer_weight=config.document_regularizer_weight,
        query_regularizer_weight=config.query_regularizer_weight,
    )


def train_sparse_encoder(
    base: SpladeEncoder,
    pairs: Sequence[Pair],
    config: SparseTrainConfig,
    output_dir: str | Path,
    *,
    seed: int = 0,
    progress: ProgressCallback | None = None,
) -> TrainRun:
    """Fine-tune a copy of ``base.model``; the base is left untouched for the "before" side."""
    try:
        from sentence_transformers.sparse_encoder import (
            SparseEncoderTrainer,
            SparseEncoderTrainingArguments,
        )
        from transformers import set_seed
    except ImportError as exc:  # datasets / accelerate come with the [train] extra
        raise MissingDependencyError(
            "sentence-transformers[train]", "train", "Fine-tuning"
        ) from exc

    config.validate()

    set_seed(seed)
    model = copy.deepcopy(base.model)
    original_length = model.max_seq_length
    if config.max_seq_length:
        model.max_seq_length = config.max_seq_length
    loss = build_splade_loss(model, config)
    dataset, columns = dataset_from_pairs(pairs, None)
    common, dtype = trainer_arguments(config, Path(output_dir), seed)
    # A model with separate query and document paths (a Router) is told which column is which.
    routed = any(type(m).__name__ == "Router" for m in model.children())
    mapping = {c: ("query" if c == "anchor" else "document") for c in columns}
    args = SparseEncoderTrainingArguments(
        **common,
        router_mapping=mapping if routed else {},
        save_strategy="no",  # one run, one model: nothing to choose among
    )
    trainer, result, seconds = run_trainer(
        SparseEncoderTrainer, model, args, dataset, loss, progress, kind="sparse-train"
    )
    model.max_seq_length = original_length
    return finished_run(model, trainer, result, seconds, loss, seed, dtype, [])
