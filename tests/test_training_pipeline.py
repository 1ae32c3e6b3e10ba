"""Pairs, splits, soups, and end-to-end fine-tunes of the tiny static model on a synthetic task.

The synthetic task starts at chance on purpose: documents are written with one vocabulary
("backup git") and queries with another ("cat red"), through a fixed word-to-word mapping. The
tiny model's random word vectors know nothing of that mapping, so retrieval only works once
fine-tuning has learnt it, and held-out queries (unseen combinations of known words) test that
it generalised rather than memorised.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import build_tiny_bert
from typer.testing import CliRunner

from ragkit.errors import ConfigError, ConnectorError
from ragkit.evaluation import load_beir
from ragkit.training import (
    InverseCloze,
    MiningConfig,
    Pair,
    TrainConfig,
    average_state_dicts,
    generate_pairs,
    load_pairs,
    make_soup,
    pairs_from_beir,
    sample_pairs,
    select_soup,
    split_pairs,
)
from ragkit.training.model_card import read_registry

DOC_A = "backup restore snapshot disk storage zfs pool raid sqlite database".split()  # noqa: SIM905
DOC_B = "git rebase merge commit branch docker container image python package".split()  # noqa: SIM905
QUERY_A = "cat dog fish bird apple banana cherry grape lemon orange".split()  # noqa: SIM905
QUERY_B = "red green blue yellow black white one two three four".split()  # noqa: SIM905
TRANSLATE = dict(zip(DOC_A + DOC_B, QUERY_A + QUERY_B))


def translate(text: str, title: str, headings: tuple[str, ...]) -> list[str]:
    """A stand-in for an LLM query generator: says what the passage is about, in other words."""
    return [" ".join(TRANSLATE[w] for w in text.split() if w in TRANSLATE)]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """100 documents "X Y"; the query of document (a, b) is "P[a] Q[b]". 20 queries are dev."""
    root = tmp_path_factory.mktemp("synthetic")
    (root / "qrels").mkdir()
    corpus, queries, train, dev = [], [], [], []
    for a in range(10):
        for b in range(10):
            corpus.append({"_id": f"d{a}{b}", "title": "", "text": f"{DOC_A[a]} {DOC_B[b]}"})
            queries.append({"_id": f"q{a}{b}", "text": f"{QUERY_A[a]} {QUERY_B[b]}"})
            (dev if (a + 2 * b) % 5 == 0 else train).append(f"q{a}{b}\td{a}{b}\t1\n")
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in corpus))
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    header = "query-id\tcorpus-id\tscore\n"
    (root / "qrels" / "train.tsv").write_text(header + "".join(train))
    (root / "qrels" / "dev.tsv").write_text(header + "".join(dev))
    return root


def small_training(**overrides) -> TrainConfig:  # type: ignore[no-untyped-def]
    values = {"epochs": 6.0, "batch_size": 16, "learning_rate": 0.1, "warmup_ratio": 0.0}
    return TrainConfig(**{**values, **overrides})


# -- pairs -------------------------------------------------------------------------------------
def test_pairs_load_from_jsonl_and_csv(tmp_path: Path) -> None:
    jsonl = tmp_path / "pairs.jsonl"
    jsonl.write_text(
        json.dumps({"query": "q1", "positive": "p1", "negatives": ["n1", "n2"]})
        + "\n\n"
        + json.dumps({"query": "q2", "positive": "p2", "positive_doc": "d2"})
        + "\n"
    )
    assert load_pairs(jsonl) == [
        Pair("q1", "p1", ("n1", "n2"), source="file"),
        Pair("q2", "p2", positive_doc="d2", source="file"),
    ]
    csv = tmp_path / "pairs.csv"
    csv.write_text('query,positive,negative_1,negative_2\nq1,p1,n1,\nq2,"p, 2",n3,n4\n')
    assert [(p.query, p.positive, p.negatives) for p in load_pairs(csv)] == [
        ("q1", "p1", ("n1",)),
        ("q2", "p, 2", ("n3", "n4")),
    ]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"query": "q"}) + "\n")
    with pytest.raises(ConnectorError, match="line 1: missing 'positive'"):
        load_pairs(bad)


def test_pairs_from_beir_use_title_and_text(synthetic: Path) -> None:
    data = load_beir(synthetic, "train")
    pairs = pairs_from_beir(data)
    assert len(pairs) == len(data.qrels)
    first = next(p for p in pairs if p.query_id == "q01")
    assert (first.query, first.positive, first.positive_doc) == (
        "cat green",
        "backup rebase",
        "d01",
    )
    data.corpus["d01"]["title"] = "Tools"
    titled = next(p for p in pairs_from_beir(data) if p.query_id == "q01")
    assert titled.positive == "Tools\nbackup rebase"


def test_inverse_cloze_takes_a_sentence_or_heading_and_cuts_it_from_the_positive(
    workspace, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    text = "Snapshots are cheap on zfs. A pool keeps every snapshot until you destroy it."
    generator = InverseCloze(seed=3, title_rate=0.0)
    (query,) = generator(text, "Storage", ("Storage", "Snapshots"))
    assert query in text and generator(text, "Storage", ()) == [query]  # seeded by the text
    assert InverseCloze(title_rate=1.0)(text, "Storage", ("Storage", "Snapshots")) == ["Snapshots"]

    doc = tmp_path / "notes.md"
    doc.write_text("# Storage\n\n" + text + "\n")
    workspace.ingest(doc)
    (pair,) = generate_pairs(workspace, generator=generator)
    assert pair.query == query
    assert query not in pair.positive and "Storage" in pair.positive
    assert pair.positive_doc == "notes.md"
    (llm,) = generate_pairs(workspace, generator=lambda text, title, headings: ["zfs snapshots"])
    assert llm.query == "zfs snapshots" and text.split(".")[0] in llm.positive


def test_held_out_split_is_seeded_and_keeps_each_query_on_one_side() -> None:
    pairs = [Pair(f"q{i % 30}", f"p{i}", query_id=f"q{i % 30}") for i in range(60)]
    train, held = split_pairs(pairs, fraction=0.2, seed=1)
    assert {p.group for p in train}.isdisjoint({p.group for p in held})
    assert len({p.group for p in held}) == 6 and len(train) + len(held) == 60
    assert split_pairs(pairs, fraction=0.2, seed=1) == (train, held)
    assert split_pairs(pairs, fraction=0.2, seed=2)[1] != held
    with pytest.raises(ConfigError, match="too few"):
        split_pairs(pairs[:1], fraction=0.5)
    sample, rest = sample_pairs(pairs, 21, seed=0)
    assert len(sample) == 20 and len(sample) + len(rest) == 60  # whole groups of 2 only
    assert {p.group for p in sample}.isdisjoint({p.group for p in rest})
    assert sample_pairs(pairs, 21, seed=0)[0] == sample != sample_pairs(pairs, 21, seed=5)[0]
    assert sample_pairs(pairs, None) == (pairs, [])


# -- training --------------------------------------------------------------------------------
def test_training_is_deterministic_for_a_seed_and_leaves_the_base_alone(
    tiny_encoder, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from ragkit.training import train_encoder

    pairs = [
        Pair(f"{QUERY_A[a]} {QUERY_B[b]}", f"{DOC_A[a]} {DOC_B[b]}", (f"{DOC_A[b]} {DOC_B[a]}",))
        for a in range(4)
        for b in range(4)
        if a != b
    ]
    base = {k: v.clone() for k, v in tiny_encoder.model.state_dict().items()}
    config = small_training(epochs=1.0, batch_size=4, seeds=(0,))
    runs = [
        train_encoder(tiny_encoder, pairs, config, tmp_path / name, seed=seed)
        for name, seed in (("a", 0), ("b", 0), ("c", 1))
    ]
    a, b, c = (run.model.state_dict() for run in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert not all(torch.equal(a[k], base[k]) for k in a)
    assert all(torch.equal(v, base[k]) for k, v in tiny_encoder.model.state_dict().items())
    assert [p.name for p in runs[0].checkpoints] == ["checkpoint-3"] and runs[0].steps == 3
    assert runs[0].loss["infonce"]["hardness_mode"] == "hard_negatives"


def test_checkpoints_saved_mid_training_are_chosen_among_at_the_final_length(
    tmp_path: Path,
) -> None:
    """Training runs at ``max_seq_length`` (16 here) and saves its checkpoints at that length;
    the final model gets the encoder's own (64) back. A checkpoint scored or souped for the
    final choice must encode at 64 too, or a 2-epoch run could ship a 16-token model."""
    from sentence_transformers import SentenceTransformer

    from ragkit.config import EncoderConfig
    from ragkit.encoders.dense import DenseEncoder
    from ragkit.pipelines.finetune_select import checkpoint_models
    from ragkit.training import train_encoder

    folder = build_tiny_bert(tmp_path / "bert", DOC_A + DOC_B + QUERY_A + QUERY_B)
    base = DenseEncoder.load(EncoderConfig(model=str(folder), precision="fp32", device="cpu"))
    pairs = [Pair(f"{QUERY_A[a]} {QUERY_B[a]}", f"{DOC_A[a]} {DOC_B[a]}") for a in range(8)]
    config = small_training(epochs=2.0, batch_size=4, max_seq_length=16, seeds=(0,))
    run = train_encoder(base, pairs, config, tmp_path / "run", seed=0)

    assert [p.name for p in run.checkpoints] == ["checkpoint-2", "checkpoint-4"]
    assert SentenceTransformer(str(run.checkpoints[0]), device="cpu").max_seq_length == 16
    assert run.model.max_seq_length == base.model.max_seq_length == 64
    candidates = checkpoint_models([run])
    assert list(candidates) == ["seed-0/checkpoint-2", "seed-0/final"]
    assert candidates["seed-0/final"] is run.model
    assert [m.max_seq_length for m in candidates.values()] == [64, 64]


def test_training_precision_reaches_the_trainer(tiny_encoder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from ragkit.errors import ConfigError
    from ragkit.training import train_encoder

    pairs = [Pair(QUERY_A[a], DOC_A[a]) for a in range(4)]
    runs = {
        p: train_encoder(
            tiny_encoder, pairs, small_training(batch_size=4, precision=p), tmp_path / p, seed=0
        )
        for p in ("fp32", "bf16")
    }
    assert {p: r.compute_dtype for p, r in runs.items()} == {
        "fp32": "float32",
        "bf16": "bfloat16",
    }
    with pytest.raises(ConfigError, match="needs a CUDA device"):
        train_encoder(tiny_encoder, pairs, small_training(precision="fp16"), tmp_path / "x", seed=0)


# -- soups -------------------------------------------------------------------------------------
def test_soup_averages_weights_exactly(tiny_model) -> None:  # type: ignore[no-untyped-def]
    a = {"w": torch.tensor([1.0, 2.0]), "steps": torch.tensor([3])}
    b = {"w": torch.tensor([3.0, 6.0]), "steps": torch.tensor([3])}
    assert torch.equal(average_state_dicts([a, b])["w"], torch.tensor([2.0, 4.0]))
    assert torch.equal(average_state_dicts([a, b], [3, 1])["w"], torch.tensor([1.5, 3.0]))
    with pytest.raises(ConfigError, match="differs"):
        average_state_dicts([a, {**b, "steps": torch.tensor([4])}])

    other = make_soup([tiny_model])
    with torch.no_grad():
        for parameter in other.parameters():
            parameter.add_(1.0)
    soup = make_soup([tiny_model, other])
    for key, value in soup.state_dict().items():
        expected = (tiny_model.state_dict()[key] + other.state_dict()[key]) / 2
        torch.testing.assert_close(value, expected, rtol=0, atol=1e-6)
    assert not torch.equal(soup.state_dict()[key], tiny_model.state_dict()[key])


def test_soup_is_kept_only_when_dev_metrics_agree(tiny_model) -> None:  # type: ignore[no-untyped-def]
    shifted = make_soup([tiny_model])
    with torch.no_grad():
        for parameter in shifted.parameters():
            parameter.add_(1.0)
    candidates = {"a": tiny_model, "b": shifted}

    def weight_mean(model) -> float:  # type: ignore[no-untyped-def]
        return float(next(model.parameters()).detach().mean())

    # A metric that peaks at "b": the soup lies halfway, so it is worse and is rejected.
    chosen, decision = select_soup(
        candidates, lambda m: -abs(weight_mean(m) - weight_mean(shifted))
    )
    assert chosen is shifted and decision.chosen == "b" and not decision.kept_soup
    assert decision.soup_score is not None and decision.soup_score < decision.scores["b"]
    # A metric that peaks halfway: the soup wins and is kept.
    middle = (weight_mean(tiny_model) + weight_mean(shifted)) / 2
    chosen, decision = select_soup(candidates, lambda m: -abs(weight_mean(m) - middle))
    assert decision.kept_soup and weight_mean(chosen) == pytest.approx(middle, abs=1e-6)
    # A tie keeps the soup ("at least as good").
    assert select_soup(candidates, lambda m: 1.0)[1].kept_soup
    # Greedy: an ingredient joins only if the soup does not get worse.
    third = make_soup([tiny_model])
    with torch.no_grad():
        for parameter in third.parameters():
            parameter.add_(10.0)
    three = {**candidates, "c": third}
    chosen, decision = select_soup(three, lambda m: -abs(weight_mean(m) - middle), method="greedy")
    assert decision.kept_soup and decision.ingredients == ["a", "b"]
    assert weight_mean(chosen) == pytest.approx(middle, abs=1e-6)
    uniform = select_soup(three, lambda m: -abs(weight_mean(m) - middle))[1]
    assert uniform.ingredients == ["a", "b", "c"] and not uniform.kept_soup


# -- end to end ----------------------------------------------------------------------------
def test_finetune_on_generated_queries_really_improves_held_out_retrieval(
    synthetic: Path, workspace
) -> None:  # type: ignore[no-untyped-def]
    from ragkit.config import EncoderConfig
    from ragkit.encoders import DenseEncoder
    from ragkit.pipelines.finetune import FinetuneConfig, finetune

    workspace.ingest(synthetic / "corpus.jsonl")
    config = FinetuneConfig(
        generator=translate,  # no user queries: pairs come from the corpus
        holdout_fraction=0.2,
        mining=MiningConfig(num_negatives=1, range_max=10),
        train=small_training(seeds=(0, 1), epochs=4.0),
        name="tiny-tuned",
    )
    events: list[str] = []
    report = finetune(workspace, config, progress=lambda event, n: events.append(event))

    before, after = report.metrics["before"]["dense"], report.metrics["after"]["dense"]
    assert report.eval_queries == 20
    assert before["ndcg@10"] < 0.25  # near chance: 1 relevant among 100 documents
    assert after["ndcg@10"] > 0.9
    assert after["ndcg@10"] - before["ndcg@10"] > 0.6
    assert after["mrr@10"] > before["mrr@10"] + 0.6
    if "hybrid" in report.metrics["after"]:
        assert report.metrics["after"]["hybrid"]["ndcg@10"] > before["ndcg@10"] + 0.5

    run = Path(report.run_dir)
    on_disk = json.loads((run / "report.json").read_text())
    assert on_disk["metrics"] == json.loads(json.dumps(report.metrics))
    lines = (run / "train_pairs.jsonl").read_text().splitlines()
    train_queries = {json.loads(line)["query"] for line in lines}
    assert len(train_queries) == 80 - 8  # 20 held out, 8 of the rest kept to choose the soup
    assert (run / "negatives.jsonl").exists() and report.mining["stats"]["queries"] == 72
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["seed-0", "seed-1"]
    assert report.soup is not None and set(report.soup["scores"]) >= {
        "seed-0/final",
        "seed-1/final",
    }
    assert "stage:mining" in events and "train_total" in events

    model = Path(report.model_path)
    assert model == workspace.root / "models" / "tiny-tuned"
    card = (model / "README.md").read_text()
    assert report.fingerprint in card and "ndcg@10" in card and "hardness_strength" in card
    reloaded = DenseEncoder.load(EncoderConfig(model=str(model)))
    assert reloaded.fingerprint["id"] == report.fingerprint != report.base_fingerprint
    (entry,) = read_registry(workspace.root)
    assert entry["fingerprint"] == report.fingerprint and entry["path"] == str(model)
    # the fine-tuned vectors are cached, so moving the index onto the model re-encodes nothing
    hashes = [h for _, h, _ in workspace.store.chunk_hashes()]
    cached = workspace.store.cached_vectors(hashes, report.fingerprint, reloaded.dim)
    assert len(cached) == len(hashes)


def test_finetune_refuses_pairs_it_cannot_evaluate(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from ragkit.pipelines.finetune import FinetuneConfig, finetune

    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# Git\n\nRebase your branch before the merge.\n")
    workspace.ingest(tmp_path / "docs")
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"query": "git rebase", "positive": "rebase branch"}) + "\n")
    with pytest.raises(ConfigError, match="positive_doc"):
        finetune(workspace, FinetuneConfig(pairs=pairs))


def test_cli_trains_on_beir_qrels_and_prints_before_after(
    synthetic: Path, tmp_path: Path, tiny_encoder, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    import typer

    import ragkit
    from ragkit.cli.finetune import finetune_command

    root = tmp_path / "ws"
    with ragkit.open(root, encoder=tiny_encoder, create=True) as kit:
        kit.ingest(synthetic / "corpus.jsonl")
    # the CLI opens the workspace itself; hand it the tiny encoder instead of the default one
    original = ragkit.open
    monkeypatch.setattr(
        ragkit, "open", lambda path, **kw: original(path, encoder=tiny_encoder, **kw)
    )
    app = typer.Typer()
    app.command("finetune")(finetune_command)
    app.command("noop")(lambda: None)
    args = [
        "finetune",
        "-w",
        str(root),
        "--dataset",
        str(synthetic),
        "--eval-dataset",
        str(synthetic),
    ]
    args += ["--epochs", "4", "--batch-size", "16", "--lr", "0.1", "--negatives", "1"]
    args += ["--range-max", "10", "--spread-out", "0.1", "--matryoshka-dims", "32,16"]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["eval_queries"] == 20 and report["train_pairs"] == 80 - 8  # 8 pick checkpoints
    before = report["metrics"]["before"]["dense"]["ndcg@10"]
    assert report["metrics"]["after"]["dense"]["ndcg@10"] > before + 0.5
    card = (Path(report["model_path"]) / "README.md").read_text()
    assert "MatryoshkaLoss" in card and "spread_out_weight" in card

    # again as a table, distilling from the first model as a teacher, with plain InfoNCE
    again = [*args, "--name", "again", "--alpha", "0", "--teacher", report["model_path"]]
    shown = CliRunner().invoke(app, again)
    assert shown.exit_code == 0, shown.output
    assert "ndcg@10" in shown.stdout and "dense" in shown.stdout and "again" in shown.stdout
    assert len(read_registry(root)) == 2
    card = (root / "models" / "again" / "README.md").read_text()
    assert "EmbedDistillLoss" in card and '"hardness_mode": null' in card

    bad = CliRunner().invoke(app, ["finetune", "-w", str(root), "--matryoshka-dims", "a,b"])
    assert bad.exit_code == 1 and "matryoshka" in bad.output
