"""Qdrant-specific behaviour: server-side fusion, reconciliation, aliases, modes and errors.

The shared behaviour (top-k, filters, remove, persistence) is in test_index_conformance.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import sparse

from ragkit.collection_spec import CollectionSpec, DenseIndexSpec
from ragkit.config import IndexConfig, WorkspaceConfig
from ragkit.errors import ConfigError, IndexCorruptError, MissingDependencyError
from ragkit.retrieval.fusion import fuse

pytest.importorskip("qdrant_client")

from ragkit.indexes.qdrant_index import QdrantClusterSettings, QdrantIndex

DIM = 16
VOCAB = 200


def _edge(folder: Path) -> Any:
    pytest.importorskip("qdrant_edge")
    from ragkit.indexes.qdrant_edge_index import QdrantEdgeIndex

    return QdrantEdgeIndex(DIM, workdir=folder)


MAKERS = {"qdrant-local": lambda _: QdrantIndex(DIM), "qdrant-edge": _edge}


@pytest.fixture(params=sorted(MAKERS))
def index(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    opened = MAKERS[request.param](tmp_path)
    yield opened
    opened.close()


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def data() -> dict[str, Any]:
    rng = np.random.default_rng(5)
    n = 400
    docs = sparse.random(n, VOCAB, density=0.1, format="csr", random_state=rng, dtype=np.float32)
    queries_sparse = sparse.random(6, VOCAB, density=0.1, format="csr", random_state=rng)
    return {
        "ids": rng.choice(10**6, size=n, replace=False).astype(np.int64),
        "x": unit(rng, n),
        "sparse": docs,
        "queries": unit(rng, 6),
        "queries_sparse": queries_sparse.astype(np.float32),
    }


def filled(index: Any, data: dict[str, Any]) -> Any:
    index.add(data["ids"], data["x"], sparse=data["sparse"])
    return index


def single_channel_runs(index: Any, dense_q, sparse_q, depth: int) -> list[dict[int, float]]:  # type: ignore[no-untyped-def]
    dense_scores, dense_ids = index.search(dense_q[None], depth)
    sparse_scores, sparse_ids = index.search_sparse(sparse_q, depth)
    return [
        {int(i): float(s) for i, s in zip(dense_ids[0], dense_scores[0]) if i >= 0},
        {int(i): float(s) for i, s in zip(sparse_ids[0], sparse_scores[0]) if i >= 0},
    ]


def assert_same_ranking(found_ids, found_scores, reference: list[tuple[int, float]]) -> None:  # type: ignore[no-untyped-def]
    """Scores equal position by position; ids equal up to the order inside a tie."""
    expected = np.array([s for _, s in reference[: len(found_ids)]])
    np.testing.assert_allclose(found_scores, expected, rtol=1e-5, atol=1e-6)
    for position, (point, score) in enumerate(zip(found_ids, found_scores)):
        tied = {i for i, s in reference if abs(s - score) <= 1e-6 + 1e-5 * abs(score)}
        assert point in tied, f"position {position}: {point} not among ids scored {score}"
    assert len(set(found_ids.tolist())) == len(found_ids)


# -- server-side fusion ---------------------------------------------------------------------
@pytest.mark.parametrize("depth", [20, 60])
def test_rrf_equals_ragkit_fusion_of_the_two_runs(index, data, depth) -> None:  # type: ignore[no-untyped-def]
    filled(index, data)
    scores, ids = index.search_hybrid(
        data["queries"], data["queries_sparse"], 10, method="rrf", depth=depth, rrf_k=60
    )
    for row in range(len(data["queries"])):
        runs = single_channel_runs(index, data["queries"][row], data["queries_sparse"][row], depth)
        assert_same_ranking(ids[row], scores[row], fuse(runs, method="rrf", k=60))


def qdrant_dbsf(runs: list[dict[int, float]]) -> list[tuple[int, float]]:
    """Qdrant's DBSF: each run mapped by mean ± 3 sample std to [0, 1], *not* clipped, summed."""
    fused: dict[int, float] = {}
    for run in runs:
        values = np.array(list(run.values()), dtype=np.float64)
        low = values.mean() - 3 * values.std(ddof=1)
        span = 6 * values.std(ddof=1)
        for point, score in run.items():
            fused[point] = fused.get(point, 0.0) + (score - low) / span
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))


