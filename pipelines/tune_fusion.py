"""Tune hybrid fusion (method, RRF k, channel weights) on queries with judgments.

Each channel is searched once per query; every candidate setting then only re-fuses those
runs, so a grid of ~80 settings over 1,000 queries takes seconds. The best setting is written
to the workspace config. Because choosing the best of many settings on the same queries
flatters it, the report also gives a two-fold cross-validated score: tune on one half, score
on the other, and the reverse.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ragkit.config import FusionConfig
from ragkit.evaluation import evaluate
from ragkit.evaluation.metrics import corpus_id_from_uri
from ragkit.pipelines._runner import job
from ragkit.retrieval.fusion import fuse
from ragkit.workspace import Workspace

__all__ = ["FusionTrial", "TuneReport", "fusion_grid", "tune_fusion"]

ProgressCallback = Callable[[str, int], None]


@dataclass(frozen=True)
class FusionTrial:
    method: str
    k: int
    weights: tuple[float, float]
    normalization: str
    score: float

    def config(self, depth: int) -> FusionConfig:
        return FusionConfig(
            method=self.method,
            k=self.k,
            weights=list(self.weights),
            normalization=self.normalization,
            depth=depth,
        )


@dataclass
class TuneReport:
    metric: str
    queries: int
    current: float
    best: FusionTrial
    dense: float
    sparse: float
    cross_validated: float
    trials: list[FusionTrial] = field(default_factory=list)
    written: bool = False

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["trials"] = sorted(out["trials"], key=lambda t: -t["score"])[:20]
        return out


def fusion_grid() -> list[tuple[str, int, tuple[float, float], str]]:
    """(method, k, (dense weight, sparse weight), normalization) candidates."""
    dense_weights = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0)
    grid = [("rrf", k, (w, 1.0), "minmax") for k in (5, 10, 20, 40, 60, 100) for w in dense_weights]
    for normalization in ("minmax", "zscore"):
        grid += [
            ("convex", 60, (round(a, 2), round(1 - a, 2)), normalization)
            for a in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
        ]
    grid += [("dbsf", 60, (w, 1.0), "minmax") for w in dense_weights]
    return grid


def tune_fusion(
    kit: Workspace,
    queries: dict[str, str],
    qrels: dict[str, dict[str, int]],
    *,
    metric: str = "ndcg@10",
    depth: int | None = None,
    write: bool = True,
    seed: int = 0,
    wait: float = 0.0,
    progress: ProgressCallback | None = None,
) -> TuneReport:
    notify = progress or (lambda event, n: None)
    qids = [q for q in queries if q in qrels]
    depth = depth or kit.config.fusion.depth
    dense_runs, sparse_runs = kit.channel_runs([queries[q] for q in qids], depth=depth)
    notify("searched", len(qids))
    ids = {i for run in (*dense_runs, *sparse_runs) for i in run}
    rows = kit.store.chunk_rows(sorted(ids))
    doc_of = {i: corpus_id_from_uri(row["uri"]) for i, row in rows.items()}

    def per_query(setting: tuple[str, int, tuple[float, float], str]) -> dict[str, float]:
        method, k, weights, normalization = setting
        run = {
            qid: _documents(
                fuse(
                    [dense, sparse],
                    method=method,
                    weights=weights,
                    k=k,
                    normalization=normalization,
                ),
                doc_of,
            )
            for qid, dense, sparse in zip(qids, dense_runs, sparse_runs, strict=True)
        }
        return evaluate(run, qrels, [metric]).metric(metric)

    grid = fusion_grid()
    notify("trials_total", len(grid))
    scored = []
    for setting in grid:
        scored.append((setting, per_query(setting)))
        notify("trial", 1)
    trials = [FusionTrial(*setting, score=_mean(values, qids)) for setting, values in scored]
    best = max(trials, key=lambda t: t.score)
    current = kit.collection().record.spec.fusion_for(kit.config)  # what queries use now
    current_setting = (current.method, current.k, tuple(current.weights), current.normalization)
    single = {
        name: _mean(
            evaluate(
                {
                    qid: _documents(sorted(run.items(), key=lambda x: (-x[1], x[0])), doc_of)
                    for qid, run in zip(qids, runs, strict=True)
                },
                qrels,
                [metric],
            ).metric(metric),
            qids,
        )
        for name, runs in (("dense", dense_runs), ("sparse", sparse_runs))
    }
    report = TuneReport(
        metric=metric,
        queries=len(qids),
        current=_mean(per_query(current_setting), qids),  # type: ignore[arg-type]
        best=best,
        dense=single["dense"],
        sparse=single["sparse"],
        cross_validated=_cross_validated([values for _, values in scored], qids, seed),
        trials=trials,
    )
    if write and best.score > report.current:
        # ragkit.toml is shared with the other writers: written only under the lock.
        params = {"metric": metric, "depth": depth, "seed": seed, "queries": len(qids)}
        with job(kit, "tune-fusion", params, wait=wait) as run:
            kit.config.set_fusion(best.config(depth))
            kit.config.save(kit.config_path)
            report.written = True
            run.outcome(True, {"best": asdict(best), "current": report.current})
    return report


def _mean(values: dict[str, float], qids: Sequence[str]) -> float:
    return sum(values.get(q, 0.0) for q in qids) / len(qids) if qids else 0.0


def _documents(fused: list[tuple[int, float]], doc_of: dict[int, str]) -> dict[str, float]:
    """A document's score is its best chunk's (fused lists are sorted best first)."""
    out: dict[str, float] = {}
    for chunk, value in fused:
        doc = doc_of.get(chunk)
        if doc is not None and doc not in out:
            out[doc] = value
    return out


def _cross_validated(per_setting: list[dict[str, float]], qids: list[str], seed: int) -> float:
    """Pick the best setting on one random half, score it on the other, and the reverse."""
    order = list(qids)
    random.Random(seed).shuffle(order)
    halves = (order[: len(order) // 2], order[len(order) // 2 :])
    total = 0.0
    for tune_on, test_on in (halves, halves[::-1]):
        chosen = max(per_setting, key=lambda values: _mean(values, tune_on))
        total += _mean(chosen, test_on) * len(test_on)
    return total / len(qids) if qids else 0.0
