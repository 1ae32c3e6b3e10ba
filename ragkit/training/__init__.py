"""Fine-tuning pieces: pairs, hard-negative mining, losses, training, soups, model cards.

The job that composes them is :func:`ragkit.pipelines.finetune.finetune`; these are the parts a
user can call alone, e.g. to mine negatives for another trainer::

    from ragkit.training import MiningConfig, load_pairs, mine_hard_negatives
    mined = mine_hard_negatives(kit, load_pairs("pairs.jsonl"), MiningConfig(num_negatives=5))

Training needs the ``train`` extra (``pip install 'ragkit[train]'``: datasets, accelerate).
"""

from __future__ import annotations

from ragkit.training.mining import ChunkTable, MiningConfig, MiningResult, mine_hard_negatives
from ragkit.training.pairs import (
    InverseCloze,
    Pair,
    QueryGenerator,
    generate_pairs,
    load_pairs,
    pairs_from_beir,
    qrels_from_pairs,
    sample_pairs,
    split_pairs,
    write_pairs,
)
from ragkit.training.soup import SoupDecision, average_state_dicts, make_soup, select_soup
from ragkit.training.trainer import TrainConfig, TrainRun, train_encoder

__all__ = [
    "ChunkTable",
    "InverseCloze",
    "MiningConfig",
    "MiningResult",
    "Pair",
    "QueryGenerator",
    "SoupDecision",
    "TrainConfig",
    "TrainRun",
    "average_state_dicts",
    "generate_pairs",
    "load_pairs",
    "make_soup",
    "mine_hard_negatives",
    "pairs_from_beir",
    "qrels_from_pairs",
    "sample_pairs",
    "select_soup",
    "split_pairs",
    "train_encoder",
    "write_pairs",
]
