"""Document vectors (``[index] document_vectors``): one vector per document, its title and lead,
kept beside the chunk vectors, fused with the grouped channels when hits are documents.

The corpus is built so that only the document vector can find ``target.md``: the query's words
are its title and nothing else (chunks are embedded without their headers here), while each
distractor has one of the words in its text. A real workspace (tiny static encoder) ingests it.
"""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

from ragkit.config import FusionConfig, IndexConfig, WorkspaceConfig
from ragkit.document_vectors import document_path, load_document_index, stored_leads
from ragkit.errors import ConfigError
from ragkit.retrieval.fusion import fuse
from ragkit.retrieval.grouping import DocumentScoring, group_run

QUERY = "zfs snapshot restore"
FILLER = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "red", "green", "blue"]
#: target.md's own words: none of the query's, none of the distractors'
PLAIN = [
    "apple",
    "banana",
    "cherry",
    "grape",
    "lemon",
    "orange",
    "pear",
    "plum",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "white",
    "black",
    "yellow",
    "cat",
    "dog",
    "fish",
]


def _filler(n: int, start: int) -> str:
    return " ".join(FILLER[(start + i) % len(FILLER)] for i in range(n))


def _write_corpus(root):  # type: ignore[no-untyped-def]
    root.mkdir(exist_ok=True)
    sections = "\n\n".join(f"## Part {i}\n\n{' '.join(PLAIN[8 * i : 8 * i + 8])}" for i in range(3))
    (root / "target.md").write_text(f"# {QUERY}\n\n{sections}\n", encoding="utf-8")
    for n, word in enumerate(QUERY.split()):
        body = "\n\n".join(f"## Part {i}\n\n{word} {_filler(10, i + n)}" for i in range(4))
        (root / f"distractor{n}.md").write_text(f"# Notes {n}\n\n{body}\n", encoding="utf-8")
    (root / "short.md").write_text("# Short\n\ncat dog fish\n", encoding="utf-8")


def write_workspace(tmp_path, model, index: str):  # type: ignore[no-untyped-def]
    """``tmp_path/ws`` with a ragkit.toml naming ``model`` saved to a folder (so the CLI loads
    it too), short chunks without context headers, and ``index``'s ``[index]`` lines."""
    model.save(str(tmp_path / "model"))
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "ragkit.toml").write_text(
        f'[encoder]\nmodel = "{tmp_path / "model"}"\n\n'
        "[chunking]\nmax_tokens = 24\noverlap_tokens = 0\ncontext_headers = false\n\n"
        f"[index]\n{index}\n",
        encoding="utf-8",
    )
    return tmp_path / "ws"


@pytest.fixture
def kit(tmp_path, tiny_model):  # type: ignore[no-untyped-def]
    import ragkit

    workspace = ragkit.open(
        write_workspace(tmp_path, tiny_model, "document_vectors = true"), create=True
    )
    _write_corpus(tmp_path / "docs")
    workspace.ingest(tmp_path / "docs")
    yield workspace
    workspace.close()


def _lead_ids(kit) -> dict[str, int]:  # type: ignore[no-untyped-def]
    db = sqlite3.connect(kit.root / "store.sqlite")
    rows = db.execute(
        "SELECT d.uri, c.id FROM chunks c JOIN documents d ON d.doc_id = c.doc_id"
        " WHERE c.ordinal = 0"
    ).fetchall()
    db.close()
    return {uri: int(i) for uri, i in rows}


def test_ingest_writes_one_vector_per_document_from_title_and_lead(kit) -> None:  # type: ignore[no-untyped-def]
    collection = kit.collection()
    assert collection.record.spec.index.document_vectors is True
    index = load_document_index(collection)
    leads = _lead_ids(kit)
    assert sorted(index.ids().tolist()) == sorted(leads.values())  # one per document
    assert document_path(collection, collection.record.generation).is_file()
    texts = stored_leads(kit.store, collection, [leads["target.md"]])
    text = texts[leads["target.md"]][1]
    assert text.startswith(QUERY + "\n\n" + " ".join(PLAIN[:8]))  # the title, then the lead
    assert len(text) <= 24 * 8
    # the stored vector is the encoder's document embedding of that text
    vector = kit.encoder_for(collection).encode_documents([text])
    scores, ids = index.search(np.asarray(vector, np.float32), 1)
    assert int(ids[0][0]) == leads["target.md"] and scores[0][0] == pytest.approx(1.0, abs=1e-5)
    # a one-chunk document's vector is its chunk's, taken from the cache (no new row)
    short = stored_leads(kit.store, collection, [leads["short.md"]])[leads["short.md"]]
    chunk_hash = kit.store.chunk_hashes(collection.chunking_fp)
    assert short[0] in {h for i, h, _ in chunk_hash if i == leads["short.md"]}
    # `ragkit collections` says so
    from typer.testing import CliRunner

    from ragkit.cli.app import app

    listed = CliRunner().invoke(app, ["collections", "-w", str(kit.root), "--json"])
    assert listed.exit_code == 0, listed.output
    assert [c["document_vectors"] for c in json.loads(listed.output)] == [True]


