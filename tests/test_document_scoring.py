"""Hits grouped into documents: max against decayed scoring, document-level fusion, config, CLI.

The synthetic corpus is built so that scoring a document by its best chunk provably mis-ranks
it: ``lucky.md`` has one passage that matches the query a little better than any single passage
of ``guide.md``, while ``guide.md`` matches it in three passages. A real workspace (tiny static
encoder, BM25) ranks them; the expected scores are recomputed from its raw channel runs.
"""

from __future__ import annotations

import json

import pytest
from test_document_vectors import write_workspace
from typer.testing import CliRunner

from ragkit.config import WorkspaceConfig
from ragkit.errors import ConfigError
from ragkit.retrieval.fusion import fuse
from ragkit.retrieval.grouping import DocumentScoring, best_chunks, group_run

QUERY = "kiwi mango papaya"


def test_decayed_scoring_adds_the_next_chunks_with_decaying_weights() -> None:
    run = {1: 0.80, 2: 0.79, 3: 0.78, 4: 0.70, 10: 0.81, 11: -0.4}
    document_of = {1: "guide", 2: "guide", 3: "guide", 4: "guide", 10: "lucky", 11: "lucky"}
    assert group_run(run, document_of, DocumentScoring(method="max")) == {
        "guide": 0.80,
        "lucky": 0.81,
    }
    decayed = group_run(run, document_of, DocumentScoring(method="decayed", decay=0.5, chunks=3))
    assert decayed["guide"] == pytest.approx(0.80 + 0.5 * 0.79 + 0.25 * 0.78)  # 4th not counted
    assert decayed["lucky"] == pytest.approx(0.81)  # a negative chunk adds nothing
    assert (
        group_run(run, document_of, DocumentScoring(method="decayed", decay=0.5, chunks=1))["guide"]
        == 0.80
    )
    assert group_run({1: 0.5, 99: 0.9}, document_of, DocumentScoring()) == {"guide": 0.5}
    assert best_chunks([(11, 0.9), (2, 0.8), (10, 0.7)], document_of) == {"lucky": 11, "guide": 2}


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"documents": "mean"}, "documents = 'mean' is unknown"),
        ({"decay": 1.5}, "decay must be a number in [0, 1]"),
        ({"decay_chunks": 0}, "decay_chunks must be an integer >= 1"),
        ({"decay_chunks": True}, "decay_chunks must be an integer >= 1"),
    ],
)
def test_query_section_is_validated_when_read(section: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        WorkspaceConfig.from_dict({"query": section}, origin="ragkit.toml")


def test_query_section_round_trips_and_defaults() -> None:
    config = WorkspaceConfig.from_dict({"query": {"documents": "max", "decay": 0.25}})
    assert config.query.scoring() == DocumentScoring(method="max", decay=0.25, chunks=3)
    assert WorkspaceConfig.from_dict(config.to_dict()).query == config.query
    assert WorkspaceConfig().to_dict() == {}


def _filler(n: int, start: int) -> str:
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"]
    return " ".join(words[(start + i) % len(words)] for i in range(n))


@pytest.fixture
def long_docs(tmp_path, tiny_model):  # type: ignore[no-untyped-def]
    """guide.md: three sections that each match the query with some filler; lucky.md: one
    section that matches it with less filler (its best chunk wins), then unrelated ones.
    The encoder is saved to a folder that ragkit.toml names, so the CLI loads it too."""
    import ragkit

    # the scorings alone: the document vectors' run is tested in test_document_vectors.py
    workspace = ragkit.open(
        write_workspace(tmp_path, tiny_model, "document_vectors = false"), create=True
    )
    root = tmp_path / "docs"
    root.mkdir()
    guide = "\n\n".join(f"## Part {i}\n\n{QUERY} {_filler(11, i)}" for i in range(3))
    lucky = f"## Intro\n\n{QUERY} {_filler(8, 0)}\n\n" + "\n\n".join(
        f"## Other {i}\n\nred green blue {_filler(11, i)}" for i in range(3)
    )
    (root / "guide.md").write_text(f"# Guide\n\n{guide}\n", encoding="utf-8")
    (root / "lucky.md").write_text(f"# Lucky\n\n{lucky}\n", encoding="utf-8")
    (root / "other.md").write_text("# Other\n\nred green blue alpha beta\n", encoding="utf-8")
    workspace.ingest(root)
    yield workspace
    workspace.close()


def test_max_scoring_mis_ranks_the_long_document_and_decayed_fixes_it(long_docs) -> None:  # type: ignore[no-untyped-def]
    kit = long_docs
    chunks = kit.query(QUERY, k=10, mode="dense")
    assert [h.uri for h in chunks[:2]] == ["lucky.md", "guide.md"]  # the best chunk is lucky's
    assert sum(h.uri == "guide.md" for h in chunks) == 3  # chunk hits are still chunks
    by_max = kit.query(QUERY, k=10, mode="dense", documents="max")
    by_decay = kit.query(QUERY, k=10, mode="dense", documents="decayed")
    assert [h.uri for h in by_max][:2] == ["lucky.md", "guide.md"]
    assert [h.uri for h in by_decay][:2] == ["guide.md", "lucky.md"]
    assert len({h.doc_id for h in by_decay}) == len(by_decay) == 3  # one hit per document
    # the scores are exactly the grouping of the dense channel's run
    (run,) = kit.channel_runs([QUERY], depth=30, channels=("dense",))[0:1][0]
    document_of = kit.store.chunk_documents(list(run))
    expected = group_run(run, document_of, DocumentScoring(method="decayed", decay=0.5, chunks=3))
    assert {h.doc_id: h.score for h in by_decay} == pytest.approx(expected)
    # the hit shown for a document is its best chunk, with that chunk's text
    best = max((h for h in chunks if h.uri == "guide.md"), key=lambda h: h.score)
    assert by_decay[0].chunk_id == best.chunk_id and by_decay[0].text == best.text
    assert [h.rank for h in by_decay] == [1, 2, 3]


def test_documents_true_follows_the_query_section(long_docs) -> None:  # type: ignore[no-untyped-def]
    kit = long_docs
    kit.config.query.documents = "max"
    assert kit.query(QUERY, k=2, mode="dense", documents=True)[0].uri == "lucky.md"
    kit.config.query.documents = "decayed"
    assert kit.query(QUERY, k=2, mode="dense", documents=True)[0].uri == "guide.md"
    with pytest.raises(ConfigError, match="'mean' is unknown"):
        kit.query(QUERY, documents="mean")


def test_hybrid_fuses_document_rankings_not_chunk_rankings(long_docs) -> None:  # type: ignore[no-untyped-def]
    kit = long_docs
    dense, sparse = kit.channel_runs([QUERY], depth=30)
    runs = [dense[0], sparse[0]]
    document_of = kit.store.chunk_documents([c for run in runs for c in run])
    scoring = DocumentScoring(method="max")
    grouped = [group_run(run, document_of, scoring) for run in runs]
    assert kit.collection().record.spec.fusion.method == "dbsf"  # the default
    for method in ("dbsf", "rrf"):
        kit.config.fusion.method = method
        expected = fuse(grouped, method=method, k=60)
        hits = kit.query(QUERY, k=3, mode="hybrid", documents="max")
        assert [h.doc_id for h in hits] == [doc for doc, _ in expected[:3]]
        assert [h.score for h in hits] == pytest.approx([score for _, score in expected[:3]])
    # a document's RRF share comes from its rank among documents: 2 channels, rank 1 each
    assert hits[0].score == pytest.approx(2 / 61)


def test_cli_query_documents_and_eval_option(long_docs, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from ragkit.cli.app import app

    kit = long_docs
    root = str(kit.root)
    kit.close()
    runner = CliRunner()
    chunks = runner.invoke(app, ["query", QUERY, "-w", root, "-k", "6", "--json"])
    grouped = runner.invoke(app, ["query", QUERY, "-w", root, "-k", "6", "--json", "-d"])
    assert chunks.exit_code == 0 and grouped.exit_code == 0, chunks.output + grouped.output
    chunk_uris = [hit["uri"] for hit in json.loads(chunks.output)]
    document_uris = [hit["uri"] for hit in json.loads(grouped.output)]
    assert len(chunk_uris) == 6 and len(set(chunk_uris)) < 6
    assert sorted(document_uris) == ["guide.md", "lucky.md", "other.md"]
    (tmp_path / "q.jsonl").write_text(json.dumps({"_id": "q1", "text": QUERY}) + "\n")
    (tmp_path / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tguide.md\t1\n")
    common = ["eval", "-w", root, "--queries", str(tmp_path / "q.jsonl")]
    common += ["--qrels", str(tmp_path / "qrels.tsv"), "-m", "dense", "--json"]
    scores = {}
    for documents in ("chunks", "max", "decayed"):
        result = runner.invoke(app, [*common, "--documents", documents])
        assert result.exit_code == 0, result.output
        scores[documents] = json.loads(result.output)["results"][0]["metrics"]["mrr@10"]
    assert scores == {"chunks": 0.5, "max": 0.5, "decayed": 1.0}
    refused = runner.invoke(app, [*common, "--documents", "mean"])
    assert refused.exit_code != 0 and "use max, decayed or chunks" in refused.output
