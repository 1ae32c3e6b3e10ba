"""Ingest end to end on real files, the real store and a real FAISS index (tiny encoder)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

import ragkit
from ragkit.config import ChunkingConfig
from ragkit.encoders import DenseEncoder
from ragkit.errors import EncoderMismatchError, WorkspaceError, WorkspaceLockedError
from ragkit.lock import WorkspaceLock


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def index_ids(kit: ragkit.Workspace) -> set[int]:
    """Chunk ids in the dense index; the sparse index must hold exactly the same."""
    collection = kit.collection()
    assert collection is not None
    dense = set(collection.load_dense().ids().tolist())
    channel = kit.sparse_channel
    assert channel is not None and collection.has_sparse(channel)
    assert set(collection.load_sparse(channel).ids().tolist()) == dense
    return dense


def store_ids(kit: ragkit.Workspace) -> set[int]:
    """Chunk ids of the default collection's chunking (other collections may chunk otherwise)."""
    collection = kit.collection()
    scope = collection.chunking_fp if collection is not None else None
    return set(kit.store.all_chunk_ids(scope).tolist())


def test_ingest_then_query_finds_the_right_section(workspace, docs) -> None:  # type: ignore[no-untyped-def]
    report = workspace.ingest(docs)
    assert (report.files_new, report.files_failed, report.documents_added) == (3, 0, 3)
    assert report.chunks_added == report.chunks_encoded == 4
    hits = workspace.query("dog pear", k=2)
    assert hits[0].uri == "pets.md" and hits[0].headings == ("Pets", "Dogs")
    assert hits[0].text == "the dog ate a green pear"
    assert hits[0].metadata["source"] == os.path.normpath(str(docs))
    assert store_ids(workspace) == index_ids(workspace)


def test_unchanged_files_are_skipped_without_encoding(workspace, docs) -> None:  # type: ignore[no-untyped-def]
    workspace.ingest(docs)
    again = workspace.ingest(docs)
    assert (again.files_unchanged, again.chunks_encoded, again.chunks_added) == (3, 0, 0)
    assert again.commits == 0
    # touching a file (same bytes, new mtime) is still no work
    os.utime(docs / "fruit.txt", ns=(time.time_ns(), time.time_ns() + 10**9))
    touched = workspace.ingest(docs)
    assert (touched.files_unchanged, touched.chunks_encoded, touched.chunks_added) == (3, 0, 0)


def test_changed_file_replaces_only_its_chunks(workspace, docs) -> None:  # type: ignore[no-untyped-def]
    workspace.ingest(docs)
    before = store_ids(workspace)
    write(
        docs / "pets.md",
        "# Pets\n\n## Cats\n\nthe cat sat on the red apple\n\n## Fish\n\nthe fish swam\n",
    )
    report = workspace.ingest(docs)
    assert (report.files_changed, report.documents_updated) == (1, 1)
    assert report.chunks_encoded == 1  # the Cats chunk comes from the cache
    assert report.chunks_from_cache == 1
    after = store_ids(workspace)
    assert len(after) == len(before) and after != before
    assert after == index_ids(workspace)
    assert workspace.query("fish swam", k=1)[0].headings == ("Pets", "Fish")
    assert all("dog" not in h.text for h in workspace.query("dog pear", k=10))


def test_deleted_file_leaves_store_and_index(workspace, docs) -> None:  # type: ignore[no-untyped-def]
    workspace.ingest(docs)
    (docs / "sub" / "net.md").unlink()
    report = workspace.ingest(docs)
    assert (report.files_deleted, report.documents_deleted, report.chunks_deleted) == (1, 1, 1)
    assert all(h.uri != "sub/net.md" for h in workspace.query("dns router", k=10))
    assert store_ids(workspace) == index_ids(workspace)
    assert workspace.store.counts()["files"] == 2


