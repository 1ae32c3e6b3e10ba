"""Fusion against numbers worked out here from each method's formula, not read off the output."""

from __future__ import annotations

import math
import statistics

import pytest

from ragkit.errors import ConfigError
from ragkit.retrieval.fusion import FUSION_METHODS, fuse

# Two channels, three documents each; ids 1 and 3 are in both.
DENSE = {1: 0.9, 2: 0.5, 3: 0.1}
SPARSE = {3: 10.0, 4: 8.0, 1: 2.0}


def as_dict(fused: list[tuple[int, float]]) -> dict[int, float]:
    return dict(fused)


def assert_sorted_by_score_then_id(fused: list[tuple[int, float]]) -> None:
    assert fused == sorted(fused, key=lambda item: (-item[1], item[0]))


def test_rrf_sums_reciprocal_ranks() -> None:
    # Ranks by hand: DENSE 1→1, 2→2, 3→3; SPARSE 3→1, 4→2, 1→3.
    expected = {
        1: 1 / (60 + 1) + 1 / (60 + 3),
        2: 1 / (60 + 2),
        3: 1 / (60 + 3) + 1 / (60 + 1),
        4: 1 / (60 + 2),
    }
    fused = fuse([DENSE, SPARSE])
    assert as_dict(fused) == pytest.approx(expected, rel=1e-12)
    # 1 and 3 tie, as do 2 and 4: ties are broken by id.
    assert [doc_id for doc_id, _ in fused] == [1, 3, 2, 4]


def test_rrf_weights_and_k() -> None:
    expected = {
        1: 2 / (10 + 1) + 0.5 / (10 + 3),
        2: 2 / (10 + 2),
        3: 2 / (10 + 3) + 0.5 / (10 + 1),
        4: 0.5 / (10 + 2),
    }
    fused = fuse([DENSE, SPARSE], weights=[2.0, 0.5], k=10)
    assert as_dict(fused) == pytest.approx(expected, rel=1e-12)
    # 0.220 > 0.199 > 0.167 > 0.042: document 3's sparse rank-1 no longer ties it with 1.
    assert [doc_id for doc_id, _ in fused] == [1, 3, 2, 4]


def test_rrf_ranks_equal_scores_by_id() -> None:
    fused = as_dict(fuse([{9: 1.0, 4: 1.0, 7: 0.5}], k=0))
    assert fused == pytest.approx({4: 1 / 1, 9: 1 / 2, 7: 1 / 3})


def test_convex_minmax_missing_documents_get_zero() -> None:
    dense_norm = {1: (0.9 - 0.1) / 0.8, 2: (0.5 - 0.1) / 0.8, 3: 0.0}
    sparse_norm = {3: (10 - 2) / 8, 4: (8 - 2) / 8, 1: 0.0}
    w_dense, w_sparse = 0.7, 0.3
    expected = {
        doc: w_dense * dense_norm.get(doc, 0.0) + w_sparse * sparse_norm.get(doc, 0.0)
        for doc in (1, 2, 3, 4)
    }
    fused = fuse([DENSE, SPARSE], method="convex", weights=[w_dense, w_sparse])
    assert as_dict(fused) == pytest.approx(expected, rel=1e-12)
    assert expected[1] == pytest.approx(0.7)  # sanity of the hand numbers: 0.7·1 + 0.3·0
    assert [doc_id for doc_id, _ in fused] == [1, 2, 3, 4]


def test_convex_zscore_missing_documents_get_the_run_minimum() -> None:
    def z(run: dict[int, float]) -> dict[int, float]:
        mean, std = statistics.fmean(run.values()), statistics.pstdev(run.values())
        return {doc: (score - mean) / std for doc, score in run.items()}

    dense_z, sparse_z = z(DENSE), z(SPARSE)
    expected = {
        doc: dense_z.get(doc, min(dense_z.values())) + sparse_z.get(doc, min(sparse_z.values()))
        for doc in (1, 2, 3, 4)
    }
    fused = fuse([DENSE, SPARSE], method="convex", normalization="zscore")
    assert as_dict(fused) == pytest.approx(expected, rel=1e-12)
    assert_sorted_by_score_then_id(fused)


def test_convex_constant_run_still_rewards_presence() -> None:
    fused = as_dict(fuse([{1: 5.0, 2: 5.0}, {3: 1.0, 1: 0.0}], method="convex"))
    assert fused == pytest.approx({1: 1.0 + 0.0, 2: 1.0 + 0.0, 3: 0.0 + 1.0})


def test_dbsf_three_sigma_with_sample_std() -> None:
    def three_sigma(run: dict[int, float]) -> dict[int, float]:
        mean, std = statistics.fmean(run.values()), statistics.stdev(run.values())
        low, high = mean - 3 * std, mean + 3 * std
        return {doc: min(1.0, max(0.0, (s - low) / (high - low))) for doc, s in run.items()}

    dense, sparse = three_sigma(DENSE), three_sigma(SPARSE)
    expected = {doc: dense.get(doc, 0.0) + sparse.get(doc, 0.0) for doc in (1, 2, 3, 4)}
    fused = fuse([DENSE, SPARSE], method="dbsf")
    assert as_dict(fused) == pytest.approx(expected, rel=1e-12)
    # DENSE is symmetric around its mean 0.5 with sample std 0.4: 0.1 maps to (0.1 - (0.5 - 1.2)) / 2.4.
    assert dense[3] == pytest.approx(0.8 / 2.4)
    assert_sorted_by_score_then_id(fused)


def test_dbsf_does_not_clip_outliers_and_handles_degenerate_runs() -> None:
    # Eleven zeros and one 1: mean 1/12, sample std sqrt(1/12), so the 1 sits 3.18 std above
    # the mean — beyond the 3-sigma window; like Qdrant, ragkit does not clip it to 1.
    run = {doc: 0.0 for doc in range(11)} | {99: 1.0}
    std = math.sqrt(1 / 12)
    assert (1 - 1 / 12) / std > 3
    fused = as_dict(fuse([run], method="dbsf"))
    assert fused[99] == pytest.approx((1 - (1 / 12 - 3 * std)) / (6 * std))
    assert fused[99] > 1.0
    assert fused[0] == pytest.approx((0 - (1 / 12 - 3 * std)) / (6 * std))
    # One document, or all scores equal: the mean, which maps to 0.5.
    assert as_dict(fuse([{5: 3.0}, {6: 2.0, 7: 2.0}], method="dbsf")) == {5: 0.5, 6: 0.5, 7: 0.5}


@pytest.mark.parametrize("method", FUSION_METHODS)
def test_every_method_handles_empty_runs(method: str) -> None:
    assert fuse([], method=method) == []
    assert fuse([{}, {}], method=method) == []
    fused = fuse([{}, {2: 1.0, 1: 3.0}], method=method)
    assert [doc_id for doc_id, _ in fused] == [1, 2]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "borda"}, "unknown"),
        ({"weights": [1.0, -0.5]}, ">= 0"),
        ({"weights": [1.0]}, "one per run"),
        ({"method": "convex", "normalization": "softmax"}, "normalization"),
        ({"k": -1}, "k >= 0"),
    ],
)
def test_invalid_settings_raise_config_error(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        fuse([DENSE, SPARSE], **kwargs)


def test_non_finite_scores_are_refused() -> None:
    with pytest.raises(ConfigError, match="finite"):
        fuse([{1: float("nan")}, SPARSE], method="convex")
