"""The recipe ``ragkit finetune`` runs by default is the library's.

The measured recipe (BENCHMARKS.md, "Fine-tuning") lives in ``TrainConfig``, ``MiningConfig``
and ``FinetuneConfig``; the CLI repeats the values as option defaults because it must not import
torch to build its help. These tests fail when the two drift apart.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from ragkit.cli.finetune import finetune_command
from ragkit.pipelines.finetune import FinetuneConfig
from ragkit.training import MiningConfig, TrainConfig

# CLI option → (config, field)
SAME: dict[str, tuple[Any, str]] = {
    "epochs": (TrainConfig(), "epochs"),
    "batch_size": (TrainConfig(), "batch_size"),
    "lr": (TrainConfig(), "learning_rate"),
    "warmup": (TrainConfig(), "warmup_ratio"),
    "max_seq_length": (TrainConfig(), "max_seq_length"),
    "precision": (TrainConfig(), "precision"),
    "temperature": (TrainConfig(), "temperature"),
    "alpha": (TrainConfig(), "alpha"),
    "spread_out": (TrainConfig(), "spread_out_weight"),
    "loss": (TrainConfig(), "loss"),
    "cached": (TrainConfig(), "cached"),
    "mini_batch_size": (TrainConfig(), "mini_batch_size"),
    "distill": (TrainConfig(), "distillation"),
    "distill_weight": (TrainConfig(), "distillation_weight"),
    "teacher_guided": (TrainConfig(), "teacher_guided"),
    "negatives": (MiningConfig(), "num_negatives"),
    "range_min": (MiningConfig(), "range_min"),
    "range_max": (MiningConfig(), "range_max"),
    "relative_margin": (MiningConfig(), "relative_margin"),
    "teacher": (FinetuneConfig(), "teacher"),
    "teacher_margin": (FinetuneConfig(), "teacher_negative_margin"),
}


@pytest.mark.parametrize("option", sorted(SAME))
def test_cli_default_is_the_library_default(option: str) -> None:
    config, name = SAME[option]
    cli = inspect.signature(finetune_command).parameters[option].default
    assert cli == getattr(config, name), f"--{option.replace('_', '-')} vs {name}"


def test_default_recipe_is_the_measured_one() -> None:
    """Batch 64 with one mined negative, hardness-weighted InfoNCE, bf16 where the CPU has it:
    the recipe of run H (BENCHMARKS.md), which trains all 24k debian-packages train pairs in
    about half an hour on two CPU cores."""
    train, mining = TrainConfig(), MiningConfig()
    assert (train.batch_size, mining.num_negatives) == (64, 1)
    assert (train.loss, train.alpha, train.cached, train.precision) == (
        "infonce",
        5.0,
        False,
        "auto",
    )
    assert FinetuneConfig().teacher is None