def test_only_the_document_vector_finds_the_right_document(kit) -> None:  # type: ignore[no-untyped-def]
    hits = kit.query(QUERY, k=4, mode="dense", documents="max")
    found = {h.uri: h for h in hits}
    assert "target.md" in found
    # the shown hit of a document only its vector found is its first chunk
    leads = _lead_ids(kit)
    first = kit.store.chunk_rows([leads["target.md"]])[leads["target.md"]]["text"]
    assert found["target.md"].text == first
    # the score is the fusion of the grouped dense run and the document vectors' run, and
    # the dense channel's chunks (3 per document asked for) hold none of target.md's
    (dense,) = kit.channel_runs([QUERY], depth=12, channels=("dense",))
    document_of = kit.store.chunk_documents(list(dense[0]))
    assert "target.md" not in {kit.store.chunk_rows([c])[c]["uri"] for c in dense[0]}
    collection = kit.collection()
    vector = kit.encoder_for(collection).encode_queries([QUERY])
    scores, ids = load_document_index(collection).search(np.asarray(vector, np.float32), 4)
    lead_run = {int(i): float(s) for i, s in zip(ids[0], scores[0], strict=True)}
    document_of.update(kit.store.chunk_documents(list(lead_run)))
    # the run weighs the share of documents longer than one chunk: 4 of 5 (not short.md)
    assert kit.store.multi_chunk_share(collection.chunking_fp) == pytest.approx(0.8)
    documents = {document_of[c]: s for c, s in lead_run.items()}
    grouped = group_run(dense[0], document_of, DocumentScoring())
    method = FusionConfig().method  # the default, DBSF
    expected = fuse([grouped, documents], method=method, k=60, weights=[1.0, 0.8])
    assert [h.doc_id for h in hits] == [d for d, _ in expected[:4]]
    assert [h.score for h in hits] == pytest.approx([s for _, s in expected[:4]])
    # target.md's score is the document run's alone, at its weight
    alone = dict(fuse([{}, documents], method=method, weights=[1.0, 0.8]))
    assert found["target.md"].score == pytest.approx(alone[found["target.md"].doc_id])
    assert found["target.md"].score > 0
    # without document vectors (a collection over the same chunks) the chunks never find it
    kit.create_collection("plain", index=IndexConfig(document_vectors=False), state="live")
    plain = kit.query(QUERY, k=4, mode="dense", documents="max", alias="plain")
    assert len(plain) == 3 and "target.md" not in [h.uri for h in plain]
    # chunk hits (the default) are the same with and without: the dense channel alone
    with_vectors = kit.query(QUERY, k=5, mode="dense")
    without = kit.query(QUERY, k=5, mode="dense", alias="plain")
    assert [(h.chunk_id, h.score) for h in with_vectors] == [(h.chunk_id, h.score) for h in without]


def test_hybrid_and_filters_take_the_document_vectors_too(kit) -> None:  # type: ignore[no-untyped-def]
    hits = kit.query(QUERY, k=4, mode="hybrid", documents=True)
    assert "target.md" in [h.uri for h in hits]
    assert len({h.doc_id for h in hits}) == 4
    filtered = kit.query(QUERY, k=3, mode="dense", documents=True, where={"format": "html"})
    assert filtered == []
    chunks = kit.query(QUERY, k=12, mode="hybrid")
    assert "target.md" not in [h.uri for h in chunks]
    sparse = kit.query(QUERY, k=5, mode="sparse", documents=True)
    assert "target.md" not in [h.uri for h in sparse]  # no words of it in its chunks