def test_deletion_is_scoped_to_its_source(workspace, docs, tmp_path) -> None:  # type: ignore[no-untyped-def]
    other = tmp_path / "other"
    write(other / "x.txt", "alpha beta gamma")
    workspace.ingest(docs)
    workspace.ingest(other)
    assert workspace.store.counts()["documents"] == 4
    workspace.ingest(docs)  # only docs/ is walked: other/ must not be touched
    assert workspace.store.counts()["documents"] == 4
    workspace.ingest()  # no paths: every configured source
    assert {s.name for s in workspace.config.sources} == {
        os.path.normpath(str(docs)),
        os.path.normpath(str(other)),
    }


def test_missing_source_root_deletes_nothing(workspace, docs) -> None:  # type: ignore[no-untyped-def]
    workspace.ingest(docs)
    moved = docs.with_name("moved")
    docs.rename(moved)
    report = workspace.ingest(docs)
    assert report.files_deleted == 0 and not report.ok
    assert "does not exist" in report.failures[0].reason
    assert workspace.store.counts()["documents"] == 3


def test_bad_files_are_listed_and_the_rest_ingested(workspace, docs) -> None:  # type: ignore[no-untyped-def]
    (docs / "empty.txt").write_bytes(b"")
    (docs / "binary.txt").write_bytes(b"\x00\x01\x02" * 100)
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 garbage")
    (docs / "image.xyz").write_bytes(b"??")
    report = workspace.ingest(docs)
    assert report.files_new == 3
    failed = {Path(f.path).name: f.reason for f in report.failures}
    assert set(failed) == {"empty.txt", "binary.txt", "broken.pdf"}
    assert "binary" in failed["binary.txt"]
    assert report.files_failed == 3
    # An unsupported type is skipped and counted, not failed; strict makes it a failure.
    assert (report.files_skipped, report.skipped_types) == (1, {".xyz": 1})
    strict = workspace.ingest(docs, strict=True)
    assert {Path(f.path).name for f in strict.failures} == {*failed, "image.xyz"}
    assert strict.files_skipped == 0


def test_a_file_that_turns_bad_keeps_its_last_good_version(workspace, docs) -> None:  # type: ignore[no-untyped-def]
    workspace.ingest(docs)
    (docs / "fruit.txt").write_bytes(b"\x00\x00\x00 now binary")
    report = workspace.ingest(docs)
    assert report.files_failed == 1 and report.documents_deleted == 0
    assert workspace.query("banana cherry", k=1)[0].uri == "fruit.txt"


def test_a_chunking_edit_is_reported_not_applied_and_a_new_collection_reuses_the_cache(
    tmp_path, tiny_encoder, docs
) -> None:  # type: ignore[no-untyped-def]
    kit = ragkit.open(tmp_path / "ws", encoder=tiny_encoder, create=True)
    kit.ingest(docs)
    before = store_ids(kit)
    kit.close()
    kit = ragkit.open(tmp_path / "ws", encoder=tiny_encoder, create=True)
    kit.config.chunking = ChunkingConfig(max_tokens=400, context_headers=False, overlap_tokens=8)
    report = kit.ingest()
    assert (report.chunks_added, report.chunks_deleted, report.chunks_encoded) == (0, 0, 0)
    assert any(
        "chunking.context_headers" in p and "ragkit migrate start" in p for p in report.problems
    )
    assert store_ids(kit) == before == index_ids(kit)  # the live collection kept its chunks
    # The new settings go to a collection of their own, over the same documents.
    calls: list[int] = []
    original = tiny_encoder.encode_documents
    tiny_encoder.encode_documents = lambda texts: calls.append(len(texts)) or original(texts)
    try:
        other = kit.create_collection("no-headers", chunking=kit.config.chunking)
    finally:
        del tiny_encoder.encode_documents
    assert other.chunking_fp != kit.collection().chunking_fp
    ids = set(kit.store.all_chunk_ids(other.chunking_fp).tolist())
    assert len(ids) == 4 and not ids & before and set(other.load_dense().ids().tolist()) == ids
    assert sum(calls) == 4  # no headers: other texts, so encoded once (and cached)
    assert store_ids(kit) == before == index_ids(kit)
    kit.close()


