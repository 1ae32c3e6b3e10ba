"""Paired significance tests between two systems' per-query scores.

A difference of one nDCG point on 50 queries is often noise; comparing settings without a test
invites tuning to the noise of the dev set. Both tests are paired (the same queries under both
systems) because per-query difficulty varies far more than the systems do.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ragkit.errors import ConfigError

__all__ = ["ALPHA", "TESTS", "Comparison", "compare"]

ALPHA = 0.05
TESTS = ("paired-t", "randomization")

# Sign patterns drawn per batch, so memory stays bounded on large query sets.
_BATCH = 1000


@dataclass(frozen=True, slots=True)
class Comparison:
    """System B against baseline A on the queries both were scored on.

    ``delta`` is ``mean_b - mean_a``: positive when B is better on a higher-is-better metric.
    """

    mean_a: float
    mean_b: float
    delta: float
    p_value: float
    n: int
    test: str
    significant: bool


def compare(
    per_query_a: Mapping[str, float],
    per_query_b: Mapping[str, float],
    *,
    test: Literal["paired-t", "randomization"] = "paired-t",
    n_resamples: int = 10000,
    seed: int = 0,
) -> Comparison:
    """Two-sided paired test of whether B's mean differs from A's.

    Only queries present in both inputs are compared, since a pair needs both halves.
    ``randomization`` is the sign-flip test (Smucker et al., 2007): it assumes nothing about the
    distribution of differences, which for metrics bounded in [0, 1] is rarely normal. With
    ``2**n <= n_resamples`` it enumerates every sign pattern and is exact; otherwise it draws
    ``n_resamples`` seeded patterns so the same inputs always give the same p-value.
    """
    if test not in TESTS:
        raise ConfigError(f"unknown test {test!r}; use one of {', '.join(TESTS)}")
    if n_resamples < 1:
        raise ConfigError(f"n_resamples must be at least 1, got {n_resamples}")
    common = sorted(set(per_query_a) & set(per_query_b))
    if len(common) < 2:
        raise ConfigError(
            f"a paired test needs at least 2 queries scored by both systems, got {len(common)}"
        )
    a = np.array([float(per_query_a[qid]) for qid in common])
    b = np.array([float(per_query_b[qid]) for qid in common])
    differences = b - a
    if test == "paired-t":
        p_value = _paired_t(a, b, differences)
    else:
        p_value = _randomization(differences, n_resamples=n_resamples, seed=seed)
    mean_a = math.fsum(a) / len(a)
    mean_b = math.fsum(b) / len(b)
    return Comparison(
        mean_a=mean_a,
        mean_b=mean_b,
        delta=mean_b - mean_a,
        p_value=p_value,
        n=len(common),
        test=test,
        significant=p_value < ALPHA,
    )


def _paired_t(a: np.ndarray, b: np.ndarray, differences: np.ndarray) -> float:
    from scipy.stats import ttest_rel

    if np.all(differences == differences[0]):
        # Zero variance: scipy returns nan (and warns); the limit is certain either way.
        return 1.0 if differences[0] == 0 else 0.0
    return float(ttest_rel(b, a).pvalue)


def _randomization(differences: np.ndarray, *, n_resamples: int, seed: int) -> float:
    n = len(differences)
    observed = abs(differences.mean())
    # Tolerance so that permutations equal to the observed statistic up to rounding count.
    threshold = observed - 1e-12 * max(1.0, observed)
    if 2**n <= n_resamples:
        patterns = (np.arange(2**n)[:, None] >> np.arange(n)) & 1
        signs = 1 - 2 * patterns
        extreme = np.abs((signs * differences).mean(axis=1)) >= threshold
        return float(extreme.mean())
    rng = np.random.default_rng(seed)
    extreme_count = 0
    remaining = n_resamples
    while remaining:
        batch = min(remaining, _BATCH)
        signs = rng.choice(np.array([-1.0, 1.0]), size=(batch, n))
        extreme_count += int(np.count_nonzero(np.abs(signs @ differences) / n >= threshold))
        remaining -= batch
    # The observed assignment is one of the possible ones: (count + 1) / (N + 1) keeps p > 0.
    return (extreme_count + 1) / (n_resamples + 1)
