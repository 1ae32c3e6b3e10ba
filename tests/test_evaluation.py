"""Evaluation core: metrics against hand-derived values, BEIR loading, TREC runs, paired tests."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from ragkit.documents import Hit
from ragkit.errors import ConfigError, ConnectorError, MissingDependencyError
from ragkit.evaluation import (
    DEFAULT_METRICS,
    available_splits,
    compare,
    corpus_id_from_uri,
    evaluate,
    hits_to_run,
    load_beir,
    load_qrels,
    read_trec_run,
    write_trec_run,
)

requires_pytrec_eval = pytest.mark.skipif(
    importlib.util.find_spec("pytrec_eval") is None,
    reason="metrics need the 'eval' extra (pytrec-eval-terrier), which is not installed",
)

DEBIAN = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "debian-packages"


def ranked_run(doc_ids: list[str]) -> dict[str, float]:
    """Scores that rank ``doc_ids`` in the given order, without ties."""
    return {doc: float(len(doc_ids) - position) for position, doc in enumerate(doc_ids)}


def fillers(count: int) -> list[str]:
    return [f"other{i:03d}" for i in range(count)]


def make_hit(uri: str, chunk: int, score: float) -> Hit:
    return Hit(
        chunk_id=f"{uri}:{chunk}",
        score=score,
        text="",
        doc_id=f"doc-{uri}",
        uri=uri,
        title="",
        headings=(),
        metadata={},
    )


# --- metrics -----------------------------------------------------------------------------------


@requires_pytrec_eval
def test_one_relevant_document_at_rank_3() -> None:
    run = {"q1": ranked_run(["x", "y", "rel", "z"])}
    qrels = {"q1": {"rel": 1}}
    result = evaluate(run, qrels, [*DEFAULT_METRICS, "precision@5", "map@2"])

    # DCG = 1/log2(3 + 1); the ideal ranking puts it at rank 1, IDCG = 1/log2(2) = 1.
    assert result.mean["ndcg@10"] == pytest.approx(1 / math.log2(4))
    assert result.mean["mrr@10"] == pytest.approx(1 / 3)
    assert result.mean["recall@10"] == pytest.approx(1.0)
    assert result.mean["recall@100"] == pytest.approx(1.0)
    assert result.mean["map"] == pytest.approx(1 / 3)  # precision at the one relevant rank
    assert result.mean["precision@5"] == pytest.approx(1 / 5)
    assert result.mean["map@2"] == pytest.approx(0.0)  # nothing relevant in the top 2
    assert list(result.mean) == [*DEFAULT_METRICS, "precision@5", "map@2"]


@requires_pytrec_eval
def test_relevant_document_at_rank_11_is_outside_every_cutoff_of_10() -> None:
    run = {"q1": ranked_run([*fillers(10), "rel"])}
    result = evaluate(
        run, {"q1": {"rel": 1}}, ["ndcg@10", "mrr@10", "mrr", "recall@10", "recall@100"]
    )

    assert result.mean["mrr@10"] == 0.0  # pytrec_eval's uncut recip_rank would give 1/11
    assert result.mean["mrr"] == pytest.approx(1 / 11)
    assert result.mean["ndcg@10"] == 0.0
    assert result.mean["recall@10"] == 0.0
    assert result.mean["recall@100"] == pytest.approx(1.0)


@requires_pytrec_eval
def test_graded_ndcg_with_two_relevant_documents() -> None:
    run = {"q1": ranked_run(["b", "x", "a", "y"])}
    qrels = {"q1": {"a": 2, "b": 1, "x": 0}}
    result = evaluate(run, qrels, ["ndcg@10", "recall@2", "map"])

    dcg = 1 / math.log2(2) + 2 / math.log2(4)  # b (grade 1) at rank 1, a (grade 2) at rank 3
    ideal = 2 / math.log2(2) + 1 / math.log2(3)
    assert result.mean["ndcg@10"] == pytest.approx(dcg / ideal)
    assert result.mean["recall@2"] == pytest.approx(1 / 2)
    assert result.mean["map"] == pytest.approx((1 / 1 + 2 / 3) / 2)


@requires_pytrec_eval
def test_mrr_cutoff_breaks_ties_as_trec_eval_ranks_them() -> None:
    # trec_eval orders tied scores by document id descending, so "a" is ranked last (11th).
    run = {"q1": {doc: 1.0 for doc in "abcdefghijk"}}
    result = evaluate(run, {"q1": {"a": 1}}, ["mrr@10", "mrr"])
    assert result.mean["mrr"] == pytest.approx(1 / 11)
    assert result.mean["mrr@10"] == 0.0


@requires_pytrec_eval
def test_query_missing_from_run_counts_as_zero() -> None:
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}, "only-non-relevant": {"d3": 0}}
    run = {"q1": {"d1": 5.0}, "not-judged": {"d9": 1.0}}
    result = evaluate(run, qrels)

    assert set(result.per_query) == {"q1", "q2"}  # no relevant document: left out
    assert result.per_query["q2"] == dict.fromkeys(DEFAULT_METRICS, 0.0)
    assert result.per_query["q1"]["ndcg@10"] == pytest.approx(1.0)
    assert result.mean["ndcg@10"] == pytest.approx(0.5)
    assert result.mean["mrr@10"] == pytest.approx(0.5)
    # An empty result list is the same as no entry at all.
    assert evaluate({"q1": {"d1": 5.0}, "q2": {}}, qrels).mean == result.mean


@requires_pytrec_eval
def test_metric_names_are_normalised_and_validated() -> None:
    result = evaluate({"q1": {"d1": 1.0}}, {"q1": {"d1": 1}}, ["NDCG@10", " ndcg@10", "MAP"])
    assert list(result.mean) == ["ndcg@10", "map"]
    assert result.metric("NDCG@10") == {"q1": pytest.approx(1.0)}
    for bad in ["bleu", "recall", "precision", "ndcg@0", "ndcg@ten", "mrr@-1"]:
        with pytest.raises(ConfigError, match="metric"):
            evaluate({"q1": {"d1": 1.0}}, {"q1": {"d1": 1}}, [bad])
    with pytest.raises(ConfigError, match="relevant"):
        evaluate({"q1": {"d1": 1.0}}, {"q1": {"d1": 0}})


def test_missing_pytrec_eval_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pytrec_eval", None)
    with pytest.raises(MissingDependencyError, match=r"ragkit\[eval\]"):
        evaluate({"q1": {"d1": 1.0}}, {"q1": {"d1": 1}})


@requires_pytrec_eval
def test_chunk_hits_aggregate_to_documents_by_max_score() -> None:
    hits = {
        "q1": [
            make_hit("corpus.jsonl#b", 0, 0.7),
            make_hit("corpus.jsonl#a", 1, 0.5),
            make_hit("corpus.jsonl#a", 0, 0.9),
            make_hit("corpus.jsonl#c", 0, 0.8),
        ],
        "q2": [],
    }
    run = hits_to_run(hits, doc_key=lambda hit: corpus_id_from_uri(hit.uri))
    assert run == {"q1": {"a": 0.9, "b": 0.7, "c": 0.8}, "q2": {}}

    result = evaluate(run, {"q1": {"b": 1}}, ["mrr@10"])
    assert result.mean["mrr@10"] == pytest.approx(1 / 3)  # a 0.9, c 0.8, b 0.7


def test_corpus_id_from_uri() -> None:
    assert corpus_id_from_uri("data/corpus.jsonl#doc-7") == "doc-7"
    assert corpus_id_from_uri("a#b#c") == "c"
    assert corpus_id_from_uri("notes/backup.md") == "notes/backup.md"


# --- BEIR datasets ---------------------------------------------------------------------------------


def write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


@pytest.fixture
def beir_dir(tmp_path: Path) -> Path:
    root = tmp_path / "tiny"
    docs = [
        {"_id": "d1", "title": "Backups", "text": "rotate backups"},
        {"_id": "d2", "title": "", "text": "zfs snapshots"},
        {"_id": "d3", "text": "sqlite wal"},
    ]
    queries = [
        {"_id": "q1", "text": "how to rotate backups", "split": "dev"},
        {"_id": "q2", "text": "train query", "split": "train"},
        {"_id": "q3", "text": "judged, no split field"},
        {"_id": "q4", "text": "no split field, not judged"},
        {"_id": "q5", "text": "labelled train but judged in dev", "split": "train"},
        {"_id": "q6", "text": "dev query without judgments", "split": "dev"},
    ]
    write_lines(root / "corpus.jsonl", [json.dumps(doc) for doc in docs])
    write_lines(root / "queries.jsonl", [json.dumps(query) for query in queries])
    write_lines(
        root / "qrels" / "dev.tsv",
        ["query-id\tcorpus-id\tscore", "q1\td1\t1", "q1\td2\t0", "q3\td2\t2", "q5\td3\t1"],
    )
    write_lines(root / "qrels" / "train.tsv", ["query-id\tcorpus-id\tscore", "q2\td3\t1"])
    return root


def test_load_beir_split(beir_dir: Path) -> None:
    data = load_beir(beir_dir, split="dev")

    assert data.split == "dev"
    assert data.path == beir_dir
    assert data.corpus == {
        "d1": {"title": "Backups", "text": "rotate backups"},
        "d2": {"title": "", "text": "zfs snapshots"},
        "d3": {"title": "", "text": "sqlite wal"},
    }
    assert set(data.queries) == {"q1", "q3", "q5", "q6"}
    assert data.queries["q1"] == "how to rotate backups"
    assert data.qrels == {"q1": {"d1": 1, "d2": 0}, "q3": {"d2": 2}, "q5": {"d3": 1}}
    assert available_splits(beir_dir) == ["dev", "train"]
    assert set(load_beir(beir_dir, split="train").queries) == {"q2", "q5"}  # q5 by its field


def test_load_beir_missing_files(beir_dir: Path) -> None:
    with pytest.raises(ConnectorError, match=r"test\.tsv.*available splits: dev, train"):
        load_beir(beir_dir, split="test")
    (beir_dir / "corpus.jsonl").unlink()
    with pytest.raises(ConnectorError, match=r"corpus\.jsonl"):
        load_beir(beir_dir)
    with pytest.raises(ConnectorError, match="not a directory"):
        load_beir(beir_dir / "nowhere")


def test_load_beir_bad_json_line(beir_dir: Path) -> None:
    corpus = beir_dir / "corpus.jsonl"
    corpus.write_text(corpus.read_text().replace('"_id": "d2"', '"_id": "d2'), encoding="utf-8")
    with pytest.raises(ConnectorError, match=r"corpus\.jsonl: line 2: invalid JSON") as error:
        load_beir(beir_dir)
    assert error.value.path.endswith("corpus.jsonl")


def test_load_beir_bad_tsv_rows(beir_dir: Path) -> None:
    qrels = beir_dir / "qrels" / "dev.tsv"
    write_lines(qrels, ["query-id\tcorpus-id\tscore", "q1\td1\t1", "q1 d2 1"])
    with pytest.raises(ConnectorError, match=r"dev\.tsv: line 3: expected 3 tab-separated"):
        load_beir(beir_dir)
    write_lines(qrels, ["query-id\tcorpus-id\tscore", "q1\td1\thigh"])
    with pytest.raises(ConnectorError, match=r"line 2: score 'high' is not an integer"):
        load_beir(beir_dir)
    write_lines(qrels, ["query-id\tcorpus-id\tscore", "ghost\td1\t1"])
    with pytest.raises(ConnectorError, match=r"not in queries\.jsonl.*ghost"):
        load_beir(beir_dir)


def test_load_qrels_formats(tmp_path: Path) -> None:
    expected = {"q1": {"d1": 1, "d2": 0}, "q2": {"d3": 2}}
    trec = tmp_path / "qrels.trec"
    write_lines(trec, ["q1 0 d1 1", "q1 0 d2 0", "q2\t0\td3\t2"])
    assert load_qrels(trec) == expected
    headerless = tmp_path / "plain.tsv"
    write_lines(headerless, ["q1\td1\t1", "q1\td2\t0", "", "q2\td3\t2.0"])
    assert load_qrels(headerless) == expected
    mixed = tmp_path / "mixed.tsv"
    write_lines(mixed, ["q1 0 d1 1", "q2\td3\t2"])
    with pytest.raises(ConnectorError, match="line 2: expected 4 fields"):
        load_qrels(mixed)
    with pytest.raises(ConnectorError, match="file not found"):
        load_qrels(tmp_path / "absent.tsv")


@pytest.mark.skipif(
    not DEBIAN.is_dir(), reason=f"debian-packages dataset not found at {DEBIAN} (shared data)"
)
def test_debian_packages_dev_split() -> None:
    data = load_beir(DEBIAN, split="dev")

    # corpus.jsonl has 26,543 lines, but "openjdk-17-jre" is on two of them; the later one
    # wins as in BEIR's loader, leaving 26,542 distinct documents.
    with (DEBIAN / "corpus.jsonl").open(encoding="utf-8") as corpus_file:
        assert sum(1 for line in corpus_file if line.strip()) == 26_543
    assert len(data.corpus) == 26_542
    assert len(data.queries) == 1_000
    assert set(data.qrels) == set(data.queries)
    assert all(len(docs) == 1 and set(docs.values()) == {1} for docs in data.qrels.values())
    assert all(doc in data.corpus for docs in data.qrels.values() for doc in docs)
    assert available_splits(DEBIAN) == ["dev", "train"]


# --- TREC runs -----------------------------------------------------------------------------------


@requires_pytrec_eval
def test_trec_run_round_trip(tmp_path: Path) -> None:
    run = {"q2": {"d1": 0.25, "d2": 1.0 / 3.0, "d3": -1.5}, "q1": {"dz": 2.0, "da": 2.0}}
    path = write_trec_run(run, tmp_path / "runs" / "bm25.trec", "bm25")

    assert read_trec_run(path) == run
    assert path.read_text().splitlines() == [
        "q1 Q0 da 1 2.0 bm25",
        "q1 Q0 dz 2 2.0 bm25",
        f"q2 Q0 d2 1 {1.0 / 3.0!r} bm25",
        "q2 Q0 d1 2 0.25 bm25",
        "q2 Q0 d3 3 -1.5 bm25",
    ]
    assert sorted(p.name for p in path.parent.iterdir()) == ["bm25.trec"]  # no temp file left

    # A written run scores exactly as the run it came from.
    qrels = {"q1": {"dz": 1}, "q2": {"d1": 1}}
    assert evaluate(read_trec_run(path), qrels).mean == evaluate(run, qrels).mean


def test_trec_run_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="tag"):
        write_trec_run({"q1": {"d1": 1.0}}, tmp_path / "run.trec", "my tag")
    with pytest.raises(ConfigError, match="document id"):
        write_trec_run({"q1": {"d 1": 1.0}}, tmp_path / "run.trec", "tag")
    assert not (tmp_path / "run.trec").exists()

    bad = tmp_path / "bad.trec"
    write_lines(bad, ["q1 Q0 d1 1 0.5 tag", "q1 Q0 d2 2 0.4"])
    with pytest.raises(ConnectorError, match=r"bad\.trec: line 2: expected 6 fields"):
        read_trec_run(bad)
    write_lines(bad, ["q1 Q0 d1 1 high tag"])
    with pytest.raises(ConnectorError, match="line 1: score 'high'"):
        read_trec_run(bad)


# --- significance ----------------------------------------------------------------------------------


@pytest.mark.parametrize("test", ["paired-t", "randomization"])
def test_identical_systems_are_not_different(test: str) -> None:
    scores = {f"q{i}": (i % 7) / 7 for i in range(30)}
    result = compare(scores, dict(scores), test=test)
    assert result.p_value == 1.0
    assert result.delta == 0.0
    assert result.n == 30
    assert not result.significant


@pytest.mark.parametrize("test", ["paired-t", "randomization"])
def test_clearly_better_system_is_significant(test: str) -> None:
    rng = np.random.default_rng(7)
    baseline = rng.uniform(0.2, 0.7, size=50)
    better = np.clip(baseline + 0.1 + rng.normal(0.0, 0.05, size=50), 0.0, 1.0)
    a = {f"q{i}": float(value) for i, value in enumerate(baseline)}
    b = {f"q{i}": float(value) for i, value in enumerate(better)}
    b["only-in-b"] = 0.0

    result = compare(a, b, test=test)
    assert result.n == 50
    assert result.p_value < 0.01
    assert result.significant
    assert result.delta == pytest.approx(float(np.mean(better - baseline)))
    assert result.mean_b - result.mean_a == pytest.approx(result.delta)


def test_randomization_agrees_with_t_test_on_normal_differences() -> None:
    rng = np.random.default_rng(3)
    a_values = rng.uniform(0.3, 0.7, size=60)
    b_values = a_values + rng.normal(0.02, 0.08, size=60)
    a = {f"q{i}": float(value) for i, value in enumerate(a_values)}
    b = {f"q{i}": float(value) for i, value in enumerate(b_values)}

    t_test = compare(a, b, test="paired-t")
    randomization = compare(a, b, test="randomization", n_resamples=20_000, seed=1)
    assert 0.01 < t_test.p_value < 0.5  # a case where the two tests have room to disagree
    assert randomization.p_value == pytest.approx(t_test.p_value, abs=0.02)
    assert compare(a, b, test="randomization", n_resamples=20_000, seed=1) == randomization


def test_small_randomization_test_is_exact() -> None:
    # Three positive differences: only the all-plus and all-minus sign patterns (2 of 2**3)
    # reach the observed |mean|.
    result = compare(
        {"a": 0.0, "b": 0.0, "c": 0.0}, {"a": 0.1, "b": 0.2, "c": 0.3}, test="randomization"
    )
    assert result.p_value == pytest.approx(2 / 8)


def test_compare_rejects_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="unknown test"):
        compare({"q1": 0.1, "q2": 0.2}, {"q1": 0.1, "q2": 0.3}, test="wilcoxon")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="at least 2 queries"):
        compare({"q1": 0.1}, {"q1": 0.2, "q2": 0.3})
