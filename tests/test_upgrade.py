"""Fingerprints cover the tokenizer, and a workspace written by 0.1.0 is upgraded, not refused."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from conftest import build_tiny_model
from tokenizers import normalizers

import ragkit
from ragkit.encoders import DenseEncoder
from ragkit.errors import EncoderMismatchError
from ragkit.store import SCHEMA_VERSION
from ragkit.store_schema import UPGRADES, create_tables

FIXTURE = Path(__file__).parent / "fixtures" / "workspace-v1"
LEGACY_FP = "0b0f9d7edebb99dc7cf57fdda7ceee61"


def without_lowercase() -> DenseEncoder:
    """The tiny model with the same weights, but its tokenizer no longer lowercases."""
    model = build_tiny_model()
    model[0].tokenizer.normalizer = normalizers.Sequence([])
    return DenseEncoder.from_model(model, name="tiny-static")


def test_a_tokenizer_change_changes_the_fingerprint_not_the_legacy_id(tiny_encoder) -> None:  # type: ignore[no-untyped-def]
    other = without_lowercase()
    assert other.fingerprint["weights"] == tiny_encoder.fingerprint["weights"]
    assert other.fingerprint["id"] != tiny_encoder.fingerprint["id"]
    assert other.fingerprint["legacy_id"] == tiny_encoder.fingerprint["legacy_id"]
    # the same tokenizer gives the same id, whatever state encoding left it in
    again = DenseEncoder.from_model(build_tiny_model(), name="tiny-static")
    again.encode_documents(["Backup RESTORE " * 300])
    assert again.fingerprint["id"] == tiny_encoder.fingerprint["id"]


def test_a_query_through_another_tokenizer_is_refused(workspace, docs) -> None:  # type: ignore[no-untyped-def]
    workspace.ingest(docs)
    other = ragkit.open(workspace.root, encoder=without_lowercase(), create=True)
    with other, pytest.raises(EncoderMismatchError, match="tiny-static"):
        other.query("Dog Pear", mode="dense")


def test_a_new_store_and_an_upgraded_one_have_the_same_tables(tmp_path: Path) -> None:
    assert SCHEMA_VERSION == UPGRADES[-1][0] == 5
    old = shutil.copy(FIXTURE / "ws" / "store.sqlite", tmp_path / "old.sqlite")
    with ragkit.open(tmp_path / "new", create=True) as kit:
        new_tables = _tables(kit.store.path)
    store = ragkit.store.Store(Path(old))
    assert store.schema_version == 1 and "index_checksums" not in _tables(Path(old))
    assert store.upgrade() == [2, 3, 4, 5] and store.upgrade() == []
    assert store.schema_version == 5 and _tables(Path(old)) == new_tables
    db = sqlite3.connect(":memory:")
    create_tables(db)
    assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("5",)


def test_the_upgrade_to_4_keeps_chunk_ids_scopes_chunks_and_stores_each_spec(
    tmp_path: Path,
) -> None:
    old = Path(shutil.copy(FIXTURE / "ws" / "store.sqlite", tmp_path / "old.sqlite"))
    db = sqlite3.connect(old)
    before = db.execute("SELECT id, chunk_id, text_hash FROM chunks ORDER BY id").fetchall()
    (meta_fp,) = db.execute("SELECT value FROM meta WHERE key='chunking_fp'").fetchone()
    db.execute("DELETE FROM chunks WHERE id = (SELECT MAX(id) FROM chunks)")  # a deleted chunk
    db.commit()
    db.close()
    store = ragkit.store.Store(old)
    read_before = store.collections()[0]  # a reader of the old store sees the spec to come
    assert read_before.state == "live" and read_before.spec.encoder.fingerprint == LEGACY_FP
    store.upgrade()
    (record,) = store.collections()
    assert record.spec == read_before.spec
    assert record.state == "live" and record.spec.chunking.fingerprint == meta_fp
    assert (record.spec.encoder.model, record.spec.encoder.dim) == ("default", 384)
    assert record.spec.index.backend == "faiss" and record.spec.sparse.model == "bm25"
    assert "qdrant_api_key" not in record.index
    after = store._query("SELECT id, chunk_id, text_hash, chunking_fp FROM chunks ORDER BY id")
    assert [tuple(row[:3]) for row in after] == before[:-1]
    assert {row[3] for row in after} == {meta_fp}
    assert len(store.all_chunk_ids(meta_fp)) == len(before) - 1
    assert len(store.all_chunk_ids("another chunking")) == 0
    # AUTOINCREMENT kept its counter: the deleted chunk's id is never given out again.
    with store.transaction():
        store._exec(
            "INSERT INTO chunks(chunking_fp, chunk_id, doc_id, ordinal, text, context,"
            " headings_json, text_hash) SELECT chunking_fp, 'new', doc_id, 0, '', '', '[]', ''"
            " FROM chunks LIMIT 1"
        )
    assert store.all_chunk_ids(meta_fp).max() == before[-1][0] + 1


def _tables(path: Path) -> dict[str, str]:
    db = sqlite3.connect(path)
    try:
        rows = db.execute("SELECT name, sql FROM sqlite_master WHERE type='table'").fetchall()
    finally:
        db.close()
    return dict(rows)


@pytest.fixture(scope="module")
def default_encoder() -> DenseEncoder:
    """The release's default encoder (all-MiniLM-L6-v2), loaded once for these tests."""
    from ragkit.config import EncoderConfig

    return DenseEncoder.load(EncoderConfig(model="default"))


