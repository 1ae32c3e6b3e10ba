"""Fuse ranked runs from several channels (dense, SPLADE, BM25) into one ranking.

A *run* is ``{id: score}`` from one channel, higher is better. The channels' scores live on
different scales (cosine in [-1, 1], BM25 unbounded), so fusion either ignores them and uses
ranks (RRF — robust, needs no tuning) or first puts each run on a common scale (convex
combination, DBSF). All functions are pure; ties are broken by id so results are reproducible.

Methods are resolved by name through :data:`FUSION_METHODS` (``[fusion] method``); another is
``@register_fusion("name")`` over ``method(runs, weights, *, k, normalization) -> {id: score}``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

from ragkit.errors import ConfigError
from ragkit.registry import Registry

__all__ = ["FUSION_METHODS", "NORMALIZATIONS", "FusionMethod", "fuse", "register_fusion"]

NORMALIZATIONS = ("minmax", "zscore")

Run = Mapping[int, float]
#: ``(runs, weights, *, k, normalization) -> {id: fused score}``; weights are checked already
FusionMethod = Callable[..., dict[int, float]]

FUSION_METHODS: Registry[FusionMethod] = Registry("fusion method", "fusion.method")


def register_fusion(name: str) -> Callable[[FusionMethod], FusionMethod]:
    """Decorator: make a fusion function selectable as ``[fusion] method = name``."""
    return FUSION_METHODS.register(name)


def fuse(
    runs: Sequence[Run],
    *,
    method: str = "rrf",
    weights: Sequence[float] | None = None,
    k: int = 60,
    normalization: str = "minmax",
) -> list[tuple[int, float]]:
    """Return every id found in any run as ``(id, fused score)``, best first.

    * ``"rrf"`` — reciprocal rank fusion: ``Σ w_i / (k + rank_i)``, ranks from 1 within each run
      (equal scores are ranked by id). A run that lacks the id adds nothing.
    * ``"convex"`` — ``Σ w_i · norm_i(score)`` with ``normalization`` ``"minmax"`` (to [0, 1]) or
      ``"zscore"``. An id missing from a run gets that run's *normalised minimum* — the run's
      worst retrieved document is the best guess for one it did not retrieve — which is 0 for
      min-max and the lowest z-score for z-score. A run whose scores are all equal ranks nothing
      apart: min-max gives its documents 1.0 (so being retrieved still counts over the 0 of the
      missing), z-score gives them 0.0.
    * ``"dbsf"`` — distribution-based score fusion exactly as Qdrant computes it: each run is
      mapped linearly from ``[mean - 3·std, mean + 3·std]`` (sample std) onto [0, 1] — not
      clipped, so an outlier beyond 3σ scores above 1, which keeps FAISS and Qdrant collections
      congruent — then summed with the weights; a missing id adds 0, and a run of one document
      or of equal scores gives 0.5.

    ``weights`` default to 1 per run; ``k`` is RRF's rank constant (ignored by other methods).
    """
    combine = FUSION_METHODS.get(method)
    weights = _check_weights(weights, len(runs))
    for position, run in enumerate(runs):
        for doc_id, score in run.items():
            if not math.isfinite(score):
                raise ConfigError(
                    f"run {position} gives id {doc_id} the score {score}; fusion needs finite "
                    "scores (drop missing hits, e.g. id -1, before fusing)"
                )
    fused = combine(runs, weights, k=k, normalization=normalization)
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))


def _check_weights(weights: Sequence[float] | None, n_runs: int) -> list[float]:
    if weights is None:
        return [1.0] * n_runs
    weights = [float(w) for w in weights]
    if len(weights) != n_runs:
        raise ConfigError(f"got {len(weights)} fusion weights for {n_runs} runs; give one per run")
    if any(not math.isfinite(w) or w < 0 for w in weights):
        raise ConfigError(f"fusion weights must be finite and >= 0, got {weights}")
    return weights


def _ranked(run: Run) -> list[int]:
    return [doc_id for doc_id, _ in sorted(run.items(), key=lambda item: (-item[1], item[0]))]


@register_fusion("rrf")
def _rrf(runs: Sequence[Run], weights: list[float], *, k: int, **_: object) -> dict[int, float]:
    if k < 0:
        raise ConfigError(f"RRF needs k >= 0, got k={k}")
    fused: dict[int, float] = {}
    for run, weight in zip(runs, weights, strict=True):
        for rank, doc_id in enumerate(_ranked(run), start=1):
            fused[doc_id] = fused.get(doc_id, 0.0) + weight / (k + rank)
    return fused


@register_fusion("convex")
def _convex(
    runs: Sequence[Run], weights: list[float], *, normalization: str, **_: object
) -> dict[int, float]:
    if normalization not in NORMALIZATIONS:
        raise ConfigError(
            f"normalization {normalization!r} is unknown; use one of {NORMALIZATIONS}"
        )
    all_ids = {doc_id for run in runs for doc_id in run}
    fused = dict.fromkeys(all_ids, 0.0)
    for run, weight in zip(runs, weights, strict=True):
        if not run:
            continue
        normalised = _minmax(run) if normalization == "minmax" else _zscore(run)
        floor = 0.0 if normalization == "minmax" else min(normalised.values())
        for doc_id in all_ids:
            fused[doc_id] += weight * normalised.get(doc_id, floor)
    return fused


def _minmax(run: Run) -> dict[int, float]:
    low, high = min(run.values()), max(run.values())
    if high == low:
        return dict.fromkeys(run, 1.0)
    return {doc_id: (score - low) / (high - low) for doc_id, score in run.items()}


def _zscore(run: Run) -> dict[int, float]:
    mean = math.fsum(run.values()) / len(run)
    std = math.sqrt(math.fsum((score - mean) ** 2 for score in run.values()) / len(run))
    if std == 0:
        return dict.fromkeys(run, 0.0)
    return {doc_id: (score - mean) / std for doc_id, score in run.items()}


@register_fusion("dbsf")
def _dbsf(runs: Sequence[Run], weights: list[float], **_: object) -> dict[int, float]:
    fused: dict[int, float] = {}
    for run, weight in zip(runs, weights, strict=True):
        for doc_id, value in _three_sigma(run).items():
            fused[doc_id] = fused.get(doc_id, 0.0) + weight * value
    return fused


def _three_sigma(run: Run) -> dict[int, float]:
    if len(run) < 2:
        return dict.fromkeys(run, 0.5)
    mean = math.fsum(run.values()) / len(run)
    std = math.sqrt(math.fsum((score - mean) ** 2 for score in run.values()) / (len(run) - 1))
    if std == 0:
        return dict.fromkeys(run, 0.5)
    low, span = mean - 3 * std, 6 * std
    return {doc_id: (score - low) / span for doc_id, score in run.items()}