def test_changed_and_deleted_documents_update_their_vectors(kit, tmp_path) -> None:  # type: ignore[no-untyped-def]
    docs = tmp_path / "docs"
    before = _lead_ids(kit)
    (docs / "short.md").unlink()
    text = (docs / "target.md").read_text(encoding="utf-8")
    (docs / "target.md").write_text(text.replace("# " + QUERY, "# bird raid pool"), "utf-8")
    kit.ingest(docs)
    after = _lead_ids(kit)
    held = set(load_document_index(kit.collection()).ids().tolist())
    assert held == set(after.values())
    assert before["short.md"] not in held and "short.md" not in after
    assert after["target.md"] != before["target.md"] and before["target.md"] not in held
    encoder = kit.encoder_for(kit.collection())
    vector = np.asarray(encoder.encode_queries(["bird raid pool"]), np.float32)
    _, ids = load_document_index(kit.collection()).search(vector, 1)
    assert int(ids[0][0]) == after["target.md"]  # its new title is its new vector's


def test_doctor_finds_missing_and_stale_document_vectors_and_repair_rebuilds(kit, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from ragkit.doctor import DOCUMENT_CACHE, DOCUMENT_VECTORS

    collection = kit.collection()
    report = kit.doctor()
    assert report.ok and report.collections[0].check(DOCUMENT_VECTORS).status == "ok"
    path = document_path(collection, collection.record.generation)
    old = path.read_bytes()
    # a stale file: the previous generation's vectors, where a changed document had another
    (tmp_path / "docs" / "target.md").write_text(f"# {QUERY}\n\nfish cat\n", "utf-8")
    kit.ingest(tmp_path / "docs")
    collection.refresh()
    path = document_path(collection, collection.record.generation)
    path.write_bytes(old)
    found = kit.doctor().collections[0]
    check = found.check(DOCUMENT_VECTORS)
    assert check.status == "problem" and check.counts == {"extra": 1, "missing": 1, "duplicate": 0}
    repaired = kit.doctor(repair=True)
    assert repaired.ok, repaired.to_dict()
    assert any("documents" in action for action in repaired.repaired)
    held = set(load_document_index(kit.collection()).ids().tolist())
    assert held == set(_lead_ids(kit).values())
    # a missing file, and a document vector missing from the cache
    collection = kit.collection()
    document_path(collection, collection.record.generation).unlink()
    leads = stored_leads(kit.store, collection, [_lead_ids(kit)["distractor0.md"]])
    ((lead_hash, _),) = leads.values()
    db = sqlite3.connect(kit.root / "store.sqlite")
    with db:
        db.execute("DELETE FROM embeddings WHERE text_hash = ?", (lead_hash,))
    db.close()
    found = kit.doctor().collections[0]
    assert found.check(DOCUMENT_VECTORS).status == "problem"
    assert found.check(DOCUMENT_CACHE).counts == {"missing": 1}
    repaired = kit.doctor(repair=True)
    assert repaired.ok, repaired.to_dict()
    hits = kit.query(QUERY, k=4, mode="dense", documents=True)
    assert "target.md" in [h.uri for h in hits]


def test_documents_of_one_chunk_rank_as_without_document_vectors(tmp_path, tiny_model) -> None:  # type: ignore[no-untyped-def]
    """A one-chunk document's vector is its chunk vector: a collection of such documents
    ranks documents exactly as it would without document vectors (the run weighs 0)."""
    import ragkit

    tiny_model.save(str(tmp_path / "model"))
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "ragkit.toml").write_text(
        f'[encoder]\nmodel = "{tmp_path / "model"}"\n', encoding="utf-8"
    )
    docs = tmp_path / "docs"
    docs.mkdir()
    for n, word in enumerate([*QUERY.split(), *PLAIN[:5]]):
        (docs / f"note{n}.md").write_text(f"# Note {n}\n\n{word} {_filler(6, n)}\n", "utf-8")
    with ragkit.open(tmp_path / "ws", create=True) as kit:
        kit.ingest(docs)
        collection = kit.collection()
        assert collection.record.spec.index.document_vectors is True  # the default
        assert kit.store.multi_chunk_share(collection.chunking_fp) == 0.0
        kit.create_collection("plain", index=IndexConfig(document_vectors=False), state="live")
        for mode in ("dense", "hybrid"):
            with_vectors = kit.query(QUERY, k=8, mode=mode, documents=True)
            without = kit.query(QUERY, k=8, mode=mode, documents=True, alias="plain")
            assert len(with_vectors) == 8
            assert [(h.uri, h.score) for h in with_vectors] == [(h.uri, h.score) for h in without]