def test_a_workspace_written_by_0_1_0_answers_the_same_and_is_upgraded_once(
    tmp_path: Path, default_encoder: DenseEncoder
) -> None:
    shutil.copytree(FIXTURE, tmp_path / "fx")
    root, docs = tmp_path / "fx" / "ws", tmp_path / "fx" / "docs"
    expected = json.loads((tmp_path / "fx" / "expected_hits.json").read_text())
    status = expected.pop("_status")
    assert default_encoder.fingerprint["legacy_id"] == status["fingerprint"] == LEGACY_FP
    assert default_encoder.fingerprint["id"] != LEGACY_FP
    # The fixture was encoded under bf16 autocast on a CPU with AMX; float32, and the bf16
    # kernels of a CPU without it (AVX512-BF16 only: 4e-4 apart), agree to ~1e-3 (docs:
    # Precision). The ranking itself must be identical either way.
    tolerance = 2e-3
    store_bytes = hashlib.sha256((root / "store.sqlite").read_bytes()).hexdigest()
    # The saved source points where the fixture was made; point it where the copy is (the
    # workspace reads ragkit.toml when it opens).
    config = (root / "ragkit.toml").read_text().replace("/tmp/fx/docs", docs.as_posix())
    (root / "ragkit.toml").write_text(config)

    kit = ragkit.open(root, create=False, encoder=default_encoder)
    _assert_hits(kit, expected, tolerance)
    report = kit.doctor()
    assert report.ok, report.to_dict()
    # Reading paths wrote nothing: still schema 1, still the old id.
    assert hashlib.sha256((root / "store.sqlite").read_bytes()).hexdigest() == store_bytes
    assert kit.store.schema_version == 1 and kit.collection().record.model_fp == LEGACY_FP

    # Re-ingest from where the docs are now: the writer upgrades schema and fingerprint once.
    first = kit.ingest()
    assert (first.files_unchanged, first.chunks_encoded, first.chunks_added) == (6, 0, 0)
    record = kit.collection().record
    assert record.name == status["collection"]
    assert record.model_fp == default_encoder.fingerprint["id"]
    assert record.encoder["upgraded_from"] == LEGACY_FP and "tokenizer" in record.encoder
    assert record.spec.encoder.fingerprint == record.model_fp and record.state == "live"
    assert kit.store.schema_version == SCHEMA_VERSION
    assert kit.store.counts() == status["counts"]
    cached = kit.store.count_uncached(record.model_fp, record.dim)
    assert cached == 0 and not kit.store.cached_blobs(["x"], LEGACY_FP)

    # Every vector is in the cache under the new id: the same texts from another path are
    # all taken from it, none encoded.
    second = kit.ingest(docs.rename(tmp_path / "moved"))
    assert (second.chunks_added, second.chunks_encoded) == (92, 0)
    assert second.chunks_from_cache == 92
    report = kit.doctor()
    assert report.ok, report.to_dict()
    kit.close()
    with ragkit.open(root, create=False, encoder=default_encoder) as again:
        assert again.collection().record.encoder["upgraded_from"] == LEGACY_FP
        _assert_hits(again, {q: {"dense": m["dense"]} for q, m in expected.items()}, None)


def _assert_hits(kit: ragkit.Workspace, expected: dict, tolerance: float | None) -> None:  # type: ignore[type-arg]
    for query, modes in expected.items():
        for mode, hits in modes.items():
            found = kit.query(query, k=len(hits), mode=mode)
            if tolerance is None:  # after a second source was added: the top hit stays
                assert found[0].chunk_id == hits[0][0], (query, mode)
                continue
            assert [h.chunk_id for h in found] == [c for c, _ in hits], (query, mode)
            for hit, (_, score) in zip(found, hits, strict=True):
                assert hit.score == pytest.approx(score, abs=tolerance), (query, mode)
