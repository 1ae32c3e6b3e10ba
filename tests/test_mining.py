"""Hard-negative mining from a tiny workspace: exclusions, margins, rank ranges, cross-encoder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ragkit.errors import ConfigError
from ragkit.training import MiningConfig, Pair, mine_hard_negatives
from ragkit.training.mining import ChunkTable, mining_mode
from ragkit.training.pairs import doc_key

POSITIVE = "backup restore snapshot disk"
DOCS = {
    "pos": POSITIVE + ". " + " ".join(["backup snapshot restore"] * 20),  # several chunks
    "dup": POSITIVE,  # a false negative: the same text under another id
    "near1": "backup restore snapshot zfs pool",
    "near2": "backup restore disk storage raid",
    "near3": "backup snapshot sqlite database",
    "near4": "restore snapshot git commit branch",
    "near5": "backup docker container image",
    "mid1": "disk storage zfs pool raid",
    "mid2": "sqlite database wal vacuum index",
    "far1": "git rebase merge bisect hook",
    "far2": "dns dhcp subnet router network",
    "far3": "ssh key agent config password",
    "far4": "systemd unit timer cron linux",
    "far5": "python package wheel venv shell",
}
QUERY = "backup restore snapshot"
TITLE = "linux"  # one title for all, so a passage is its text plus the same word


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory, tiny_encoder):  # type: ignore[no-untyped-def]
    import ragkit

    root = tmp_path_factory.mktemp("mining")
    corpus = root / "corpus.jsonl"
    corpus.write_text(
        "".join(json.dumps({"_id": k, "title": TITLE, "text": v}) + "\n" for k, v in DOCS.items())
    )
    (root / "ws").mkdir()
    # Small chunks, so the positive document has several and exclusion must work by document.
    (root / "ws" / "ragkit.toml").write_text("[chunking]\nmax_tokens = 24\noverlap_tokens = 0\n")
    workspace = ragkit.open(root / "ws", encoder=tiny_encoder, create=True)
    workspace.ingest(corpus)
    yield workspace
    workspace.close()


def pairs() -> list[Pair]:
    return [Pair(QUERY, passage(POSITIVE), positive_doc="pos")]


def passage(text: str) -> str:
    return f"{TITLE}\n{text}"


def candidate_order(kit) -> list[str]:  # type: ignore[no-untyped-def]
    """Documents in the workspace's own ranking for QUERY, positive document left out."""
    hits = kit.query_many([QUERY], k=100, mode=mining_mode(kit))[0]
    order = list(dict.fromkeys(doc_key(h.uri) for h in hits))
    return [d for d in order if d != "pos"]


def dense_score(kit, doc: str) -> float:  # type: ignore[no-untyped-def]
    q = kit.encoder.encode_queries([QUERY])[0]
    table = ChunkTable(kit, kit.encoder)
    chunks = [c for c in table.ids if table.doc[c] == doc]
    return float(max(table.vectors(chunks) @ q))


def test_positive_document_has_several_chunks_and_none_is_mined(kit) -> None:  # type: ignore[no-untyped-def]
    table = ChunkTable(kit, kit.encoder)
    assert sum(1 for c in table.ids if table.doc[c] == "pos") >= 3
    result = mine_hard_negatives(kit, pairs(), MiningConfig(num_negatives=5, range_max=13))
    (record,) = result.records
    negatives = [n["doc"] for n in record["negatives"]]
    assert "pos" not in negatives
    assert len(result.pairs[0].negatives) == 5
    assert all(n != passage(POSITIVE) for n in result.pairs[0].negatives)
    assert result.stats.positive_documents == 1  # the positive document, counted once


def test_relative_margin_drops_the_false_negative(kit) -> None:  # type: ignore[no-untyped-def]
    order = candidate_order(kit)
    assert order[0] == "dup"  # the duplicate outranks every real negative
    kept = mine_hard_negatives(kit, pairs(), MiningConfig(num_negatives=3, relative_margin=0.05))
    record = kept.records[0]
    assert "dup" not in [n["doc"] for n in record["negatives"]]
    threshold = record["positive_score"] * 0.95
    assert all(n["score"] <= threshold + 1e-4 for n in record["negatives"])
    assert kept.stats.margin >= 1
    expected = [d for d in order[:30] if dense_score(kit, d) <= threshold][:3]
    assert [n["doc"] for n in record["negatives"]] == expected

    without = mine_hard_negatives(kit, pairs(), MiningConfig(num_negatives=3, relative_margin=None))
    assert [n["doc"] for n in without.records[0]["negatives"]] == order[:3]


