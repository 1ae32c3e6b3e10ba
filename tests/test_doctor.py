"""`ragkit doctor`: damage a real workspace behind the store's back, find it, repair it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_ingest import index_ids, store_ids
from typer.testing import CliRunner

import ragkit
from ragkit.cli.app import app
from ragkit.doctor import (
    ALIASES,
    CHECKSUMS,
    DENSE_FILE,
    DENSE_IDS,
    DOCUMENT_CACHE,
    DRIFT,
    EMBEDDINGS,
    FOREIGN_KEYS,
    SETTINGS,
    SPARSE_FILE,
    STRAY_FILES,
)
from ragkit.errors import ConfigError, IndexCorruptError, WorkspaceLockedError
from ragkit.indexes.faiss_index import FaissIndex
from ragkit.lock import WorkspaceLock
from ragkit.sparse_channel import sparse_path

runner = CliRunner()


@pytest.fixture
def kit(workspace, docs):  # type: ignore[no-untyped-def]
    workspace.ingest(docs)
    return workspace


def statuses(report) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """check name → status, for the store and the (only) collection."""
    (collection,) = report.collections
    return {c.name: c.status for c in [*report.store, *collection.checks]}


def problems(report) -> set[str]:  # type: ignore[no-untyped-def]
    return {name for name, status in statuses(report).items() if status == "problem"}


def hits(kit: ragkit.Workspace, mode: str = "hybrid") -> list[tuple[str, float]]:
    return [(h.chunk_id, round(h.score, 5)) for h in kit.query("dog pear", k=3, mode=mode)]


def test_healthy_workspace_is_all_ok(kit) -> None:  # type: ignore[no-untyped-def]
    report = kit.doctor()
    assert report.ok and report.repaired == []
    assert set(statuses(report).values()) == {"ok"}
    (collection,) = report.collections
    assert collection.aliases == ["default"] and collection.generation == 1
    assert collection.check(DENSE_IDS).counts == {"extra": 0, "missing": 0, "duplicate": 0}


def test_missing_dense_file_is_reported_and_rebuilt_with_the_same_hits(kit) -> None:  # type: ignore[no-untyped-def]
    before = hits(kit, "dense")
    collection = kit.collection()
    collection.dense_path(collection.record.generation).unlink()
    report = kit.doctor()
    assert not report.ok and problems(report) == {DENSE_FILE}
    assert report.collections[0].check(DENSE_IDS).status == "skipped"
    with pytest.raises(IndexCorruptError, match="doctor --repair"):
        kit.collection().load_dense()
    repaired = kit.doctor(repair=True)
    assert repaired.ok, repaired.to_dict()
    assert repaired.collections[0].generation == 2
    assert any("rebuilt the dense index" in line for line in repaired.repaired)
    assert hits(kit, "dense") == before
    assert store_ids(kit) == index_ids(kit)


def test_ids_removed_from_faiss_are_reported_as_missing_and_repaired(kit) -> None:  # type: ignore[no-untyped-def]
    collection = kit.collection()
    path = collection.dense_path(collection.record.generation)
    index = FaissIndex.load(path, collection.record.dim, collection.index_config)
    dropped = index.ids()[:2]
    assert index.remove(dropped)
    index.save(path)
    report = kit.doctor()
    assert problems(report) == {DENSE_IDS, CHECKSUMS}  # rewritten behind the store's back
    assert report.collections[0].check(DENSE_IDS).counts["missing"] == 2
    assert kit.doctor(repair=True).ok
    assert store_ids(kit) == index_ids(kit)


def test_stray_generation_files_are_reported_and_removed(kit) -> None:  # type: ignore[no-untyped-def]
    collection = kit.collection()
    current = collection.dense_path(collection.record.generation)
    stray = [collection.dense_path(7), collection.dir / ".dense.g000008.faiss.tmp-123"]
    for path in stray:
        shutil.copy(current, path)
    report = kit.doctor()
    assert problems(report) == {STRAY_FILES}
    assert report.collections[0].check(STRAY_FILES).counts == {"files": 2}
    assert all(path.exists() for path in stray)  # checking alone writes nothing
    repaired = kit.doctor(repair=True)
    assert repaired.ok and not any(path.exists() for path in stray)
    assert repaired.collections[0].generation == 1  # nothing needed a new generation
    assert current.exists()


def test_missing_sparse_file_is_rebuilt(kit) -> None:  # type: ignore[no-untyped-def]
    before = hits(kit, "sparse")
    collection = kit.collection()
    sparse_path(collection.dir, kit.sparse_channel, collection.record.generation).unlink()
    assert problems(kit.doctor()) == {SPARSE_FILE}
    repaired = kit.doctor(repair=True)
    assert repaired.ok
    assert any("rebuilt the sparse index" in line for line in repaired.repaired)
    assert hits(kit, "sparse") == before
    assert store_ids(kit) == index_ids(kit)


def test_uncached_vectors_are_encoded_before_the_dense_rebuild(kit) -> None:  # type: ignore[no-untyped-def]
    before = hits(kit, "dense")
    collection = kit.collection()
    kit.store._exec("DELETE FROM embeddings WHERE text_hash IN (SELECT text_hash FROM chunks)")
    collection.dense_path(collection.record.generation).unlink()
    report = kit.doctor()
    # one-chunk documents' vectors are their chunk vectors (document vectors are on by default)
    assert problems(report) == {DENSE_FILE, EMBEDDINGS, DOCUMENT_CACHE}
    assert report.collections[0].check(EMBEDDINGS).counts == {"missing": 4}
    repaired = kit.doctor(repair=True)
    assert repaired.ok, repaired.to_dict()
    assert hits(kit, "dense") == before


def test_store_rows_are_reported_never_deleted(kit) -> None:  # type: ignore[no-untyped-def]
    kit.store._exec("PRAGMA foreign_keys=OFF")
    kit.store._exec("DELETE FROM documents WHERE uri = 'sub/net.md'")
    kit.store._exec("PRAGMA foreign_keys=ON")
    # set_alias refuses a missing collection; an alias left dangling by a lost row is damage
    kit.store._exec("INSERT INTO aliases(alias, collection) VALUES('old', 'gone-collection')")
    chunks = store_ids(kit)
    report = kit.doctor(repair=True)
    assert not report.ok and problems(report) == {FOREIGN_KEYS, ALIASES}
    assert report.store[1].counts == {"rows": 1}
    assert store_ids(kit) == chunks == index_ids(kit)


def test_repair_is_refused_while_another_writer_holds_the_lock(kit) -> None:  # type: ignore[no-untyped-def]
    collection = kit.collection()
    shutil.copy(collection.dense_path(1), collection.dense_path(2))  # a writer's next generation
    holder = WorkspaceLock(kit.root / "write.lock")
    holder.acquire()
    try:
        with pytest.raises(WorkspaceLockedError, match="another ragkit job"):
            kit.doctor(repair=True)
        report = kit.doctor()  # checking still works, and leaves the writer's files alone
        assert report.ok and statuses(report)[STRAY_FILES] == "skipped"
        result = runner.invoke(app, ["doctor", "--repair", "-w", str(kit.root)])
        assert result.exit_code == 75 and "another ragkit job" in result.output
    finally:
        holder.release()
    assert collection.dense_path(2).exists()
    assert problems(kit.doctor()) == {STRAY_FILES}


@pytest.fixture
def cli_workspace(tmp_path: Path, tiny_model, docs) -> Path:  # type: ignore[no-untyped-def]
    """A workspace configured on disk, as a user has it, with the docs ingested."""
    model_dir = tmp_path / "model"
    tiny_model.save(str(model_dir))
    ws = tmp_path / "cli-ws"
    ws.mkdir()
    (ws / "ragkit.toml").write_text(f'[encoder]\nmodel = "{model_dir}"\n', encoding="utf-8")
    result = runner.invoke(app, ["ingest", str(docs), "-w", str(ws)])
    assert result.exit_code == 0, result.output
    return ws


def test_cli_table_json_exit_codes_and_repair(cli_workspace: Path) -> None:
    healthy = runner.invoke(app, ["doctor", "-w", str(cli_workspace)])
    assert healthy.exit_code == 0, healthy.output
    assert "dense ids" in healthy.stdout and "healthy" in healthy.stdout
    dense = next((cli_workspace / "collections").glob("*/dense.g000001.faiss"))
    dense.unlink()
    found = runner.invoke(app, ["doctor", "-w", str(cli_workspace), "--json"])
    assert found.exit_code == 1, found.output
    report = json.loads(found.stdout)
    assert report["ok"] is False
    (collection,) = report["collections"]
    checks = {c["name"]: c for c in collection["checks"]}
    assert checks[DENSE_FILE]["status"] == "problem" and "missing" in checks[DENSE_FILE]["detail"]
    table = runner.invoke(app, ["doctor", "-w", str(cli_workspace)])
    assert table.exit_code == 1 and "doctor --repair" in table.stdout
    repaired = runner.invoke(app, ["doctor", "--repair", "-w", str(cli_workspace)])
    assert repaired.exit_code == 0, repaired.output
    assert "rebuilt the dense index" in repaired.stdout and "healthy" in repaired.stdout
    query = runner.invoke(app, ["query", "dog pear", "-w", str(cli_workspace), "--json"])
    assert query.exit_code == 0 and json.loads(query.stdout)[0]["uri"] == "pets.md"


def test_cli_help_names_repair_and_exit_codes() -> None:
    result = runner.invoke(app, ["doctor", "--help"])
    assert result.exit_code == 0
    assert "--repair" in result.stdout and "75" in result.stdout


def test_empty_collection_is_healthy(workspace) -> None:  # type: ignore[no-untyped-def]
    workspace.ensure_collection()
    report = workspace.doctor()
    assert report.ok and report.collections[0].generation == 0
    assert np.array_equal(workspace.store.all_chunk_ids(), np.zeros(0, dtype=np.int64))


@pytest.mark.parametrize("backend", ["qdrant", "qdrant-edge"])
def test_qdrant_backends_are_checked_and_repaired(tmp_path, tiny_encoder, docs, backend) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("qdrant_client" if backend == "qdrant" else "qdrant_edge")
    kit = ragkit.open(tmp_path / "ws", encoder=tiny_encoder, create=True)
    kit.config.index.backend = backend
    kit.ingest(docs)
    before = hits(kit, "dense")
    report = kit.doctor()
    assert report.ok, report.to_dict()  # a Qdrant Edge generation's open-lock is not stray
    collection = kit.collection()
    current = collection.dense_path(collection.record.generation)
    if current.is_dir():
        shutil.rmtree(current)
    else:
        current.unlink()
    assert problems(kit.doctor()) == {DENSE_FILE}
    repaired = kit.doctor(repair=True)
    assert repaired.ok, repaired.to_dict()
    assert hits(kit, "dense") == before
    assert store_ids(kit) == index_ids(kit)
    kit.close()


def test_splade_index_is_rebuilt_from_its_cache_without_encoding(workspace, docs) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("cognition", reason="the default SPLADE model ships with ragkit[sparse]")
    workspace.config.sparse.model = "splade"
    workspace.ingest(docs)
    before = hits(workspace, "sparse")
    channel = workspace.sparse_channel
    calls: list[int] = []
    original = channel.encoder.encode_documents
    channel.encoder.encode_documents = lambda texts: calls.append(len(texts)) or original(texts)
    collection = workspace.collection()
    sparse_path(collection.dir, channel, collection.record.generation).unlink()
    assert problems(workspace.doctor()) == {SPARSE_FILE}
    assert workspace.doctor(repair=True).ok
    assert calls == []  # every SPLADE vector came from the store's cache
    assert hits(workspace, "sparse") == before
    assert store_ids(workspace) == index_ids(workspace)


def test_a_sparse_channel_switched_on_in_ragkit_toml_is_reported_as_drift_not_built(
    workspace, docs
) -> None:  # type: ignore[no-untyped-def]
    workspace.config.sparse.model = "none"
    workspace.ingest(docs)
    workspace.config.sparse.model = "bm25"
    workspace._sparse_channel = False  # re-read the config
    report = workspace.doctor()
    assert report.ok and problems(report) == set()  # the indexes agree with the store
    check = report.collections[0].check(SETTINGS)
    assert check is not None and check.status == DRIFT
    assert "sparse.model: the collection has 'none', ragkit.toml says 'bm25'" in check.detail
    assert "ragkit migrate start" in check.detail
    repaired = workspace.doctor(repair=True)
    assert repaired.repaired == [] and workspace.collection().record.sparse_fp == ""
    with pytest.raises(ConfigError, match="needs a sparse index"):
        workspace.query("dog pear", k=1, mode="sparse")
