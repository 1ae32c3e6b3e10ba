"""One suite for every index backend: each is compared to a brute-force numpy reference.

The idea is qdrant-client's "congruence" tests: the same data through every backend must give
the same hits — identical for exact backends (up to float noise; the data have no ties), and
recall@10 >= 0.95 for approximate ones. A new backend joins by adding one entry to
``DENSE_BACKENDS`` (or ``SPARSE_BACKENDS``). The ``qdrant-server`` entries run the same cases
on a real Qdrant server where ``QDRANT_URL`` is set, and skip elsewhere.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import sparse

from ragkit.config import IndexConfig
from ragkit.indexes.base import DenseIndex
from ragkit.indexes.faiss_index import FaissIndex

DIM = 32
N = 2000
K = 10
VOCAB = 300


# -- backends -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Backend:
    name: str
    make: Callable[[Path], Any]
    reopen: Callable[[Any, Path], Any]  # save to a file under the folder, open it again
    exact: bool = True
    needs: str | None = None  # module to skip on when it is not installed
    # Quantized codes (int8, binary) hold no exact vectors: even an exactly scored filtered
    # search ranks by approximate scores.
    lossy: bool = False
    min_recall: float = 0.95

    def __str__(self) -> str:
        return self.name


def _faiss(kind: str, min_recall: float = 0.95) -> Backend:
    config = IndexConfig(kind=kind)

    def reopen(index: FaissIndex, folder: Path) -> FaissIndex:
        index.save(folder / "dense.faiss")
        return FaissIndex.load(folder / "dense.faiss", DIM, config)

    return Backend(
        f"faiss-{kind}",
        lambda _: FaissIndex(DIM, config),
        reopen,
        exact=kind == "flat",
        lossy=kind in ("int8", "binary"),
        min_recall=min_recall,
    )


def _qdrant_memory(folder: Path) -> Any:
    from ragkit.indexes.qdrant_index import QdrantIndex

    return QdrantIndex(DIM, collection="chunks")


def _qdrant_path(folder: Path) -> Any:
    from ragkit.indexes.qdrant_index import QdrantIndex

    return QdrantIndex(DIM, path=folder / "qdrant", collection="chunks")


SERVER_SKIP = (
    "set QDRANT_URL to run this suite against a Qdrant server; none can be installed or "
    "reached on these machines, so only qdrant-client's local mode runs here"
)


def _qdrant_server(folder: Path) -> Any:
    """A fresh collection on the server at ``QDRANT_URL`` (it names the test folder)."""
    from ragkit.indexes.qdrant_index import QdrantIndex

    if not os.environ.get("QDRANT_URL"):
        pytest.skip(SERVER_SKIP)
    name = f"ragkit-conformance-{uuid.uuid4().hex[:10]}"
    index = QdrantIndex(DIM, url=os.environ["QDRANT_URL"], collection=name)
    original = index.close

    def close() -> None:
        index.client.delete_collection(name)
        original()

    index.close = close  # type: ignore[method-assign]
    return index


def _qdrant_server_reopen(index: Any, folder: Path) -> Any:
    from ragkit.indexes.qdrant_index import QdrantIndex

    index.save(folder / "dense.g000001.json")
    reopened = QdrantIndex.load(
        folder / "dense.g000001.json", DIM, IndexConfig(qdrant_url=os.environ["QDRANT_URL"])
    )
    own_close = reopened.close

    def close() -> None:  # the collection is deleted once, through the first client
        index.close()
        own_close()

    reopened.close = close  # type: ignore[method-assign]
    return reopened


def _qdrant_reopen(index: Any, folder: Path) -> Any:
    from ragkit.indexes.qdrant_index import QdrantIndex

    index.save(folder / "dense.g000001.json")
    index.close()
    return QdrantIndex.load(folder / "dense.g000001.json", DIM, IndexConfig())


def _edge(kind: str) -> Backend:
    def make(folder: Path) -> Any:
        from ragkit.indexes.qdrant_edge_index import QdrantEdgeIndex

        # A 1 KB indexing threshold so that "hnsw" really builds its graph on this small data.
        return QdrantEdgeIndex(DIM, kind=kind, workdir=folder, indexing_threshold_kb=1)

    def reopen(index: Any, folder: Path) -> Any:
        from ragkit.indexes.qdrant_edge_index import QdrantEdgeIndex

        index.save(folder / "dense.g000001.qedge")
        index.close()
        return QdrantEdgeIndex.load(folder / "dense.g000001.qedge", DIM, IndexConfig(kind=kind))

    return Backend(f"qdrant-edge-{kind}", make, reopen, kind == "flat", "qdrant_edge")


DENSE_BACKENDS = [
    _faiss("flat"),
    _faiss("hnsw"),
    _faiss("int8"),
    # 32 bits per vector keep little of 32-d data: the suite checks behaviour, and recall on
    # real 384-d embeddings is tested in test_faiss_index.py and measured in bench/indexes.py.
    _faiss("binary", min_recall=0.4),
    # Local mode commits SQLite once per point written (~20 ms): in-memory for the bulk tests,
    # the folder only where persistence itself is tested (test_save_and_reopen).
    Backend("qdrant-local", _qdrant_memory, _qdrant_reopen, True, "qdrant_client"),
    Backend("qdrant-server", _qdrant_server, _qdrant_server_reopen, True, "qdrant_client"),
    _edge("flat"),
    _edge("hnsw"),
]


@pytest.fixture
def opened() -> Any:
    """Indexes a test opened; closed at teardown so no Qdrant folder lock outlives its test."""
    indexes: list[Any] = []
    yield indexes
    for index in indexes:
        close = getattr(index, "close", None) or getattr(
            getattr(index, "index", None), "close", None
        )
        if close is not None:
            close()


def _tracked(spec: Backend, opened: list[Any]) -> Backend:
    def make(folder: Path) -> Any:
        opened.append(spec.make(folder))
        return opened[-1]

    def reopen(index: Any, folder: Path) -> Any:
        opened.remove(index)
        opened.append(spec.reopen(index, folder))
        return opened[-1]

    return dataclasses.replace(spec, make=make, reopen=reopen)


@pytest.fixture(params=DENSE_BACKENDS, ids=str)
def backend(request: pytest.FixtureRequest, opened: list[Any]) -> Backend:
    spec: Backend = request.param
    if spec.needs:
        pytest.importorskip(spec.needs)
    return _tracked(spec, opened)


# -- data and reference ---------------------------------------------------------------------
def unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    centers = unit(rng, 20, DIM)
    x = centers[rng.integers(20, size=N)] + 0.4 * unit(rng, N, DIM)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = rng.choice(10**9, size=N, replace=False).astype(np.int64)  # chunk ids: big, sparse
    queries = unit(rng, 12, DIM)
    return ids, x.astype(np.float32), queries


def brute_force(
    ids: np.ndarray, x: np.ndarray, queries: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    scores = queries @ x.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), ids[order]


def assert_matches(
    found: tuple[np.ndarray, np.ndarray],
    truth: tuple[np.ndarray, np.ndarray],
    exact: bool,
    min_recall: float = 0.95,
) -> None:
    scores, ids = found
    assert ids.shape == truth[1].shape
    if exact:
        np.testing.assert_array_equal(ids, truth[1])
        np.testing.assert_allclose(scores, truth[0], atol=1e-5)
    else:
        recall = np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(ids, truth[1])])
        assert recall >= min_recall, recall


def settle(index: Any) -> None:
    """Build the ANN graph now where a backend defers it (Qdrant Edge builds it at save)."""
    optimize = getattr(index, "optimize", None)
    if optimize is not None:
        optimize()


def add_or_rebuild_after_remove(index: DenseIndex, gone: np.ndarray, keep, vectors) -> None:  # type: ignore[no-untyped-def]
    """What CollectionWriter does: remove in place, or rebuild when the structure cannot."""
    if not index.remove(gone):
        index.rebuild(keep, vectors)


# -- dense ----------------------------------------------------------------------------------
def test_top_k_equals_brute_force(backend: Backend, data, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ids, x, queries = data
    index = backend.make(tmp_path)
    assert isinstance(index, DenseIndex)
    index.add(ids, x)
    settle(index)
    assert len(index) == N
    assert_matches(
        index.search(queries, K), brute_force(ids, x, queries, K), backend.exact, backend.min_recall
    )
    one = index.search(queries[:1], K)  # the single-query path can differ from the batch one
    assert_matches(one, brute_force(ids, x, queries[:1], K), backend.exact, backend.min_recall)
    np.testing.assert_array_equal(np.sort(index.ids()), np.sort(ids))


def test_add_remove_readd(backend: Backend, data, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ids, x, queries = data
    index = backend.make(tmp_path)
    index.add(ids, x)
    gone, keep = ids[: N // 3], ids[N // 3 :]
    add_or_rebuild_after_remove(index, gone, keep, x[N // 3 :])
    settle(index)
    assert len(index) == len(keep)
    found = index.search(queries, K)
    assert not set(found[1].ravel()) & set(gone.tolist())
    assert_matches(
        found, brute_force(keep, x[N // 3 :], queries, K), backend.exact, backend.min_recall
    )
    index.add(gone, x[: N // 3])
    settle(index)
    assert len(index) == N
    assert_matches(
        index.search(queries, K), brute_force(ids, x, queries, K), backend.exact, backend.min_recall
    )


def test_allowed_ids_return_k_hits_at_one_percent(backend: Backend, data, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ids, x, queries = data
    index = backend.make(tmp_path)
    index.add(ids, x)
    settle(index)
    rows = np.random.default_rng(3).choice(N, size=N // 100, replace=False)  # 20 of 2000
    scores, found = index.search(queries, K, allowed_ids=ids[rows])
    assert (found >= 0).all(), "a selective filter must still fill all k slots"
    assert set(found.ravel()) <= set(ids[rows].tolist())
    truth = brute_force(ids[rows], x[rows], queries, K)
    assert_matches((scores, found), truth, exact=not backend.lossy, min_recall=0.9)


def test_empty_index_and_empty_filter(backend: Backend, data, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ids, x, queries = data
    index = backend.make(tmp_path)
    assert len(index) == 0
    scores, found = index.search(queries, K)
    assert found.shape[0] == len(queries) and scores.shape == found.shape
    assert (found == -1).all()
    index.add(ids[:5], x[:5])
    scores, found = index.search(queries[:2], K)
    assert found.shape == (2, 5)  # k is capped at the index size, as FAISS does
    _, found = index.search(queries[:2], K, allowed_ids=np.array([], dtype=np.int64))
    assert (found == -1).all()


def test_rebuild_holds_exactly_the_new_vectors(backend: Backend, data, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """What a repair or a retrain does: whatever the index held, afterwards it holds these."""
    ids, x, queries = data
    index = backend.make(tmp_path)
    index.add(ids[:500], x[:500])
    index.rebuild(ids[300:], x[300:])
    settle(index)
    assert len(index) == N - 300
    np.testing.assert_array_equal(np.sort(index.ids()), np.sort(ids[300:]))
    assert_matches(
        index.search(queries, K),
        brute_force(ids[300:], x[300:], queries, K),
        backend.exact,
        backend.min_recall,
    )


def test_save_and_reopen(backend: Backend, data, tmp_path, opened) -> None:  # type: ignore[no-untyped-def]
    ids, x, queries = data
    n = 60  # small: qdrant-local in folder mode writes one SQLite transaction per point
    if backend.name == "qdrant-local":
        backend = _tracked(Backend(backend.name, _qdrant_path, _qdrant_reopen), opened)
    index = backend.make(tmp_path)
    index.add(ids[:n], x[:n])
    add_or_rebuild_after_remove(index, ids[:3], ids[3:n], x[3:n])
    before = index.search(queries, K)
    reopened = backend.reopen(index, tmp_path)
    assert len(reopened) == n - 3
    np.testing.assert_array_equal(np.sort(reopened.ids()), np.sort(ids[3:n]))
    after = reopened.search(queries, K)
    np.testing.assert_array_equal(after[1], before[1])
    np.testing.assert_allclose(after[0], before[0], atol=1e-6)
    truth = brute_force(ids[3:n], x[3:n], queries, K)
    assert_matches(after, truth, exact=not backend.lossy, min_recall=0.9)


# -- sparse ---------------------------------------------------------------------------------
def _sparse_index(_: Path) -> Any:
    from ragkit.indexes.sparse_index import SparseIndex

    return SparseIndex(VOCAB)


def _qdrant_sparse(folder: Path) -> Any:
    return _qdrant_memory(folder).sparse_index()


def _edge_sparse(folder: Path) -> Any:
    from ragkit.indexes.qdrant_edge_index import QdrantEdgeIndex

    return QdrantEdgeIndex(DIM, workdir=folder).sparse_index()


SPARSE_BACKENDS = [
    Backend("sparse-index", _sparse_index, lambda i, _: i, True, "ragkit.indexes.sparse_index"),
    Backend("qdrant-local", _qdrant_sparse, lambda i, _: i, True, "qdrant_client"),
    Backend(
        "qdrant-server",
        lambda f: _qdrant_server(f).sparse_index(),
        lambda i, _: i,
        True,
        "qdrant_client",
    ),
    Backend("qdrant-edge", _edge_sparse, lambda i, _: i, True, "qdrant_edge"),
]


@pytest.fixture(params=SPARSE_BACKENDS, ids=str)
def sparse_backend(request: pytest.FixtureRequest, opened: list[Any]) -> Backend:
    spec: Backend = request.param
    if spec.needs:
        pytest.importorskip(spec.needs, reason=f"{spec.needs} is not available yet")
    return _tracked(spec, opened)


@pytest.fixture(scope="module")
def sparse_data() -> tuple[np.ndarray, sparse.csr_matrix, sparse.csr_matrix]:
    rng = np.random.default_rng(11)
    docs = sparse.random(600, VOCAB, density=0.04, format="csr", random_state=rng, dtype=np.float32)
    docs.data = rng.lognormal(0, 0.5, size=docs.nnz).astype(np.float32)
    queries = sparse.random(10, VOCAB, density=0.05, format="csr", random_state=rng)
    queries = queries.astype(np.float32)
    ids = rng.choice(10**9, size=600, replace=False).astype(np.int64)
    return ids, docs, queries


def sparse_brute_force(ids, docs, queries, k):  # type: ignore[no-untyped-def]
    """Positive scores only (a document sharing no term is no hit), padded with -1 / 0."""
    scores = (queries @ docs.T).toarray()
    out_ids = np.full((queries.shape[0], k), -1, dtype=np.int64)
    out_scores = np.zeros((queries.shape[0], k), dtype=np.float32)
    for row, s in enumerate(scores):
        hits = np.flatnonzero(s > 0)
        hits = hits[np.argsort(-s[hits], kind="stable")][:k]
        out_ids[row, : len(hits)] = ids[hits]
        out_scores[row, : len(hits)] = s[hits]
    return out_scores, out_ids


def test_sparse_top_k_equals_brute_force(sparse_backend: Backend, sparse_data, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ids, docs, queries = sparse_data
    index = sparse_backend.make(tmp_path)
    index.add(ids, docs)
    assert len(index) == len(ids)
    scores, found = index.search(queries, K)
    truth = sparse_brute_force(ids, docs, queries, K)
    np.testing.assert_array_equal(found, truth[1])
    np.testing.assert_allclose(scores, truth[0], atol=1e-5)


def test_sparse_remove_readd_and_filter(sparse_backend: Backend, sparse_data, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ids, docs, queries = sparse_data
    index = sparse_backend.make(tmp_path)
    assert (index.search(queries, K)[1] == -1).all()  # empty index
    index.add(ids, docs)
    assert index.remove(ids[:200])
    truth = sparse_brute_force(ids[200:], docs[200:], queries, K)
    np.testing.assert_array_equal(index.search(queries, K)[1], truth[1])
    index.add(ids[:200], docs[:200])
    allowed = np.arange(0, 600, 60)  # 10 of 600
    found = index.search(queries, K, allowed_ids=ids[allowed])
    truth = sparse_brute_force(ids[allowed], docs[allowed], queries, K)
    np.testing.assert_array_equal(found[1], truth[1])
    np.testing.assert_allclose(found[0], truth[0], atol=1e-5)


def test_points_give_their_sparse_vectors_back(
    sparse_backend: Backend, sparse_data, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """What ``ragkit doctor`` compares with the sparse channel's record (qdrant_sparse)."""
    from ragkit.indexes import ReadsSparseVectors
    from ragkit.indexes.qdrant_common import QdrantSparseView

    ids, docs, _ = sparse_data
    view = sparse_backend.make(tmp_path)
    if not isinstance(view, QdrantSparseView):
        pytest.skip("a SparseIndex is the record itself, not a copy of it")
    points = view.index
    assert isinstance(points, ReadsSparseVectors)
    assert points.sparse_vectors(ids[:5]) == {}  # nothing written yet
    view.add(ids[:100], docs[:100])
    held = points.sparse_vectors(ids[:120])  # the last 20 are no points
    assert set(held) <= set(ids[:100].tolist())
    for at in range(100):
        row = docs[at]
        indices, values = held.get(int(ids[at]), (np.zeros(0, np.int64), np.zeros(0)))
        order = np.argsort(indices)
        np.testing.assert_array_equal(indices[order], row.indices[np.argsort(row.indices)])
        np.testing.assert_allclose(values[order], row.data[np.argsort(row.indices)], rtol=1e-6)
