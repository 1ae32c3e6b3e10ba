"""Retrieval metrics computed by ``pytrec_eval``, so our numbers match trec_eval and BEIR's.

We never hand-write a metric formula: a subtle off-by-one in nDCG makes every comparison with
published figures meaningless. What we add around pytrec_eval are the two places where its
defaults would flatter a system:

* ``recip_rank`` has no cutoff, so ``mrr@K`` is computed on the run cut to its top K per query
  (a relevant document at rank 11 scores 0 for MRR@10, not 1/11);
* queries missing from the run are skipped by pytrec_eval, which would reward a system for
  returning nothing; here every judged query counts, with 0 for the queries the run lacks.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ragkit.errors import ConfigError, MissingDependencyError

if TYPE_CHECKING:
    from ragkit.documents import Hit

__all__ = [
    "DEFAULT_METRICS",
    "EvalResult",
    "corpus_id_from_uri",
    "evaluate",
    "hits_to_run",
]

DEFAULT_METRICS: tuple[str, ...] = ("ndcg@10", "mrr@10", "recall@10", "recall@100", "map")

Run = Mapping[str, Mapping[str, float]]
Qrels = Mapping[str, Mapping[str, int]]

_METRIC_NAME = re.compile(r"^(?P<family>[a-z]+)(?:@(?P<k>[0-9]+))?$")


@dataclass(frozen=True, slots=True)
class _Metric:
    """How one user-facing metric name maps onto a pytrec_eval measure."""

    name: str
    family: str  # pytrec_eval measure family, e.g. "ndcg_cut"
    cutoff: int | None  # pytrec_eval's parameter (the ".10" in "ndcg_cut.10")
    truncate: int | None  # cut the run to its top-k first (mrr@k: recip_rank has no cutoff)

    @property
    def key(self) -> str:
        """The key pytrec_eval uses for this measure in its per-query output."""
        return self.family if self.cutoff is None else f"{self.family}_{self.cutoff}"


# family name -> (pytrec_eval family without cutoff, with cutoff, cutoff required, truncate run)
_FAMILIES: dict[str, tuple[str, str, bool, bool]] = {
    "ndcg": ("ndcg", "ndcg_cut", False, False),
    "mrr": ("recip_rank", "recip_rank", False, True),
    "recall": ("recall", "recall", True, False),
    "precision": ("P", "P", True, False),
    "map": ("map", "map_cut", False, False),
}


@dataclass(frozen=True, slots=True)
class EvalResult:
    """Metric means over the judged queries, plus the per-query values a significance test needs.

    ``per_query`` holds every query of the qrels that has at least one relevant document,
    including the ones the run left out (with 0 for every metric).
    """

    mean: dict[str, float]
    per_query: dict[str, dict[str, float]]

    def metric(self, name: str) -> dict[str, float]:
        """One metric's per-query values, the input :func:`ragkit.evaluation.compare` takes."""
        key = _parse_metric(name).name
        if key not in self.mean:
            raise ConfigError(f"metric {name!r} was not computed; computed: {', '.join(self.mean)}")
        return {qid: values[key] for qid, values in self.per_query.items()}


def evaluate(run: Run, qrels: Qrels, metrics: Sequence[str] = DEFAULT_METRICS) -> EvalResult:
    """Score a run (query id -> document id -> score) against relevance judgments.

    Only queries with at least one relevant document (grade > 0) are evaluated: for the others
    every metric is undefined or 0 for every system, so they would only dilute the means. Run
    entries for queries absent from the qrels are ignored; judged queries absent from the run
    score 0. Metric names: ``ndcg@K``, ``mrr@K``, ``recall@K``, ``precision@K``, ``map``,
    ``map@K`` (also ``ndcg`` and ``mrr`` without a cutoff), case-insensitive.
    """
    specs = _parse_metrics(metrics)
    pytrec_eval = _import_pytrec_eval()
    judged = {
        str(qid): {str(doc): int(grade) for doc, grade in docs.items()}
        for qid, docs in qrels.items()
        if any(int(grade) > 0 for grade in docs.values())
    }
    if not judged:
        raise ConfigError("the qrels hold no query with a relevant document (grade > 0)")
    scored = {
        qid: {str(doc): float(score) for doc, score in run[qid].items()}
        for qid in judged
        if run.get(qid)
    }
    per_query: dict[str, dict[str, float]] = {qid: {} for qid in judged}
    for truncate, group in _group_by_truncation(specs).items():
        group_run = scored if truncate is None else _truncate(scored, truncate)
        evaluator = pytrec_eval.RelevanceEvaluator(judged, _measures(group))
        results = evaluator.evaluate(group_run)
        for qid, values in per_query.items():
            found = results.get(qid, {})
            for spec in group:
                values[spec.name] = float(found.get(spec.key, 0.0))
    names = [spec.name for spec in specs]
    per_query = {qid: {name: values[name] for name in names} for qid, values in per_query.items()}
    mean = {name: math.fsum(v[name] for v in per_query.values()) / len(per_query) for name in names}
    return EvalResult(mean=mean, per_query=per_query)