def test_option_is_validated_and_compared_as_drift() -> None:
    from ragkit.collection_spec import CollectionSpec, DenseIndexSpec, spec_drift

    with pytest.raises(ConfigError, match="document_vectors must be true or false"):
        WorkspaceConfig.from_dict({"index": {"document_vectors": "yes"}})
    spec = CollectionSpec(index=DenseIndexSpec(document_vectors=False))
    assert [d.field for d in spec_drift(spec, WorkspaceConfig())] == []  # unset: no drift
    config = WorkspaceConfig.from_dict({"index": {"document_vectors": True}})
    assert [d.field for d in spec_drift(spec, config) if d.field.startswith("index")] == [
        "index.document_vectors"
    ]
    # a spec stored before the option has none
    assert CollectionSpec.from_dict({"index": {"backend": "faiss"}}).index.document_vectors is False
    assert CollectionSpec.from_json(spec.to_json()) == spec
    # stored under version 2 with them, so a ragkit that does not know them refuses it
    with_vectors = CollectionSpec(index=DenseIndexSpec(document_vectors=True))
    assert with_vectors.to_dict()["version"] == 2 and spec.to_dict()["version"] == 1
    assert CollectionSpec.from_json(with_vectors.to_json()) == with_vectors
    with pytest.raises(ConfigError, match="newer ragkit"):
        CollectionSpec.from_dict({"version": 3})


