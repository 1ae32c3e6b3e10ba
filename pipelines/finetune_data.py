"""The data of a fine-tune, prepared once for every channel it trains.

Training pairs (a file, BEIR qrels, or generated from the corpus) → a seeded held-out split when
no evaluation set is given → validation queries for checkpoint selection → hard negatives mined
from the workspace's own index. The dense encoder and the SPLADE model train on exactly these
rows, so a difference between their after-metrics is the models', not the data's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragkit.errors import ConfigError
from ragkit.evaluation import load_beir
from ragkit.training.evaluator import hard_subset
from ragkit.training.mining import ChunkTable, mine_hard_negatives
from ragkit.training.pairs import (
    Pair,
    generate_pairs,
    load_pairs,
    pairs_from_beir,
    qrels_from_pairs,
    sample_pairs,
    split_pairs,
    write_pairs,
)
from ragkit.training.teacher_filter import drop_false_negatives

if TYPE_CHECKING:
    from collections.abc import Callable

    from ragkit.encoders.dense import DenseEncoder
    from ragkit.pipelines.finetune import FinetuneConfig
    from ragkit.workspace import Workspace

__all__ = ["TrainingData", "eval_chunks", "needs_selection", "prepare_data"]


@dataclass
class TrainingData:
    train: list[Pair]
    validation: list[Pair]
    source: str
    eval_queries: dict[str, str]
    eval_qrels: dict[str, dict[str, int]]
    eval_source: str
    mining: dict[str, Any] | None


def prepare_data(
    kit: Workspace,
    config: FinetuneConfig,
    table: ChunkTable,
    run_dir: Path,
    *,
    teacher: DenseEncoder | None,
    cross_encoder: Any,
    notify: Callable[[str, int], None],
    clock: dict[str, float],
) -> TrainingData:
    import time

    started = time.perf_counter()
    notify("stage:pairs", 0)
    pairs, source = _training_pairs(kit, config)
    eval_queries, eval_qrels, eval_source, pairs = _evaluation_set(config, pairs)
    train, rest = sample_pairs(pairs, config.max_train_pairs, seed=config.seed)
    validation: list[Pair] = []
    if needs_selection(config):
        if not rest and len({p.group for p in train}) >= 20:
            train, rest = split_pairs(
                train, fraction=0.1, max_queries=config.validation_queries, seed=config.seed + 2
            )
        validation = sample_pairs(rest, config.validation_queries, seed=config.seed)[0]
    if not train:
        raise ConfigError("no training pairs left after the held-out split")
    write_pairs(train, run_dir / "train_pairs.jsonl")
    clock["pairs"] = time.perf_counter() - started

    mining_summary = None
    if config.mine and config.mining.num_negatives > 0:
        notify("stage:mining", 0)
        mark = time.perf_counter()
        mined = mine_hard_negatives(
            kit, train, config.mining, cross_encoder=cross_encoder, table=table, progress=notify
        )
        mined.write(run_dir / "negatives.jsonl")
        train = mined.pairs
        mining_summary = {**mined.summary(), "file": str(run_dir / "negatives.jsonl")}
        if teacher is not None and config.teacher_negative_margin is not None:
            train, dropped = drop_false_negatives(
                train, teacher, margin=config.teacher_negative_margin
            )
            mining_summary["teacher_filter"] = dropped
        clock["mining"] = time.perf_counter() - mark
    return TrainingData(
        train=train,
        validation=validation,
        source=source,
        eval_queries=eval_queries,
        eval_qrels=eval_qrels,
        eval_source=eval_source,
        mining=mining_summary,
    )


def needs_selection(config: FinetuneConfig) -> bool:
    """Whether dense training will leave more than one candidate model to choose from."""
    train = config.train
    several = len(train.seeds) > 1 or train.save_strategy == "steps" or train.epochs > 1
    return config.select and several and "dense" in config.channels


def eval_chunks(
    kit: Workspace,
    table: ChunkTable,
    queries: dict[str, str],
    qrels: dict[str, dict[str, int]],
    config: FinetuneConfig,
) -> list[int] | None:
    if config.eval_max_chunks is None:
        return None
    texts = list(queries.values())
    return hard_subset(kit, table, texts, qrels, size=config.eval_max_chunks, seed=config.seed)


def _training_pairs(kit: Workspace, config: FinetuneConfig) -> tuple[list[Pair], str]:
    if config.pairs is not None and config.dataset is not None:
        raise ConfigError("give either a pairs file or a BEIR dataset for training, not both")
    if config.pairs is not None:
        return load_pairs(config.pairs), f"pairs file {config.pairs}"
    if config.dataset is not None:
        data = load_beir(config.dataset, config.split)
        return pairs_from_beir(data), f"BEIR {config.dataset} split {config.split}"
    pairs = generate_pairs(
        kit, generator=config.generator, max_chunks=config.generate_max_chunks, seed=config.seed
    )
    how = (
        "inverse cloze"
        if config.generator is None
        else getattr(config.generator, "__name__", type(config.generator).__name__)
    )
    return pairs, f"generated from the workspace ({how})"


def _evaluation_set(
    config: FinetuneConfig, pairs: list[Pair]
) -> tuple[dict[str, str], dict[str, dict[str, int]], str, list[Pair]]:
    if config.eval_dataset is not None:
        data = load_beir(config.eval_dataset, config.eval_split)
        queries = {q: t for q, t in data.queries.items() if q in data.qrels}
        # The same query text on both sides would measure memorisation, not retrieval.
        seen = set(queries.values())
        kept = [p for p in pairs if p.query not in seen]
        return queries, data.qrels, f"BEIR {config.eval_dataset} split {config.eval_split}", kept
    if not any(p.positive_doc for p in pairs):
        raise ConfigError(
            "the pairs name no positive document (positive_doc), so held-out queries cannot be "
            "judged; add a positive_doc column or give --eval-dataset"
        )
    train, held = split_pairs(
        pairs,
        fraction=config.holdout_fraction,
        max_queries=config.max_holdout_queries,
        seed=config.seed,
    )
    queries, qrels = qrels_from_pairs(held)
    return queries, qrels, f"held out {len(queries)} queries (seed {config.seed})", train
