"""A workspace served from Qdrant: the sparse channel in the Qdrant points, hybrid queries fused
by Qdrant, and store aliases followed by Qdrant aliases.

Runs on qdrant-client's local mode, in-process: no Qdrant server can be installed or reached
on these machines (tests/test_qdrant.py runs the server checks where ``QDRANT_URL`` is set).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import corpus_words

import ragkit
from ragkit.config import FusionConfig
from ragkit.errors import ConfigError

pytest.importorskip("qdrant_client")
pytest.importorskip("bm25s", reason="the BM25 channel needs ragkit[sparse]")

from ragkit.collection import CollectionWriter
from ragkit.indexes.qdrant_index import QdrantIndex

QUERIES = ["apple pear dog", "router subnet", "lemon grape cherry", "cat red", "network dns"]


def make_corpus(root: Path, n: int = 24, seed: int = 3) -> Path:
    """Files of 10, 12, 14, ... words, none a stopword: every chunk has its own BM25 length,
    so no two chunks tie on a query (ranks inside a tie are the engine's choice, and Qdrant's
    differs from ragkit's, so fused scores of tied chunks would differ)."""
    from ragkit.indexes.bm25_index import count_terms

    rng = random.Random(seed)
    words = [w for w in corpus_words() if w.isalpha() and len(w) > 2][:300]
    words = [w for w in words if count_terms([w]).matrix.nnz == 1]
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        chosen = rng.choices(words, k=10 + 2 * i)
        text = ". ".join(" ".join(chosen[at : at + 6]) for at in range(0, len(chosen), 6))
        (root / f"doc{i:02d}.md").write_text(text + ".\n", encoding="utf-8")
    return root


def qdrant_workspace(root: Path, encoder: Any, **index: Any) -> ragkit.Workspace:
    kit = ragkit.open(root, encoder=encoder, create=True)
    kit.config.index.backend = "qdrant"
    for name, value in index.items():
        setattr(kit.config.index, name, value)
    return kit


def hybrid(kit: ragkit.Workspace, *, server_side: bool, **options: Any) -> list[list[Any]]:
    kit.config.fusion.server_side = server_side
    return [
        [(h.chunk_id, h.score) for h in kit.query(q, k=8, mode="hybrid", **options)]
        for q in QUERIES
    ]


def assert_same_hits(found: list[list[Any]], reference: list[list[Any]]) -> None:
    """Fused scores equal rank by rank; ids equal up to the order within a tie."""
    assert [len(hits) for hits in found] == [len(hits) for hits in reference]
    for ours, theirs in zip(found, reference, strict=True):
        np.testing.assert_allclose([s for _, s in ours], [s for _, s in theirs], atol=1e-6)
        for (chunk, score), _ in zip(ours, theirs, strict=True):
            tied = {c for c, s in theirs if abs(s - score) <= 1e-6}
            assert chunk in tied


@pytest.fixture
def engine_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many hybrid queries Qdrant fused itself."""
    calls: list[int] = []
    original = QdrantIndex.search_hybrid

    def counted(self, dense, sparse, k, **options):  # type: ignore[no-untyped-def]
        calls.append(len(dense))
        return original(self, dense, sparse, k, **options)

    monkeypatch.setattr(QdrantIndex, "search_hybrid", counted)
    return calls


# -- the sparse channel in the Qdrant points, fused by Qdrant ---------------------------------
@pytest.mark.parametrize("method", ["dbsf", "rrf"])
def test_server_side_fusion_equals_ragkit_fusion(
    tmp_path, tiny_encoder, engine_calls, method
) -> None:  # type: ignore[no-untyped-def]
    corpus = make_corpus(tmp_path / "docs")
    with qdrant_workspace(tmp_path / "ws", tiny_encoder, qdrant_sparse=True) as kit:
        kit.ingest(corpus)
        assert kit.collection().record.spec.fusion.method == "dbsf"  # the default
        kit.config.set_fusion(FusionConfig(method=method))
        ours = hybrid(kit, server_side=False)
        assert engine_calls == []
        in_engine = hybrid(kit, server_side=True)
        assert engine_calls == [1] * len(QUERIES)
        assert_same_hits(in_engine, ours)
        other = "rrf" if method == "dbsf" else "dbsf"
        kit.config.set_fusion(FusionConfig(method=other))  # the two rank these differently
        assert hybrid(kit, server_side=False) != ours
        kit.config.set_fusion(FusionConfig(method=method))
        assert max(len(hits) for hits in ours) == 8
        points = kit.collection().load_dense()
        records = points.client.scroll(points.collection, limit=100, with_vectors=True)[0]
        points.close()
        assert len(records) == 24 and all(set(r.vector) == {"dense", "sparse"} for r in records)
        # BM25 weights follow the corpus: a changed and a deleted file change every point's
        (corpus / "doc03.md").write_text("# changed\n\napple pear dog router\n", encoding="utf-8")
        (corpus / "doc07.md").unlink()
        kit.ingest(corpus)
        assert_same_hits(hybrid(kit, server_side=True), hybrid(kit, server_side=False))
        where = "uri=*doc1*"  # doc10 ... doc19
        filtered = hybrid(kit, server_side=True, where=where)
        assert_same_hits(filtered, hybrid(kit, server_side=False, where=where))
        assert min(len(hits) for hits in filtered) > 0
        assert all(h.uri.split("/")[-1].startswith("doc1") for h in kit.query("dog", where=where))
        assert hybrid(kit, server_side=True, where="format=pdf") == [[]] * len(QUERIES)


def test_without_qdrant_sparse_ragkit_fuses(tmp_path, tiny_encoder, engine_calls) -> None:  # type: ignore[no-untyped-def]
    corpus = make_corpus(tmp_path / "docs", n=8)
    with qdrant_workspace(tmp_path / "ws", tiny_encoder) as kit:
        kit.ingest(corpus)
        assert hybrid(kit, server_side=True) == hybrid(kit, server_side=False)
        kit.config.index.qdrant_sparse = True  # ragkit.toml only seeds: the spec says no
        hybrid(kit, server_side=True)
        assert engine_calls == []
        points = kit.collection().load_dense()
        records = points.client.scroll(points.collection, limit=100, with_vectors=True)[0]
        points.close()
        assert records and all(set(r.vector) == {"dense"} for r in records)


def test_a_failed_commit_leaves_qdrant_sparse_vectors_of_the_store(
    tmp_path, tiny_encoder, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    corpus = make_corpus(tmp_path / "docs", n=10)
    with qdrant_workspace(tmp_path / "ws", tiny_encoder, qdrant_sparse=True) as kit:
        kit.ingest(corpus)
        before = hybrid(kit, server_side=True)
        (corpus / "doc02.md").write_text("# new\n\nlemon grape cherry lemon\n", encoding="utf-8")
        original = CollectionWriter.commit

        def commit_then_fail(self):  # type: ignore[no-untyped-def]
            original(self)  # Qdrant holds the new points and the new BM25 weights now
            raise RuntimeError("disk full")

        monkeypatch.setattr(CollectionWriter, "commit", commit_then_fail)
        with pytest.raises(RuntimeError, match="disk full"):
            kit.ingest(corpus)
        monkeypatch.undo()
        assert_same_hits(hybrid(kit, server_side=True), before)
        kit.ingest(corpus)
        assert_same_hits(hybrid(kit, server_side=True), hybrid(kit, server_side=False))


def test_qdrant_sparse_needs_a_qdrant_backend(tmp_path, tiny_encoder) -> None:  # type: ignore[no-untyped-def]
    corpus = make_corpus(tmp_path / "docs", n=2)
    with ragkit.open(tmp_path / "ws", encoder=tiny_encoder, create=True) as kit:
        kit.config.index.qdrant_sparse = True
        with pytest.raises(ConfigError, match="qdrant_sparse needs a backend"):
            kit.ingest(corpus)


# -- store aliases followed by Qdrant aliases -------------------------------------------------
@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from conftest import build_tiny_model

    root = tmp_path_factory.mktemp("models")
    for name, dim, seed in (("a", 32, 0), ("b", 48, 1)):
        build_tiny_model(dim=dim, seed=seed).save(str(root / name))
    return {"a": root / "a", "b": root / "b"}


def shared_folder_workspace(root: Path, model: Path, folder: Path) -> ragkit.Workspace:
    """Every collection in one embedded Qdrant folder: one Qdrant instance, as a server is."""
    root.mkdir(parents=True)
    (root / "ragkit.toml").write_text(
        f'[encoder]\nmodel = "{model}"\n\n[index]\nbackend = "qdrant"\nqdrant_path = "{folder}"\n',
        encoding="utf-8",
    )
    return ragkit.open(root, create=True)


def qdrant_aliases(kit: ragkit.Workspace) -> dict[str, str]:
    index = kit.collection().load_dense()
    try:
        return index.aliases()
    finally:
        index.close()


def test_cutover_and_rollback_move_the_qdrant_alias(tmp_path, models, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from ragkit.pipelines import _runner, migrate
    from ragkit.pipelines.migrate import lifecycle

    corpus = make_corpus(tmp_path / "docs", n=6)
    with shared_folder_workspace(tmp_path / "ws", models["a"], tmp_path / "qdrant") as kit:
        kit.ingest(corpus)
        source = kit.collection().name
        target = migrate.start(kit, to=str(models["b"]))["target"]
        assert qdrant_aliases(kit) == {"default": source}  # the job's start caught up
        migrate.cutover(kit, tolerance=1.0)
        assert qdrant_aliases(kit) == {"default": target}
        reader = QdrantIndex(48, path=tmp_path / "qdrant", collection="default")
        assert reader.dim == 48 and len(reader) == len(kit.collection().load_dense())
        reader.close()
        migrate.rollback(kit)
        assert qdrant_aliases(kit) == {"default": source}

        # A crash between the store transaction and the Qdrant call (the job's own catch-up
        # at its end included): the store is the truth.
        with monkeypatch.context() as crashed:
            crashed.setattr(lifecycle, "follow_store_aliases_or_warn", lambda workspace: [])
            crashed.setattr(_runner, "follow_store_aliases_or_warn", lambda workspace: [])
            migrate.cutover(kit, tolerance=1.0)
        assert kit.collection().name == target and qdrant_aliases(kit) == {"default": source}
        found = kit.doctor().collection(target).check("qdrant aliases")
        assert found is not None and found.status == "problem"
        assert f"Qdrant alias 'default' points at {source!r} instead of {target!r}" in found.detail
        report = kit.doctor(repair=True)
        assert f"Qdrant alias 'default' -> '{target}' on {tmp_path / 'qdrant'}" in report.repaired
        assert qdrant_aliases(kit) == {"default": target}


def test_an_unreachable_qdrant_does_not_undo_a_cutover(tmp_path, models, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from ragkit import qdrant_aliases as following
    from ragkit.errors import AliasSyncWarning
    from ragkit.pipelines import migrate

    corpus = make_corpus(tmp_path / "docs", n=4)
    with shared_folder_workspace(tmp_path / "ws", models["a"], tmp_path / "qdrant") as kit:
        kit.ingest(corpus)
        target = migrate.start(kit, to=str(models["b"]))["target"]

        def unreachable(workspace):  # type: ignore[no-untyped-def]
            raise ConnectionError("qdrant:6333 refused the connection")

        monkeypatch.setattr(following, "follow_store_aliases", unreachable)
        with pytest.warns(AliasSyncWarning, match="next writer job or `ragkit doctor --repair`"):
            migrate.cutover(kit, tolerance=1.0)
        assert kit.collection().name == target
        monkeypatch.undo()
        kit.ingest(corpus)  # the next writer job puts Qdrant right
        assert qdrant_aliases(kit) == {"default": target}


def test_a_store_alias_set_by_hand_is_followed(tmp_path, tiny_encoder) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "qdrant"
    corpus = make_corpus(tmp_path / "docs", n=3)
    with qdrant_workspace(tmp_path / "ws", tiny_encoder, qdrant_path=str(folder)) as kit:
        kit.ingest(corpus)
        name = kit.collection().name
        kit.set_alias("readers", name)
        assert qdrant_aliases(kit) == {"default": name, "readers": name}
