"""Choosing the dense model among checkpoints, seeds and their soup, on validation queries.

The validation queries are taken from the training pairs (never the held-out evaluation set),
and scored over a hard corpus sample, so choosing costs little beside training.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ragkit.training.evaluator import RetrievalEvaluator, hard_subset
from ragkit.training.mining import ChunkTable
from ragkit.training.pairs import Pair, qrels_from_pairs
from ragkit.training.soup import SoupDecision, select_soup
from ragkit.training.trainer import load_checkpoint

if TYPE_CHECKING:
    from ragkit.encoders.dense import DenseEncoder
    from ragkit.pipelines.finetune import FinetuneConfig
    from ragkit.workspace import Workspace

__all__ = ["SELECTION_METRIC", "checkpoint_models", "choose_model", "soup_info"]

ProgressCallback = Callable[[str, int], None]
SELECTION_METRIC = "ndcg@10"


def choose_model(
    kit: Workspace,
    base: DenseEncoder,
    runs: list[Any],
    validation: list[Pair],
    table: ChunkTable,
    config: FinetuneConfig,
    notify: ProgressCallback,
) -> tuple[Any, SoupDecision | None]:
    """The final model of a single run, or the best of checkpoints, seeds and their soup."""
    candidates = checkpoint_models(runs)
    if len(candidates) == 1 or not config.select or not validation:
        return runs[-1].model, None
    queries, qrels = qrels_from_pairs(validation)
    if not queries:
        return runs[-1].model, None
    notify("stage:select", len(candidates))
    texts = list(queries.values())
    chunks = hard_subset(kit, table, texts, qrels, size=config.selection_chunks, seed=config.seed)
    evaluator = RetrievalEvaluator(kit, queries, qrels, table=table, chunk_ids=chunks)

    def score(model: Any) -> float:
        return evaluator.dense_score(base.sibling(model, name="candidate"))[SELECTION_METRIC]

    return select_soup(candidates, score, method=config.soup_method)


def checkpoint_models(runs: list[Any]) -> dict[str, Any]:
    """``{"seed-N/checkpoint-S" | "seed-N/final": model}`` for every run: the checkpoints saved
    before the end are loaded from disk, the final model is the one in memory."""
    candidates: dict[str, Any] = {}
    for run in runs:
        for checkpoint in run.checkpoints:
            if int(checkpoint.name.rsplit("-", 1)[-1]) >= run.steps:
                continue  # the last checkpoint is the final model, already in memory
            candidates[f"seed-{run.seed}/{checkpoint.name}"] = load_checkpoint(
                checkpoint, run.model
            )
        candidates[f"seed-{run.seed}/final"] = run.model
    return candidates


def soup_info(decision: SoupDecision | None) -> dict[str, Any] | None:
    if decision is None:
        return None
    return {
        "metric": f"dense {SELECTION_METRIC} on validation queries",
        "chosen": decision.chosen,
        "scores": {k: round(v, 4) for k, v in decision.scores.items()},
        "soup_score": None if decision.soup_score is None else round(decision.soup_score, 4),
        "best_single": decision.best_single,
        "ingredients": decision.ingredients,
    }