def test_query_with_another_encoder_is_refused(workspace, docs, tiny_model) -> None:  # type: ignore[no-untyped-def]
    from sentence_transformers import SentenceTransformer  # noqa: F401 - model class in use

    workspace.ingest(docs)
    other = DenseEncoder.from_model(tiny_model, name="tiny-static")
    other.query_prompt = "query: "  # same weights, different prompt → different fingerprint
    other.__dict__.pop("fingerprint", None)
    kit = ragkit.open(workspace.root, encoder=other, create=True)
    with pytest.raises(EncoderMismatchError, match="fingerprint"):
        kit.query("cat")
    with pytest.raises(EncoderMismatchError, match="tiny-static"):
        kit.ingest(docs)


def test_filters_restrict_hits_and_still_fill_k(workspace, docs) -> None:  # type: ignore[no-untyped-def]
    workspace.ingest(docs)
    hits = workspace.query("the cat", k=5, where="uri=sub/*")
    assert [h.uri for h in hits] == ["sub/net.md"]
    hits = workspace.query("the cat", k=5, where=["format=txt"])
    assert {h.uri for h in hits} == {"fruit.txt"} and len(hits) == 1
    assert workspace.query("cat", k=5, where={"format": "pdf"}) == []


def test_second_writer_is_refused_and_lock_is_taken_over_after_death(workspace, docs) -> None:  # type: ignore[no-untyped-def]
    holder = WorkspaceLock(workspace.root / "write.lock")
    holder.acquire()
    try:
        with pytest.raises(WorkspaceLockedError, match=f"pid {os.getpid()}"):
            workspace.ingest(docs)
    finally:
        holder.release()
    assert workspace.ingest(docs).files_new == 3