def test_rank_range_skips_the_top_and_stops_at_range_max(kit) -> None:  # type: ignore[no-untyped-def]
    order = candidate_order(kit)
    config = MiningConfig(num_negatives=3, range_min=2, range_max=6, relative_margin=None)
    record = mine_hard_negatives(kit, pairs(), config).records[0]
    assert [n["doc"] for n in record["negatives"]] == order[2:5]
    assert [n["rank"] for n in record["negatives"]] == [2, 3, 4]

    narrow = MiningConfig(num_negatives=2, range_min=4, range_max=6, relative_margin=None)
    record = mine_hard_negatives(kit, pairs(), narrow).records[0]
    assert [n["doc"] for n in record["negatives"]] == order[4:6]
    assert "random" not in record


class RejectAll:
    def predict(self, pairs, batch_size=32, show_progress_bar=False):  # type: ignore[no-untyped-def]
        return np.array([0.0 if t == passage(POSITIVE) else 1.0 for _, t in pairs])


def test_rows_short_of_negatives_are_filled_with_random_other_documents(kit) -> None:  # type: ignore[no-untyped-def]
    config = MiningConfig(num_negatives=3, relative_margin=None, seed=7)
    result = mine_hard_negatives(kit, pairs(), config, cross_encoder=RejectAll())
    record = result.records[0]
    assert record["negatives"] == []
    assert len(record["random"]) == 3 == len(set(record["random"]))
    assert "pos" not in record["random"]
    assert result.stats.random_fill == 3
    assert len(result.pairs[0].negatives) == 3


class FakeCrossEncoder:
    """Scores a pair by a rule, so the test knows which candidates it must reject."""

    def __init__(self) -> None:
        self.calls = 0

    def predict(self, pairs, batch_size=32, show_progress_bar=False):  # type: ignore[no-untyped-def]
        self.calls += 1
        return np.array([2.0 if "zfs" in t or t == passage(POSITIVE) else 0.5 for _, t in pairs])


def test_cross_encoder_rejects_candidates_scoring_like_the_positive(kit) -> None:  # type: ignore[no-untyped-def]
    order = candidate_order(kit)
    config = MiningConfig(num_negatives=3, relative_margin=None)
    ce = FakeCrossEncoder()
    record = mine_hard_negatives(kit, pairs(), config, cross_encoder=ce).records[0]
    negatives = [n["doc"] for n in record["negatives"]]
    zfs = {d for d in order if "zfs" in DOCS[d]}
    assert zfs & set(order[:4])  # a zfs document would have been mined without the check
    assert not zfs & set(negatives)
    # the duplicate scores exactly like the positive: the cross-encoder rejects it as well
    rejected = zfs | {"dup"}
    assert negatives == [d for d in order[:8] if d not in rejected][:3]
    assert record["positive_ce_score"] == 2.0
    assert ce.calls == 1


def test_mining_is_batched_deterministic_and_written_as_jsonl(kit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    many = [
        Pair(QUERY, passage(POSITIVE), positive_doc="pos"),
        Pair("git merge branch", passage(DOCS["far1"]), positive_doc="far1"),
        Pair("dns router", passage(DOCS["far2"]), positive_doc="far2"),
        Pair(
            "dns router", passage(DOCS["mid1"]), positive_doc="mid1"
        ),  # a second positive of one query
    ]
    one = mine_hard_negatives(kit, many, MiningConfig(num_negatives=2, batch_size=1))
    big = mine_hard_negatives(kit, many, MiningConfig(num_negatives=2, batch_size=64))
    assert [p.negatives for p in one.pairs] == [p.negatives for p in big.pairs]
    assert one.stats.queries == 3
    dns = next(r for r in one.records if r["query"] == "dns router")
    assert dns["positive_docs"] == ["far2", "mid1"]
    assert not {"far2", "mid1"} & {n["doc"] for n in dns["negatives"]}
    path = one.write(tmp_path / "negatives.jsonl")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["query"] for line in lines] == [QUERY, "git merge branch", "dns router"]