def test_a_migration_shadow_gets_its_document_vectors_at_the_end_of_its_backfill(
    tmp_path, tiny_model
) -> None:  # type: ignore[no-untyped-def]
    import ragkit
    from ragkit.doctor import DOCUMENT_VECTORS
    from ragkit.pipelines import migrate

    tiny_model.save(str(tmp_path / "model"))
    (tmp_path / "ws").mkdir()
    toml = (
        f'[encoder]\nmodel = "{tmp_path / "model"}"\n\n'
        "[chunking]\nmax_tokens = 24\noverlap_tokens = 0\ncontext_headers = false\n"
    )
    (tmp_path / "ws" / "ragkit.toml").write_text(
        toml + "\n[index]\ndocument_vectors = false\n", encoding="utf-8"
    )
    docs = tmp_path / "docs"
    _write_corpus(docs)
    with ragkit.open(tmp_path / "ws", create=True) as kit:
        kit.ingest(docs)
    # the option unset again: the collection keeps what its spec says, with no drift
    (tmp_path / "ws" / "ragkit.toml").write_text(toml, encoding="utf-8")
    with ragkit.open(tmp_path / "ws") as kit:
        assert not kit.collection().record.spec.index.document_vectors
        assert kit.doctor().ok
        change = {"index": {"document_vectors": True}}
        plan = migrate.plan_migration(kit, **change)
        assert "index.document_vectors" in {c.field for c in plan.changes}
        first = migrate.start(kit, batch_chunks=4, max_batches=1, **change)
        assert first["state"] == "backfilling"
        report = kit.doctor()
        assert report.ok, report.to_dict()
        shadow = report.collection(first["target"])
        assert shadow.check(DOCUMENT_VECTORS).status == "skipped"
        # an ingest meanwhile: a changed document and a new one reach the shadow too
        (docs / "short.md").write_text("# Short\n\nbird raid pool\n", "utf-8")
        (docs / "extra.md").write_text("# Extra\n\n## A\n\nwal vacuum\n\n## B\n\nhook\n", "utf-8")
        kit.ingest(docs)
        done = migrate.start(kit, batch_chunks=4)
        assert done["state"] == "ready" and done["document_vectors_encoded"] >= 4
        collection = kit.collection(first["target"])
        index = load_document_index(collection)
        assert sorted(index.ids().tolist()) == sorted(_lead_ids(kit).values())
        assert kit.doctor().ok
        (tmp_path / "q.jsonl").write_text(json.dumps({"_id": "q1", "text": QUERY}) + "\n")
        (tmp_path / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq1\ttarget.md\t1\n")
        migrate.cutover(
            kit, queries=tmp_path / "q.jsonl", qrels=tmp_path / "qrels.tsv", tolerance=1.0
        )
        assert kit.collection().name == first["target"]
        # the document vectors' run weighs 5/6 now (short.md is one chunk): all 6 documents asked for
        hits = kit.query(QUERY, k=6, mode="dense", documents=True)
        assert "target.md" in [h.uri for h in hits]
        assert kit.doctor().ok


def test_a_garbled_document_vector_file_fails_its_checksum_and_is_rebuilt(kit) -> None:  # type: ignore[no-untyped-def]
    from ragkit.doctor import CHECKSUMS

    collection = kit.collection()
    path = document_path(collection, collection.record.generation)
    data = bytearray(path.read_bytes())
    data[-64:-32] = bytes(32)  # inside the vectors: it still loads, with the same ids
    path.write_bytes(bytes(data))
    found = kit.doctor().collections[0]
    assert found.check(CHECKSUMS).counts == {"dense": 0, "sparse": 0, "documents": 1}
    repaired = kit.doctor(repair=True)
    assert repaired.ok, repaired.to_dict()
    collection.refresh()
    rebuilt = document_path(collection, collection.record.generation).read_bytes()
    assert rebuilt != bytes(data) and len(rebuilt) == len(data)


def test_a_qdrant_collection_keeps_its_document_vectors_in_a_faiss_file(
    tmp_path, tiny_model
) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("qdrant_client")
    import ragkit

    write_workspace(tmp_path, tiny_model, 'backend = "qdrant"\ndocument_vectors = true')
    _write_corpus(tmp_path / "docs")
    with ragkit.open(tmp_path / "ws", create=True) as kit:
        kit.ingest(tmp_path / "docs")
        collection = kit.collection()
        assert collection.record.backend == "qdrant"
        assert document_path(collection, collection.record.generation).is_file()
        hits = kit.query(QUERY, k=4, mode="dense", documents=True)
        assert "target.md" in [h.uri for h in hits]
        (tmp_path / "docs" / "short.md").unlink()
        kit.ingest(tmp_path / "docs")
        assert sorted(load_document_index(kit.collection()).ids().tolist()) == sorted(
            _lead_ids(kit).values()
        )
        assert kit.doctor().ok


def test_a_commit_that_fails_leaves_the_committed_document_vectors(
    kit, tmp_path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    from ragkit.store import Store

    collection = kit.collection()
    generation = collection.record.generation
    before = sorted(load_document_index(collection).ids().tolist())
    (tmp_path / "docs" / "short.md").unlink()
    (tmp_path / "docs" / "new.md").write_text("# New\n\n## A\n\nwal vacuum\n\n## B\n\nhook\n")

    def fail(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError("disk full")

    with monkeypatch.context() as patched:
        patched.setattr(Store, "set_index_checksums", fail)  # after the files are written
        with pytest.raises(OSError, match="disk full"):
            kit.ingest(tmp_path / "docs")
    collection.refresh()
    assert collection.record.generation == generation
    assert sorted(load_document_index(collection).ids().tolist()) == before
    assert document_path(collection, generation + 1).exists()  # written, never committed
    kit.ingest(tmp_path / "docs")
    collection.refresh()
    assert sorted(load_document_index(collection).ids().tolist()) == sorted(_lead_ids(kit).values())
    assert collection.record.generation == generation + 1  # the leftover was replaced
    assert collection.stale_files() == []
    assert kit.doctor().ok


def test_a_collection_built_from_the_store_with_another_chunking_gets_them(kit) -> None:  # type: ignore[no-untyped-def]
    from ragkit.config import ChunkingConfig

    chunking = ChunkingConfig(max_tokens=20, overlap_tokens=0, context_headers=False)
    built = kit.create_collection(
        "small", chunking=chunking, index=IndexConfig(document_vectors=True), state="live"
    )
    assert built.chunking_fp != kit.collection().chunking_fp
    leads = kit.store.lead_chunk_ids(built.chunking_fp)
    assert len(leads) == 5
    assert sorted(load_document_index(built).ids().tolist()) == leads.tolist()
    hits = kit.query(QUERY, k=4, mode="dense", documents=True, alias="small")
    assert "target.md" in [h.uri for h in hits]
    assert kit.doctor().ok