def test_dbsf_equals_ragkit_fusion_when_nothing_is_clipped(index, data) -> None:  # type: ignore[no-untyped-def]
    """In a run of n scores no z-score exceeds (n - 1) / sqrt(n) (2.85 for n = 10), so at depth
    10 ragkit's clip to [0, 1] never acts and both must agree exactly."""
    filled(index, data)
    depth = 10
    scores, ids = index.search_hybrid(
        data["queries"], data["queries_sparse"], 10, method="dbsf", depth=depth
    )
    for row in range(len(data["queries"])):
        runs = single_channel_runs(index, data["queries"][row], data["queries_sparse"][row], depth)
        assert_same_ranking(ids[row], scores[row], fuse(runs, method="dbsf"))
        assert_same_ranking(ids[row], scores[row], qdrant_dbsf(runs))


def test_dbsf_does_not_clip_an_outlier(index, data) -> None:  # type: ignore[no-untyped-def]
    """A query equal to a document puts it beyond mean + 3σ: Qdrant scores it above 1 per run,
    and so does ragkit's fuse() — same hits, same scores."""
    filled(index, data)
    dense_q, sparse_q = data["x"][:1], data["sparse"][:1]
    scores, ids = index.search_hybrid(dense_q, sparse_q, 5, method="dbsf", depth=50)
    runs = single_channel_runs(index, dense_q[0], sparse_q, 50)
    assert_same_ranking(ids[0], scores[0], qdrant_dbsf(runs))
    assert ids[0, 0] == data["ids"][0] and scores[0, 0] > 2.0
    assert_same_ranking(ids[0], scores[0], fuse(runs, method="dbsf"))


def test_hybrid_respects_allowed_ids_and_empty_sparse_queries(index, data) -> None:  # type: ignore[no-untyped-def]
    filled(index, data)
    allowed = data["ids"][::40]  # 10 of 400
    _, ids = index.search_hybrid(data["queries"], data["queries_sparse"], 5, allowed_ids=allowed)
    assert set(ids.ravel()) <= set(allowed.tolist()) and (ids >= 0).all()
    no_terms = sparse.csr_matrix((2, VOCAB), dtype=np.float32)
    assert (index.search_sparse(no_terms, 5)[1] == -1).all()
    _, hybrid = index.search_hybrid(data["queries"][:2], no_terms, 5, depth=50)
    _, dense = index.search(data["queries"][:2], 5)
    np.testing.assert_array_equal(hybrid, dense)  # only the dense run: RRF keeps its order


def test_writing_one_channel_keeps_the_other(index, data) -> None:  # type: ignore[no-untyped-def]
    ids, x = data["ids"][:50], data["x"][:50]
    index.add(ids, x)
    index.add_sparse(ids, data["sparse"][:50])
    index.add(ids, x)  # an update of the dense vector must not drop the sparse one
    assert len(index) == 50
    found = index.search_sparse(data["sparse"][:3], 1)[1][:, 0]
    np.testing.assert_array_equal(found, ids[:3])
    with pytest.raises(ValueError, match="non-negative"):
        index.add(np.array([-1]), x[:1])


# -- reconciliation, manifest, aliases ------------------------------------------------------
def test_reconcile_reports_extra_and_missing_points(index, data) -> None:  # type: ignore[no-untyped-def]
    ids, x = np.arange(10, dtype=np.int64), data["x"][:10]
    index.add(ids, x)
    expected = np.arange(5, 15, dtype=np.int64)  # the store after a crash: 0-4 gone, 10-14 new
    extra, missing = index.reconcile(expected)
    np.testing.assert_array_equal(extra, np.arange(5))
    np.testing.assert_array_equal(missing, np.arange(10, 15))
    index.remove(extra)  # what the writer does with them
    index.add(missing, data["x"][10:15])
    assert [len(a) for a in index.reconcile(expected)] == [0, 0]
    assert len(index) == 10


def test_save_writes_a_manifest_and_load_checks_it(tmp_path, data) -> None:  # type: ignore[no-untyped-def]
    index = QdrantIndex(DIM, path=tmp_path / "qdrant", collection="docs")
    index.add(data["ids"][:4], data["x"][:4])
    manifest = tmp_path / "dense.g000003.json"
    index.save(manifest)
    index.close()
    recorded = json.loads(manifest.read_text())
    assert recorded | {"format": 1} == {
        "backend": "qdrant",
        "mode": "path",
        "collection": "docs",
        "dim": DIM,
        "points": 4,
        "format": 1,
    }
    reopened = QdrantIndex.load(manifest, DIM, IndexConfig())
    assert reopened.collection == "docs" and len(reopened) == 4
    reopened.close()
    with pytest.raises(IndexCorruptError, match="expected 'qdrant', 8"):
        QdrantIndex.load(manifest, 8, IndexConfig())
    manifest.write_text("{not json")
    with pytest.raises(IndexCorruptError, match="doctor --repair"):
        QdrantIndex.load(manifest, DIM, IndexConfig())