def test_a_positive_without_document_id_is_excluded_by_its_text(kit) -> None:  # type: ignore[no-untyped-def]
    anonymous = [Pair("dns router network", passage(DOCS["far2"]))]
    record = mine_hard_negatives(kit, anonymous, MiningConfig(relative_margin=None)).records[0]
    assert record["positive_docs"] == ["far2"]
    assert "far2" not in {n["doc"] for n in record["negatives"]}


def test_chunk_vectors_come_from_the_cache_and_match_the_encoder(kit) -> None:  # type: ignore[no-untyped-def]
    table = ChunkTable(kit, kit.encoder)
    vectors = table.vectors(table.ids[:5])
    expected = kit.encoder.encode_documents([table.embed_text[c] for c in table.ids[:5]])
    np.testing.assert_allclose(vectors, expected, atol=1e-6)


def test_mining_config_is_validated(kit) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="range"):
        mine_hard_negatives(kit, pairs(), MiningConfig(range_min=5, range_max=5))
    with pytest.raises(ConfigError, match="relative_margin"):
        mine_hard_negatives(kit, pairs(), MiningConfig(relative_margin=1.5))
    with pytest.raises(ConfigError, match="not available"):
        mine_hard_negatives(kit, pairs(), MiningConfig(mode="nonsense"))


def test_evaluator_matches_ragkit_eval_and_pools_are_neutral(kit) -> None:  # type: ignore[no-untyped-def]
    """The fine-tuner's before/after scorer gives `ragkit eval`'s numbers on the same index."""
    from ragkit.pipelines.eval import eval_workspace
    from ragkit.training.evaluator import RetrievalEvaluator, hard_subset
    from ragkit.training.mining import search

    queries = {"q1": QUERY, "q2": "dns router network", "q3": "git merge branch commit"}
    qrels = {"q1": {"pos": 1}, "q2": {"far2": 1}, "q3": {"far1": 1}}
    table = ChunkTable(kit, kit.encoder)
    ours = RetrievalEvaluator(kit, queries, qrels, table=table).evaluate(kit.encoder)
    theirs = eval_workspace(kit, queries, qrels, metrics=("ndcg@10", "mrr@10", "recall@100"))
    assert set(ours) == {r.mode for r in theirs} - {"sparse"}
    for result in theirs:
        if result.mode in ours:
            assert ours[result.mode] == pytest.approx(result.metrics), result.mode

    pool = hard_subset(kit, table, [QUERY], {"q1": {"pos": 1}}, size=12, distractors=2)
    docs = {table.doc[c] for c in pool}
    lexical = [doc_key(h.uri) for h in search(kit, [QUERY], k=20, mode="sparse")[0]]
    distractors = [d for d in dict.fromkeys(lexical) if d != "pos"][:2]
    assert {"pos", *distractors} <= docs
    assert {c for c in table.ids if table.doc[c] == "pos"} <= set(pool)
    assert len(pool) == 12


def test_each_query_is_encoded_once(kit, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    encoded: list[str] = []
    original = kit.encoder.encode_queries

    def counting(texts):  # type: ignore[no-untyped-def]
        encoded.extend(texts)
        return original(texts)

    monkeypatch.setattr(kit.encoder, "encode_queries", counting)
    many = [Pair(QUERY, passage(POSITIVE), positive_doc="pos"), Pair("dns router", "x")]
    reference = mine_hard_negatives(kit, many, MiningConfig(num_negatives=2, batch_size=8))
    assert sorted(encoded) == sorted([QUERY, "dns router"])
    monkeypatch.undo()
    again = mine_hard_negatives(kit, many, MiningConfig(num_negatives=2, batch_size=8))
    assert [p.negatives for p in reference.pairs] == [p.negatives for p in again.pairs]
