"""Damaged workspaces, built for real: every command says what is damaged and what to do."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from test_doctor import hits, problems
from typer.testing import CliRunner

import ragkit
from ragkit.cli.app import app
from ragkit.doctor import CHECKSUMS, STORE_INTEGRITY
from ragkit.errors import DegradedSearchWarning, IndexCorruptError, StoreDamagedError
from ragkit.sparse_channel import sparse_path

runner = CliRunner()
PAGE = 4096


@pytest.fixture
def cli_ws(tmp_path: Path, tiny_model, docs) -> Path:  # type: ignore[no-untyped-def]
    """A workspace configured on disk with the docs ingested, every page in store.sqlite."""
    model_dir = tmp_path / "model"
    tiny_model.save(str(model_dir))
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "ragkit.toml").write_text(f'[encoder]\nmodel = "{model_dir}"\n', encoding="utf-8")
    result = runner.invoke(app, ["ingest", str(docs), "-w", str(ws)])
    assert result.exit_code == 0, result.output
    db = sqlite3.connect(ws / "store.sqlite")
    assert db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0  # all in the file
    db.close()
    return ws


def garble(path: Path, start: int, length: int) -> None:
    """Overwrite bytes in place, keeping the file's size."""
    data = bytearray(path.read_bytes())
    end = min(start + length, len(data))
    data[start:end] = bytes((0x5A ^ i) & 0xFF for i in range(end - start))
    path.write_bytes(bytes(data))


def assert_clean_failure(result, *words: str) -> None:  # type: ignore[no-untyped-def]
    """Exit 1 with one explanatory line: no traceback, no exception escaping the command."""
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    for word in words:
        assert word in result.output, result.output


def test_garbled_store_pages_are_reported_with_what_to_do(cli_ws: Path) -> None:
    store = cli_ws / "store.sqlite"
    garble(store, PAGE, store.stat().st_size - PAGE)  # every page but the header page
    for command in (["query", "dog pear"], ["status"], ["query", "dog", "--mode", "dense"]):
        result = runner.invoke(app, [*command, "-w", str(cli_ws)])
        assert_clean_failure(result, "damaged", "backup", "ragkit doctor")
    doctor = runner.invoke(app, ["doctor", "-w", str(cli_ws), "--json"])
    assert doctor.exit_code == 1 and isinstance(doctor.exception, SystemExit | None)
    report = json.loads(doctor.stdout)
    assert report["ok"] is False
    assert {c["name"]: c["status"] for c in report["store"]}[STORE_INTEGRITY] == "problem"
    with pytest.raises(StoreDamagedError, match=r"damaged.*Restore store\.sqlite from a backup"):
        ragkit.open(cli_ws, create=False).status()  # the Python API: a RagkitError


def test_a_garbled_store_header_is_damage_too(cli_ws: Path) -> None:
    garble(cli_ws / "store.sqlite", 0, 100)
    for command in (["query", "dog pear"], ["status"], ["doctor"]):
        result = runner.invoke(app, [*command, "-w", str(cli_ws)])
        assert_clean_failure(result, "damaged", "backup")
    with pytest.raises(StoreDamagedError, match="not a database"):
        ragkit.open(cli_ws, create=False)


@pytest.mark.parametrize("loss", ["truncated", "deleted"])
def test_a_lost_store_beside_index_files_is_damage_not_a_new_workspace(
    cli_ws: Path, loss: str
) -> None:
    store = cli_ws / "store.sqlite"
    if loss == "truncated":
        store.write_bytes(b"")
    else:
        store.unlink()
    state = "empty" if loss == "truncated" else "missing"
    for command in (["doctor"], ["query", "dog pear"], ["status"]):
        result = runner.invoke(app, [*command, "-w", str(cli_ws)])
        assert_clean_failure(result, state, "Restore store.sqlite from a backup")
    with pytest.raises(StoreDamagedError, match="index files"):
        ragkit.open(cli_ws, create=True)  # not even an ingest may start over on top of them
    # nothing was created or written: the evidence stays as it was
    assert (store.stat().st_size == 0) if loss == "truncated" else not store.exists()
    assert next((cli_ws / "collections").glob("*/dense.g000001.faiss")).exists()


