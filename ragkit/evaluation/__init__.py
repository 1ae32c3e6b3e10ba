"""Evaluate retrieval the way IR papers do: BEIR datasets, trec_eval metrics, paired tests.

>>> from ragkit.evaluation import load_beir, evaluate, hits_to_run, corpus_id_from_uri
>>> data = load_beir("datasets/scifact", split="test")
>>> run = hits_to_run(hits_per_query, doc_key=lambda hit: corpus_id_from_uri(hit.uri))
>>> evaluate(run, data.qrels).mean["ndcg@10"]

``pytrec_eval`` (the ``eval`` extra) is imported only when metrics are computed.
"""

from __future__ import annotations

from ragkit.evaluation.beir import (
    BeirDataset,
    available_splits,
    load_beir,
    load_qrels,
    read_queries,
)
from ragkit.evaluation.metrics import (
    DEFAULT_METRICS,
    EvalResult,
    corpus_id_from_uri,
    evaluate,
    hits_to_run,
)
from ragkit.evaluation.runs import read_trec_run, write_trec_run
from ragkit.evaluation.significance import Comparison, compare

__all__ = [
    "DEFAULT_METRICS",
    "BeirDataset",
    "Comparison",
    "EvalResult",
    "available_splits",
    "compare",
    "corpus_id_from_uri",
    "evaluate",
    "hits_to_run",
    "load_beir",
    "load_qrels",
    "read_queries",
    "read_trec_run",
    "write_trec_run",
]
