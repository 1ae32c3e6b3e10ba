from __future__ import annotations

import numpy as np
import pytest

from ragkit.config import IndexConfig
from ragkit.errors import IndexCorruptError
from ragkit.indexes.faiss_index import FaissIndex


def unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def clustered(rng: np.random.Generator, centers: np.ndarray, n: int) -> np.ndarray:
    """Points around topic centres, the shape real embeddings have (uniform noise is PQ's worst case)."""
    x = centers[rng.integers(len(centers), size=n)] + 0.35 * unit(rng, n, centers.shape[1])
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    centers = unit(rng, 40, 32)
    vectors = clustered(rng, centers, 3000)
    ids = np.arange(100, 3100, dtype=np.int64)
    queries = clustered(rng, centers, 20)
    return ids, vectors, queries


def exact(ids, vectors, queries, k):  # type: ignore[no-untyped-def]
    scores = queries @ vectors.T
    order = np.argsort(-scores, axis=1)[:, :k]
    return ids[order]


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivfpq", "int8"])
def test_kinds_agree_with_exact_search(kind, data, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ids, vectors, queries = data
    config = IndexConfig(kind=kind, ivf_nlist=16, ivf_nprobe=16, pq_m=16, pq_bits=6)
    index = FaissIndex(32, config)
    index.add(ids, vectors)
    _, found = index.search(queries, 10)
    truth = exact(ids, vectors, queries, 10)
    recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)])
    assert recall >= (1.0 if kind == "flat" else 0.9)
    expected = {
        "flat": "IndexFlat",
        "hnsw": "IndexHNSWFlat",
        "ivfpq": "IndexRefine",
        "int8": "IndexScalarQuantizer",
        "binary": "IndexRefine",
    }[kind]
    assert index.structure.startswith(expected)
    index.save(tmp_path / "x.faiss")
    loaded = FaissIndex.load(tmp_path / "x.faiss", 32, config)
    assert np.array_equal(loaded.search(queries, 10)[1], found)


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivfpq", "int8", "binary"])
def test_remove_or_report_rebuild(kind, data) -> None:  # type: ignore[no-untyped-def]
    ids, vectors, queries = data
    index = FaissIndex(32, IndexConfig(kind=kind, ivf_nlist=16, pq_m=16, pq_bits=6))
    index.add(ids, vectors)
    gone = ids[:1500]
    if not index.remove(gone):
        index.rebuild(ids[1500:], vectors[1500:])
    assert len(index) == 1500
    _, found = index.search(queries, 10)
    assert not set(found.ravel()) & set(gone)


def test_allowed_ids_return_k_hits_under_a_selective_filter(data) -> None:  # type: ignore[no-untyped-def]
    ids, vectors, queries = data
    index = FaissIndex(32, IndexConfig())
    index.add(ids, vectors)
    allowed = ids[::300]  # 10 of 3000
    scores, found = index.search(queries[:1], 5, allowed_ids=allowed)
    assert len(found[0]) == 5 and set(found[0]) <= set(allowed)
    truth = exact(allowed, vectors[::300], queries[:1], 5)
    assert list(found[0]) == list(truth[0])


def test_ivfpq_stays_exact_until_there_is_enough_to_train() -> None:
    rng = np.random.default_rng(1)
    index = FaissIndex(32, IndexConfig(kind="ivfpq"))
    index.add(np.arange(50), unit(rng, 50, 32))
    assert index.structure == "IndexFlatIP"


def test_corrupt_file_is_reported(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "bad.faiss"
    path.write_bytes(b"not an index")
    with pytest.raises(IndexCorruptError, match="doctor --repair"):
        FaissIndex.load(path, 32, IndexConfig())


@pytest.fixture(scope="module")
def embeddings() -> tuple[np.ndarray, np.ndarray]:
    """384-d clustered vectors and queries near them: the shape binary codes are meant for."""
    rng = np.random.default_rng(5)
    centers = unit(rng, 60, 384)
    vectors = clustered(rng, centers, 4000)
    queries = vectors[rng.choice(4000, 50, replace=False)] + 0.05 * unit(rng, 50, 384)
    return vectors, (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize(
    ("kind", "refine", "min_recall", "max_bytes"),
    [
        ("int8", True, 0.95, 384 + 30),
        ("binary", True, 0.9, 440 + 30),
        ("binary", False, 0.3, 70),  # a random ranking would score 0.0025
    ],
)
def test_quantized_kinds_trade_memory_for_recall(
    kind, refine, min_recall, max_bytes, embeddings, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    vectors, queries = embeddings
    ids = np.arange(len(vectors), dtype=np.int64)
    index = FaissIndex(384, IndexConfig(kind=kind, refine=refine, refine_k_factor=10))
    index.add(ids, vectors)
    _, found = index.search(queries, 10)
    recall = np.mean(
        [len(set(f) & set(t)) / 10 for f, t in zip(found, exact(ids, vectors, queries, 10))]
    )
    assert recall >= min_recall
    index.save(tmp_path / "q.faiss")
    per_vector = (tmp_path / "q.faiss").stat().st_size / len(vectors)
    assert per_vector <= max_bytes  # float32 flat: 1,536 bytes + 8 for the id
    assert per_vector >= 384 / 8  # one bit per dimension at the very least


def test_trained_kinds_ask_for_a_rebuild_while_they_double() -> None:
    rng = np.random.default_rng(2)
    index = FaissIndex(32, IndexConfig(kind="int8"))
    assert not index.needs_retrain(10)  # empty: add() trains on what it gets
    index.add(np.arange(10), unit(rng, 10, 32))
    assert not index.needs_retrain(9)
    assert index.needs_retrain(10)
    assert not FaissIndex(32, IndexConfig(kind="flat")).needs_retrain(10)
    ivf = FaissIndex(32, IndexConfig(kind="ivfpq", ivf_nlist=4, pq_bits=4))
    ivf.add(np.arange(100), unit(rng, 100, 32))
    assert ivf.structure == "IndexFlatIP"  # 39 x 16 points are needed to train
    assert not ivf.needs_retrain(400)
    assert ivf.needs_retrain(600)