def test_alias_swap_redirects_readers(tmp_path, data) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "qdrant"
    old = QdrantIndex(DIM, path=folder, collection="v1")
    new = QdrantIndex(DIM, path=folder, collection="v2")  # same folder: one shared client
    old.add(np.array([1, 2]), data["x"][:2])
    new.add(np.array([7, 8, 9]), data["x"][2:5])
    old.set_alias("default", "v1")
    reader = QdrantIndex(DIM, path=folder, collection="default")
    assert set(reader.ids().tolist()) == {1, 2}
    new.set_alias("default", "v2")  # the migration's atomic swap
    assert set(reader.ids().tolist()) == {7, 8, 9}
    assert reader.aliases() == {"default": "v2"}
    for opened in (reader, new, old):
        opened.close()


def test_a_second_process_gets_a_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "qdrant"
    index = QdrantIndex(DIM, path=folder)
    code = (
        "import sys; from ragkit.indexes.qdrant_index import QdrantIndex\n"
        "from ragkit.errors import WorkspaceError\n"
        f"try: QdrantIndex({DIM}, path={str(folder)!r})\n"
        "except WorkspaceError as e: print(e); sys.exit(3)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    index.close()
    assert done.returncode == 3, done.stderr
    assert "open in another process" in done.stdout and "qdrant_url" in done.stdout


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_edge_generations_are_never_written_again(tmp_path, data) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("qdrant_edge")
    from ragkit.indexes.qdrant_edge_index import QdrantEdgeIndex

    config = IndexConfig(kind="hnsw")
    writer = QdrantEdgeIndex(DIM, kind="hnsw", workdir=tmp_path)
    filled(writer, data)
    first, second = tmp_path / "dense.g000001.qedge", tmp_path / "dense.g000002.qedge"
    writer.save(first)
    writer.close()
    frozen = _digest(first)
    reader = QdrantEdgeIndex.load(first, DIM, config)
    writer = QdrantEdgeIndex.load(first, DIM, config)
    writer.remove(data["ids"][:100])  # copy-on-write: a private working copy takes the change
    writer.add(data["ids"][:10], data["x"][:10])
    writer.save(second)
    assert _digest(first) == frozen
    assert len(reader) == 400 and len(reader.ids()) == 400
    assert len(writer) == 310
    later = QdrantEdgeIndex.load(second, DIM, config)
    assert len(later.ids()) == 310
    later.close()
    writer.remove(data["ids"][:5])  # never saved: close() discards the working copy
    writer.close()
    reader.close()
    assert not list(tmp_path.glob(".dense.edge-work-*"))
    with pytest.raises(IndexCorruptError, match="expected 'qdrant-edge', 8"):
        QdrantEdgeIndex.load(first, 8, config)


def test_missing_client_names_the_extra(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setitem(sys.modules, "qdrant_client", None)
    with pytest.raises(MissingDependencyError, match=r"ragkit\[qdrant\]"):
        QdrantIndex(DIM)
    monkeypatch.setitem(sys.modules, "qdrant_edge", None)
    from ragkit.indexes.qdrant_edge_index import QdrantEdgeIndex

    with pytest.raises(MissingDependencyError, match="qdrant-edge-py"):
        QdrantEdgeIndex(DIM)


# -- cluster settings -----------------------------------------------------------------------
CLUSTER = {
    "qdrant_shard_number": 3,
    "qdrant_replication_factor": 2,
    "qdrant_write_consistency_factor": 2,
    "qdrant_on_disk": True,
    "qdrant_on_disk_payload": False,
    "qdrant_quantization": "scalar",
}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"qdrant_shard_number": -1}, "qdrant_shard_number must be an integer >= 0"),
        ({"qdrant_replication_factor": 1.5}, "qdrant_replication_factor must be an integer"),
        ({"qdrant_shard_number": True}, "qdrant_shard_number must be an integer"),
        ({"qdrant_quantization": "int4"}, r"qdrant_quantization 'int4' is unknown; use one of"),
        ({"qdrant_on_disk": "yes"}, "qdrant_on_disk must be true or false"),
        ({"qdrant_write_consistency_factor": 3, "qdrant_replication_factor": 2}, "exceeds"),
        ({"qdrant_write_consistency_factor": 2}, "qdrant_replication_factor = 1"),
    ],
)
def test_cluster_settings_are_validated(values, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=message):
        WorkspaceConfig.from_dict({"index": {"backend": "qdrant", **values}}, origin="ragkit.toml")