def test_a_damaged_sparse_index_leaves_dense_queries_working(workspace, docs) -> None:  # type: ignore[no-untyped-def]
    workspace.ingest(docs)
    dense_before = hits(workspace, "dense")
    collection = workspace.collection()
    path = sparse_path(collection.dir, workspace.sparse_channel, collection.record.generation)
    garble(path, 0, 64)
    with ragkit.open(workspace.root, encoder=workspace.encoder, create=True) as kit:
        assert hits(kit, "dense") == dense_before
        with pytest.warns(DegradedSearchWarning, match=r"dense channel alone.*doctor --repair"):
            hybrid = hits(kit, "hybrid")
        assert hybrid == dense_before
        with pytest.raises(IndexCorruptError, match=f"{path.name}.*doctor --repair"):
            kit.query("dog pear", mode="sparse")
        assert kit.doctor(repair=True).ok
        assert hits(kit, "sparse")  # rebuilt: sparse and hybrid answer again


def test_cli_hybrid_query_warns_and_answers_from_dense(cli_ws: Path) -> None:
    sparse = next((cli_ws / "collections").glob("*/sparse.g000001.*"))
    sparse.write_bytes(b"\0" * 64)
    result = runner.invoke(app, ["query", "dog pear", "-w", str(cli_ws), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["uri"] == "pets.md"
    assert "warning:" in result.stderr and "dense channel alone" in result.stderr
    sparse_only = runner.invoke(app, ["query", "dog pear", "-w", str(cli_ws), "--mode", "sparse"])
    assert_clean_failure(sparse_only, "doctor --repair")


def test_garbled_faiss_vectors_fail_their_checksum_and_are_rebuilt(workspace, docs) -> None:  # type: ignore[no-untyped-def]
    workspace.ingest(docs)
    before = hits(workspace, "dense")
    collection = workspace.collection()
    path = collection.dense_path(collection.record.generation)
    garble(path, 200, 256)  # inside the vectors: the file still loads, with the same ids
    report = workspace.doctor()
    assert problems(report) == {CHECKSUMS}, report.to_dict()
    assert report.collections[0].check(CHECKSUMS).counts == {
        "dense": 1,
        "sparse": 0,
        "documents": 0,
    }
    repaired = workspace.doctor(repair=True)
    assert repaired.ok, repaired.to_dict()
    assert any("rebuilt the dense index" in line for line in repaired.repaired)
    assert hits(workspace, "dense") == before
    check = repaired.collections[0].check(CHECKSUMS)
    assert check.status == "ok" and "dense.g000002.faiss: ok" in check.detail


def test_qdrant_vectors_have_no_file_to_checksum(tmp_path, tiny_encoder, docs) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("qdrant_client")
    with ragkit.open(tmp_path / "ws", encoder=tiny_encoder, create=True) as kit:
        kit.config.index.backend = "qdrant"
        kit.ingest(docs)
        report = kit.doctor()
        assert report.ok, report.to_dict()
        check = report.collections[0].check(CHECKSUMS)
        assert "no file to checksum" in check.detail and "sparse.g000001" in check.detail


def test_a_writer_committing_between_the_reader_loads_is_not_damage(
    tmp_path: Path, tiny_encoder, docs
) -> None:
    """The window between loading the dense and the sparse file of a generation: a writer that
    commits there removes the generation the reader started on. The reader must load the new
    generation whole, not answer from dense alone with a damage warning."""
    import warnings

    from ragkit.collection import Collection

    ws = tmp_path / "ws"
    writer = ragkit.open(ws, encoder=tiny_encoder, create=True)
    writer.ingest(str(docs))
    reader = ragkit.open(ws, encoder=tiny_encoder)
    (docs / "late.txt").write_text("zebra marker text about quokkas\n", encoding="utf-8")
    real_load_dense = Collection.load_dense
    raced = []

    def load_dense_then_let_a_writer_commit(self):  # type: ignore[no-untyped-def]
        index = real_load_dense(self)
        if not raced:
            raced.append(self.record.generation)
            writer.ingest(str(docs))  # commits the next generation, removing this one's files
        return index

    Collection.load_dense = load_dense_then_let_a_writer_commit  # type: ignore[method-assign]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", DegradedSearchWarning)
            found = reader.query("quokkas", k=3, mode="hybrid")
    finally:
        Collection.load_dense = real_load_dense  # type: ignore[method-assign]
    assert raced, "the writer did not run inside the reader's window"
    assert reader.collection().record.generation == raced[0] + 1
    assert found and found[0].uri == "late.txt"
    assert reader.query("quokkas", k=3, mode="sparse")[0].uri == "late.txt"
