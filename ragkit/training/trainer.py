"""Train one encoder with the sentence-transformers trainer: seeded, checkpointed, CPU or CUDA.

The data are (query, positive, negative_1..n) rows; ``BatchSamplers.NO_DUPLICATES`` keeps a text
from appearing twice in a batch, since in-batch negatives that equal a row's positive would teach
the model to push a query away from its own answer.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragkit.encoders.registry import quiet_loading, resolve_precision
from ragkit.errors import ConfigError, MissingDependencyError
from ragkit.training.losses import build_loss, teacher_embeddings
from ragkit.training.pairs import Pair

if TYPE_CHECKING:
    from ragkit.encoders.dense import DenseEncoder

__all__ = [
    "TrainConfig",
    "TrainRun",
    "dataset_from_pairs",
    "describe_loss",
    "load_checkpoint",
    "progress_callback",
    "train_encoder",
]

ProgressCallback = Callable[[str, int], None]


@dataclass(kw_only=True)
class TrainConfig:
    epochs: float = 1.0
    # batch 64 with one mined negative (MiningConfig): the recipe measured over debian-packages'
    # whole train split in about half an hour on 2 CPU cores (BENCHMARKS.md, run H)
    batch_size: int = 64
    learning_rate: float = 5e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_seq_length: int | None = 128
    temperature: float = 0.05
    alpha: float = 5.0
    loss: str = "infonce"  # or "symmetric", "bidirectional" (see losses.weighted_infonce)
    # GradCache: the batch is embedded mini_batch_size rows at a time, so large batches fit
    cached: bool = False
    mini_batch_size: int = 64
    spread_out_weight: float = 0.0
    matryoshka_dims: tuple[int, ...] = ()
    distillation_weight: float = 1.0  # used only when a teacher is given
    distillation: str = "embedding"  # or "scores" (KL over the batch's candidates), "none"
    distillation_distance: str = "cosine"
    # with a teacher: drop in-batch candidates it scores above the positive (less the margin)
    teacher_guided: bool = False
    guide_margin: float = 0.0
    seeds: tuple[int, ...] = (0,)
    save_strategy: str = "epoch"  # "epoch" or "steps"
    save_steps: int = 500
    device: str | None = None  # None: CUDA when present, else CPU
    # Mixed precision like [encoder] precision: auto = bf16 autocast where the hardware has it
    # (master weights stay float32), fp32, bf16, or fp16 (CUDA).
    precision: str = "auto"
    logging_steps: int = 10

    def validate(self) -> None:
        if self.epochs <= 0 or self.batch_size < 2 or self.learning_rate <= 0:
            raise ConfigError(
                "training needs epochs > 0, batch_size >= 2 (in-batch negatives) and lr > 0"
            )
        if self.save_strategy not in ("epoch", "steps"):
            raise ConfigError(
                f"save_strategy must be 'epoch' or 'steps', not {self.save_strategy!r}"
            )
        if not self.seeds:
            raise ConfigError("give at least one seed")


@dataclass
class TrainRun:
    seed: int
    model: Any
    checkpoints: list[Path]
    steps: int
    seconds: float
    loss: dict[str, Any]
    log: list[dict[str, Any]] = field(default_factory=list)
    compute_dtype: str = "float32"  # what autocast ran the forward passes in


def train_encoder(
    base: DenseEncoder,
    pairs: Sequence[Pair],
    config: TrainConfig,
    output_dir: str | Path,
    *,
    seed: int = 0,
    teacher: DenseEncoder | None = None,
    progress: ProgressCallback | None = None,
) -> TrainRun:
    """Fine-tune a copy of ``base.model`` on ``pairs``; checkpoints go to ``output_dir``.

    The base encoder is left untouched, so it can still serve as the "before" of a comparison.
    """
    try:
        from sentence_transformers import (
            SentenceTransformerTrainer,
            SentenceTransformerTrainingArguments,
        )
        from transformers import set_seed
    except ImportError as exc:  # datasets / accelerate come with the [train] extra
        raise MissingDependencyError(
            "sentence-transformers[train]", "train", "Fine-tuning"
        ) from exc

    config.validate()

    output_dir = Path(output_dir)
    set_seed(seed)
    model = copy.deepcopy(base.model)
    original_length = model.max_seq_length
    if config.max_seq_length:
        _set_max_length(model, config.max_seq_length)
    loss = build_loss(
        model,
        temperature=config.temperature,
        alpha=config.alpha,
        variant=config.loss,
        cached=config.cached,
        mini_batch_size=config.mini_batch_size,
        spread_out_weight=config.spread_out_weight,
        matryoshka_dims=config.matryoshka_dims,
        distillation_weight=config.distillation_weight if teacher is not None else 0.0,
        distillation=config.distillation,
        distillation_distance=config.distillation_distance,
        teacher_dim=teacher.dim if teacher is not None else None,
        guided=config.teacher_guided and teacher is not None,
        guide_margin=config.guide_margin,
    )
    needs_labels = teacher is not None and (
        config.teacher_guided or (config.distillation != "none" and config.distillation_weight > 0)
    )
    dataset, columns = dataset_from_pairs(pairs, teacher if needs_labels else None)
    prompts = {
        column: (base.query_prompt if column == "anchor" else base.document_prompt)
        for column in columns
    }
    prompts = {k: v for k, v in prompts.items() if v}
    common, dtype = trainer_arguments(config, output_dir, seed)
    args = SentenceTransformerTrainingArguments(
        **common,
        prompts=prompts or None,
        save_strategy=config.save_strategy,
        save_steps=config.save_steps,
        save_only_model=True,
    )
    trainer, result, seconds = run_trainer(
        SentenceTransformerTrainer, model, args, dataset, loss, progress
    )
    _set_max_length(model, original_length)
    checkpoints = sorted(
        output_dir.glob("checkpoint-*"), key=lambda p: int(p.name.rsplit("-", 1)[-1])
    )
    return finished_run(model, trainer, result, seconds, loss, seed, dtype, checkpoints)


def trainer_arguments(config: Any, output_dir: Path, seed: int) -> tuple[dict[str, Any], Any]:
    """The training arguments both trainers (dense and SPLADE) share, and the autocast dtype
    (None: float32): no duplicate texts in a batch, seeded data order, CUDA when present and
    the config asks for no device, mixed precision as ``config.precision`` resolves."""
    import torch
    from sentence_transformers.base.sampler import BatchSamplers

    device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = resolve_precision(config.precision, torch.device(device).type)
    common = {
        "output_dir": str(output_dir),
        "num_train_epochs": config.epochs,
        "per_device_train_batch_size": config.batch_size,
        "learning_rate": config.learning_rate,
        "warmup_steps": config.warmup_ratio,  # a float below 1 is a fraction of the steps
        "weight_decay": config.weight_decay,
        "batch_sampler": BatchSamplers.NO_DUPLICATES,
        "seed": seed,
        "data_seed": seed,
        "logging_steps": config.logging_steps,
        "report_to": "none",
        "disable_tqdm": True,
        "use_cpu": device == "cpu",
        "bf16": dtype == torch.bfloat16,
        "fp16": dtype == torch.float16,
        "dataloader_num_workers": 0,
    }
    return common, dtype


def finished_run(
    model: Any,
    trainer: Any,
    result: Any,
    seconds: float,
    loss: Any,
    seed: int,
    dtype: Any,
    checkpoints: list[Path],
) -> TrainRun:
    """The :class:`TrainRun` of a trainer that has finished, its model put in eval mode."""
    model.eval()
    return TrainRun(
        seed=seed,
        model=model,
        checkpoints=checkpoints,
        steps=int(result.global_step),
        seconds=seconds,
        loss=describe_loss(loss),
        log=[dict(entry) for entry in trainer.state.log_history],
        compute_dtype=str(dtype or "torch.float32").removeprefix("torch."),
    )


def describe_loss(loss: Any) -> dict[str, Any]:
    """The loss and its configuration, wrapped losses included, for the model card."""
    described: dict[str, Any] = {"class": type(loss).__name__, **loss.get_config_dict()}
    inner = getattr(loss, "loss", None)
    if inner is not None and hasattr(inner, "get_config_dict"):
        described["loss"] = describe_loss(inner)
    return described


def load_checkpoint(checkpoint: Path, like: Any) -> Any:
    """A checkpoint saved mid-training, on ``like``'s device and at ``like``'s sequence length:
    the trainer saves at the training length, which the final model no longer has."""
    from sentence_transformers import SentenceTransformer

    with quiet_loading():
        model = SentenceTransformer(str(checkpoint), device=str(like.device))
    _set_max_length(model, getattr(like, "max_seq_length", None))
    return model


def _set_max_length(model: Any, value: int | None) -> None:
    # Static (bag-of-words) models have no length limit to set.
    with contextlib.suppress(AttributeError):
        model.max_seq_length = value


def dataset_from_pairs(
    pairs: Sequence[Pair], teacher: DenseEncoder | None
) -> tuple[Any, list[str]]:
    """The (anchor, positive, negative_1..n[, label]) columns both trainers read."""
    from datasets import Dataset

    if not pairs:
        raise ConfigError("no training pairs")
    counts = sorted(len(p.negatives) for p in pairs)
    # The columns are fixed per dataset. Most rows have the usual count; the few a teacher left
    # short (it dropped false negatives) borrow their missing ones from the following rows.
    negatives = counts[len(counts) // 2]
    columns = ["anchor", "positive", *(f"negative_{i + 1}" for i in range(negatives))]
    data: dict[str, list[Any]] = {
        "anchor": [p.query for p in pairs],
        "positive": [p.positive for p in pairs],
    }
    filled = [_filled(pairs, i, negatives) for i in range(len(pairs))]
    for i in range(negatives):
        data[f"negative_{i + 1}"] = [row[i] for row in filled]
    if teacher is not None:
        kinds = ["query", *(["document"] * (len(columns) - 1))]
        data["label"] = teacher_embeddings(
            teacher, [data[c] for c in columns], kinds=kinds
        ).tolist()
    return Dataset.from_dict(data), columns


def _filled(pairs: Sequence[Pair], row: int, count: int) -> tuple[str, ...]:
    """Row ``row``'s first ``count`` negatives, topped up from the next rows' (random) ones."""
    own = tuple(pairs[row].negatives[:count])
    step = 1
    while len(own) < count and step < len(pairs):
        other = pairs[(row + step) % len(pairs)]
        own += tuple(n for n in other.negatives if n not in own and n != pairs[row].positive)[
            : count - len(own)
        ]
        step += 1
    if len(own) < count:
        raise ConfigError(f"not enough negatives to give every pair {count}")
    return own


def run_trainer(
    base: type,
    model: Any,
    args: Any,
    dataset: Any,
    loss: Any,
    progress: ProgressCallback | None,
    *,
    kind: str = "train",
) -> tuple[Any, Any, float]:
    """Train with a sentence-transformers trainer class (dense or sparse) the way ragkit does:
    no model card of the library's (ragkit writes its own), no printed logs, progress through
    ``progress``. Returns the trainer, its result and the seconds it trained."""
    from transformers import PrinterCallback, TrainerCallback

    class Trainer(base):  # type: ignore[misc, valid-type]
        def add_model_card_callback(self, default_args_dict: dict[str, Any]) -> None:
            pass  # ragkit writes its own model card (ragkit.training.model_card)

    trainer = Trainer(model=model, args=args, train_dataset=dataset, loss=loss)
    trainer.remove_callback(PrinterCallback)
    if progress is not None:
        trainer.add_callback(progress_callback(progress, TrainerCallback, kind=kind))
    started = time.perf_counter()
    with quiet_loading():  # transformers' per-save progress bars; ragkit reports progress
        result = trainer.train()
    return trainer, result, time.perf_counter() - started


def progress_callback(progress: ProgressCallback, base: type, *, kind: str = "train") -> Any:
    """A trainer callback reporting ``<kind>_total`` once, then ``<kind>`` after each step."""

    class Progress(base):  # type: ignore[misc, valid-type]
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            progress(f"{kind}_total", int(state.max_steps))

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            progress(kind, 1)

    return Progress()