def test_cluster_settings_live_in_the_spec_and_come_back_from_it() -> None:
    config = WorkspaceConfig.from_dict(
        {"index": {"backend": "qdrant", "qdrant_url": "http://q:6333", **CLUSTER}}
    )
    spec = CollectionSpec(index=DenseIndexSpec.from_config(config.index))
    stored = CollectionSpec.from_json(spec.to_json())
    assert {k: stored.index.params[k] for k in CLUSTER} == CLUSTER
    rebuilt = stored.index.config()
    assert {k: getattr(rebuilt, k) for k in CLUSTER} == CLUSTER
    assert "qdrant_api_key" not in stored.to_json() and stored.index.api_key_env == "QDRANT_API_KEY"


def test_create_collection_gets_every_cluster_setting(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Local mode accepts the server-only settings and ignores them: the call must still carry
    them, and what local mode reports (per-vector on-disk and quantization) must show them."""
    import qdrant_client

    calls: list[dict[str, Any]] = []
    original = qdrant_client.QdrantClient.create_collection

    def spy(self, collection_name, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(kwargs)
        return original(self, collection_name, **kwargs)

    monkeypatch.setattr(qdrant_client.QdrantClient, "create_collection", spy)
    config = IndexConfig(backend="qdrant", **CLUSTER)
    index = QdrantIndex.from_config(DIM, config, directory=tmp_path, name="docs")
    (sent,) = calls
    assert (sent["shard_number"], sent["replication_factor"]) == (3, 2)
    assert sent["write_consistency_factor"] == 2 and sent["on_disk_payload"] is False
    index.close()
    reopened = QdrantIndex.from_config(DIM, config, directory=tmp_path, name="docs")
    assert len(calls) == 1  # the collection exists now: created once, then only opened
    params = reopened.client.get_collection("docs").config.params
    dense, sparse_params = params.vectors["dense"], params.sparse_vectors["sparse"]
    assert dense.on_disk is True and sparse_params.index.on_disk is True
    assert dense.quantization_config.scalar.type.value == "int8"
    reopened.close()


@pytest.mark.parametrize(
    ("name", "field"), [("binary", "binary"), ("product", "product"), ("none", None)]
)
def test_each_quantization_reaches_the_dense_vector(name, field) -> None:  # type: ignore[no-untyped-def]
    index = QdrantIndex(DIM, cluster=QdrantClusterSettings(quantization=name))
    found = index.client.get_collection("ragkit").config.params.vectors["dense"]
    index.close()
    quantization = found.quantization_config
    assert quantization is None if field is None else getattr(quantization, field) is not None


# -- a real server ----------------------------------------------------------------------------
@pytest.mark.skipif(
    not os.environ.get("QDRANT_URL"),
    reason="set QDRANT_URL to run against a Qdrant server; no server binary can be installed here",
)
def test_server_mode_agrees_with_local_mode(data) -> None:  # type: ignore[no-untyped-def]
    name = f"ragkit-test-{uuid.uuid4().hex[:8]}"
    server = QdrantIndex(DIM, url=os.environ["QDRANT_URL"], collection=name)
    local = QdrantIndex(DIM)
    try:
        for target in (server, local):
            filled(target, data)
        q, sq = data["queries"], data["queries_sparse"]
        for call in (
            lambda i: i.search(q, 10),
            lambda i: i.search(q, 10, allowed_ids=data["ids"][::40]),
            lambda i: i.search_sparse(sq, 10),
            lambda i: i.search_hybrid(q, sq, 10, method="rrf", depth=50),
            lambda i: i.search_hybrid(q, sq, 10, method="dbsf", depth=50),
        ):
            (s_scores, s_ids), (l_scores, l_ids) = call(server), call(local)
            np.testing.assert_allclose(s_scores, l_scores, rtol=1e-5, atol=1e-6)
            np.testing.assert_array_equal(s_ids, l_ids)
        server.set_alias(f"{name}-alias", name)
        assert server.aliases()[f"{name}-alias"] == name
        assert [len(a) for a in server.reconcile(data["ids"])] == [0, 0]
    finally:
        server.client.delete_collection(name)
        server.close()
        local.close()