def hits_to_run(
    hits_per_query: Mapping[str, Sequence[Hit]], *, doc_key: Callable[[Hit], str]
) -> dict[str, dict[str, float]]:
    """Turn chunk hits into a document run: a document scores as its best chunk.

    Qrels judge documents, while retrieval returns chunks; counting every chunk of one document
    would let a single document fill the top 10. Max-score keeps one entry per document and
    keeps the run's order meaningful. ``doc_key`` maps a hit to the qrels' document id (for a
    BEIR corpus ingested from jsonl: ``lambda hit: corpus_id_from_uri(hit.uri)``).
    """
    run: dict[str, dict[str, float]] = {}
    for qid, hits in hits_per_query.items():
        docs: dict[str, float] = {}
        for hit in hits:
            doc = doc_key(hit)
            score = float(hit.score)
            if doc not in docs or score > docs[doc]:
                docs[doc] = score
        run[str(qid)] = docs
    return run


def corpus_id_from_uri(uri: str) -> str:
    """The corpus id of a row document: jsonl rows are ingested with uris ``file.jsonl#<_id>``."""
    _, sep, tail = uri.rpartition("#")
    return tail if sep and tail else uri


def _parse_metrics(metrics: Sequence[str] | str) -> list[_Metric]:
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    if not names:
        raise ConfigError("no metrics requested; try ragkit.evaluation.DEFAULT_METRICS")
    specs = {}
    for name in names:
        spec = _parse_metric(name)
        specs.setdefault(spec.name, spec)
    return list(specs.values())


def _parse_metric(name: str) -> _Metric:
    match = _METRIC_NAME.match(str(name).strip().lower())
    family_info = _FAMILIES.get(match["family"]) if match else None
    if match is None or family_info is None:
        raise ConfigError(
            f"unknown metric {name!r}; use ndcg@K, mrr@K, recall@K, precision@K, map or map@K"
        )
    uncut, cut, needs_k, truncate = family_info
    family = match["family"]
    if match["k"] is None:
        if needs_k:
            raise ConfigError(f"metric {name!r} needs a cutoff, e.g. {family}@10")
        return _Metric(name=family, family=uncut, cutoff=None, truncate=None)
    k = int(match["k"])
    if k < 1:
        raise ConfigError(f"metric {name!r}: the cutoff must be at least 1")
    name = f"{family}@{k}"
    if truncate:
        return _Metric(name=name, family=cut, cutoff=None, truncate=k)
    return _Metric(name=name, family=cut, cutoff=k, truncate=None)


def _group_by_truncation(specs: Iterable[_Metric]) -> dict[int | None, list[_Metric]]:
    groups: dict[int | None, list[_Metric]] = {}
    for spec in specs:
        groups.setdefault(spec.truncate, []).append(spec)
    return groups


def _measures(specs: Iterable[_Metric]) -> set[str]:
    """pytrec_eval measure strings, cutoffs of one family merged ("ndcg_cut.5,10")."""
    cutoffs: dict[str, set[int]] = {}
    plain: set[str] = set()
    for spec in specs:
        if spec.cutoff is None:
            plain.add(spec.family)
        else:
            cutoffs.setdefault(spec.family, set()).add(spec.cutoff)
    merged = {f"{family}.{','.join(map(str, sorted(ks)))}" for family, ks in cutoffs.items()}
    return plain | merged


def _truncate(run: Mapping[str, Mapping[str, float]], k: int) -> dict[str, dict[str, float]]:
    """Each query's top k, ranked as trec_eval ranks: score descending, ties by docid descending."""
    return {
        qid: dict(sorted(docs.items(), key=lambda item: (item[1], item[0]), reverse=True)[:k])
        for qid, docs in run.items()
    }


def _import_pytrec_eval() -> Any:
    try:
        import pytrec_eval
    except ImportError as error:
        raise MissingDependencyError(
            "pytrec-eval-terrier", "eval", "Computing retrieval metrics"
        ) from error
    return pytrec_eval