def test_open_without_create_names_the_folder(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(WorkspaceError, match="no ragkit workspace"):
        ragkit.open(tmp_path / "nowhere", create=False)


def test_queries_in_batch_match_single_queries(workspace, docs) -> None:  # type: ignore[no-untyped-def]
    workspace.ingest(docs)
    batch = workspace.query_many(["dog pear", "dns router"], k=2)
    singles = [workspace.query(q, k=2) for q in ["dog pear", "dns router"]]
    assert [[h.chunk_id for h in hits] for hits in batch] == [
        [h.chunk_id for h in hits] for hits in singles
    ]
    assert np.isclose(batch[0][0].score, singles[0][0].score)


def test_int8_index_is_retrained_on_every_vector_as_the_workspace_grows(
    tmp_path, tiny_encoder, docs
) -> None:  # type: ignore[no-untyped-def]
    import faiss

    kit = ragkit.open(tmp_path / "ws", encoder=tiny_encoder, create=True)
    kit.config.index.kind = "int8"
    for path in list(docs.rglob("*.*"))[1:]:
        path.unlink()
    kit.ingest(docs)  # one file: the quantizer learns the value ranges of a few chunks
    first = len(store_ids(kit))
    for i in range(12):
        write(docs / f"more-{i}.txt", f"dns router apple {i} cherry grape dog pear elephant\n")
    kit.ingest(docs)
    assert len(store_ids(kit)) > 2 * first
    assert store_ids(kit) == index_ids(kit)
    collection = kit.collection()
    assert collection is not None
    index = collection.load_dense()
    ids, vectors, _ = collection.vectors_from_cache()
    reference = faiss.IndexScalarQuantizer(
        vectors.shape[1], faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
    )
    reference.train(vectors)
    quantizer = faiss.downcast_index(index._index.index)
    np.testing.assert_allclose(
        faiss.vector_to_array(quantizer.sq.trained), faiss.vector_to_array(reference.sq.trained)
    )
    kit.close()


@pytest.mark.parametrize("backend", ["qdrant", "qdrant-edge"])
def test_qdrant_backends_serve_the_same_workspace_flow(
    tmp_path, tiny_encoder, docs, backend
) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("qdrant_client" if backend == "qdrant" else "qdrant_edge")
    kit = ragkit.open(tmp_path / "ws", encoder=tiny_encoder, create=True)
    kit.config.index.backend = backend
    kit.ingest(docs)
    faiss_kit = ragkit.open(tmp_path / "faiss", encoder=tiny_encoder, create=True)
    faiss_kit.ingest(docs)
    for mode in ("dense", "hybrid"):
        ours = [(h.uri, h.headings) for h in kit.query("dog pear", k=3, mode=mode)]
        reference = [(h.uri, h.headings) for h in faiss_kit.query("dog pear", k=3, mode=mode)]
        assert ours == reference, mode
    (docs / "sub" / "net.md").unlink()
    write(docs / "fruit.txt", "cherry grape only\n")
    kit.ingest(docs)
    assert store_ids(kit) == index_ids(kit)
    assert kit.query("cherry grape", k=1, where="format=txt")[0].text == "cherry grape only"
    kit.close()
    faiss_kit.close()


def test_qdrant_written_in_place_is_reconciled_after_a_failed_commit(
    tmp_path, tiny_encoder, docs, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("qdrant_client")
    from ragkit.collection import CollectionWriter

    kit = ragkit.open(tmp_path / "ws", encoder=tiny_encoder, create=True)
    kit.config.index.backend = "qdrant"
    kit.ingest(docs)
    before = store_ids(kit)
    write(docs / "new.md", "# New\n\nzeta epsilon delta\n")
    original = CollectionWriter.commit

    def commit_then_fail(self):  # type: ignore[no-untyped-def]
        original(self)  # Qdrant now holds the new chunk; the store transaction will roll back
        raise RuntimeError("disk full")

    monkeypatch.setattr(CollectionWriter, "commit", commit_then_fail)
    with pytest.raises(RuntimeError, match="disk full"):
        kit.ingest(docs)
    monkeypatch.undo()
    assert store_ids(kit) == before
    collection = kit.collection()
    assert set(collection.load_dense().ids().tolist()) == before  # reconciled on rollback
    assert kit.ingest(docs).files_new == 1
    assert store_ids(kit) == index_ids(kit)
    kit.close()


def test_a_splade_collection_beside_bm25_shares_the_chunks_and_caches_its_vectors(
    workspace, docs
) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("cognition", reason="the default SPLADE model ships with ragkit[sparse]")
    workspace.ingest(docs)
    bm25 = workspace.collection()
    workspace.config.sparse.model = "splade"
    workspace._sparse_channel = False  # re-read the config
    channel = workspace.sparse_channel
    calls: list[int] = []
    original = channel.encoder.encode_documents
    channel.encoder.encode_documents = lambda texts: calls.append(len(texts)) or original(texts)
    report = workspace.ingest(docs)  # the edit is reported, the live collection keeps BM25
    assert any(
        "sparse.model: the collection has 'bm25', ragkit.toml says 'splade'" in p
        for p in report.problems
    )
    assert calls == [] and workspace.collection().record.sparse["kind"] == "bm25"
    splade = workspace.create_collection("splade")  # seeded from the config: SPLADE
    assert splade.chunking_fp == bm25.chunking_fp  # the same chunk rows, not a copy
    assert workspace.store.counts()["chunks"] == 4
    assert sum(calls) == 4  # every chunk encoded once by SPLADE, dense vectors from the cache
    cached = workspace.store.cached_blobs(
        [h for _, h, _ in workspace.store.chunk_hashes()], channel.fingerprint
    )
    assert len(cached) == 4
    hit = workspace.query("dog pear", k=1, mode="sparse", collection="splade")[0]
    assert hit.headings == ("Pets", "Dogs")
    # Both collections are kept in step by the next ingest; SPLADE encodes only the new chunk.
    write(docs / "new.md", "# Birds\n\nthe bird ate a plum\n")
    workspace.ingest(docs)
    assert sum(calls) == 5
    for name in (bm25.name, "splade"):
        collection = workspace.collection(name)
        sparse = workspace.sparse_channel_for(collection)
        ids = set(collection.load_sparse(sparse).ids().tolist())
        assert ids == set(collection.load_dense().ids().tolist()) == store_ids(workspace)


def test_precision_is_resolved_and_kept_out_of_the_fingerprint(tiny_model) -> None:  # type: ignore[no-untyped-def]
    from ragkit.config import EncoderConfig
    from ragkit.errors import ConfigError

    fp32 = DenseEncoder.from_model(tiny_model, name="tiny", config=EncoderConfig(precision="fp32"))
    bf16 = DenseEncoder.from_model(tiny_model, name="tiny", config=EncoderConfig(precision="bf16"))
    assert (fp32.compute_dtype, bf16.compute_dtype) == ("float32", "bfloat16")
    assert fp32.fingerprint == bf16.fingerprint
    texts = ["the dog ate a green pear", "dns dhcp subnet router"]
    a, b = fp32.encode_documents(texts), bf16.encode_documents(texts)
    assert b.dtype == np.float32 and np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    assert (a * b).sum(axis=1).min() > 0.999
    with pytest.raises(ConfigError, match="needs a CUDA device"):
        DenseEncoder.from_model(tiny_model, name="tiny", config=EncoderConfig(precision="fp16"))
    with pytest.raises(ConfigError, match="precision='fp64' is unknown"):
        DenseEncoder.from_model(tiny_model, name="tiny", config=EncoderConfig(precision="fp64"))


def test_bf16_autocast_changes_transformer_arithmetic_not_the_ranking(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from sentence_transformers import SentenceTransformer
    from test_rerank import build_tiny_cross_encoder

    from ragkit.config import EncoderConfig

    folder = build_tiny_cross_encoder(tmp_path / "bert")
    model = SentenceTransformer(str(folder), device="cpu")  # BERT + mean pooling
    docs = ["the dog ate a green pear", "dns dhcp subnet router", "red apple and cat"]
    encoders = {
        p: DenseEncoder.from_model(model, name="bert", config=EncoderConfig(precision=p))
        for p in ("fp32", "bf16")
    }
    vectors = {p: e.encode_documents(docs) for p, e in encoders.items()}
    assert not np.array_equal(vectors["fp32"], vectors["bf16"])  # autocast really ran
    assert (vectors["fp32"] * vectors["bf16"]).sum(axis=1).min() > 0.99
    query = {p: e.encode_queries(["green pear dog"]) for p, e in encoders.items()}
    ranking = {p: np.argsort(-(vectors[p] @ query[p].T).ravel()) for p in encoders}
    assert list(ranking["fp32"]) == list(ranking["bf16"])


def test_every_ingest_is_recorded_as_a_run_with_its_outcome(workspace, docs, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from ragkit.pipelines import ingest as ingest_module

    workspace.ingest(docs)
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    workspace.ingest(docs)

    def explode(self, sources):  # type: ignore[no-untyped-def]
        raise RuntimeError("disk full")

    monkeypatch.setattr(ingest_module._IngestJob, "run", explode)
    with pytest.raises(RuntimeError, match="disk full"):
        workspace.ingest(docs)
    runs = workspace.store.runs()
    assert [(r["kind"], r["status"]) for r in runs[:3]] == [
        ("ingest", "failed"),
        ("ingest", "partial"),
        ("ingest", "ok"),
    ]
    assert runs[0]["error"] == "RuntimeError: disk full"
    assert runs[1]["stats"]["files_failed"] == 1
    other = WorkspaceLock(workspace.root / "write.lock")
    other.acquire(wait=0)  # the failed ingest released the writer lock
    other.release()


def test_documents_a_killed_run_committed_before_their_file_record_are_removed(
    workspace, docs
) -> None:  # type: ignore[no-untyped-def]
    """A run killed mid-file leaves documents without a file record; if the file is gone by
    the next run, that run removes them (nothing else would)."""
    workspace.ingest(docs)
    source = next(iter(workspace.store.sources()))
    with workspace.store.transaction():  # what the killed run left: documents, no file record
        workspace.store.delete_file(source, "fruit.txt")
    (docs / "fruit.txt").unlink()
    report = workspace.ingest(docs)
    assert report.documents_deleted == 1 and report.files_deleted == 0
    assert all(h.uri != "fruit.txt" for h in workspace.query("banana cherry lemon", k=10))
    assert store_ids(workspace) == index_ids(workspace)
