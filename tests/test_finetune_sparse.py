"""``ragkit finetune --sparse``: a tiny random SPLADE learns the synthetic task of the dense tests.

The task (tests/test_training_pipeline.py) writes documents in one vocabulary ("backup git") and
queries in another ("cat red"), so a lexical model starts at chance: no query word occurs in any
document. A SPLADE model can only answer by learning to *expand* a document into the query's
words through its MLM head, which is what fine-tuning must teach it; the held-out dev queries
are unseen combinations of known words.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragkit.errors import ConfigError
from ragkit.training import MiningConfig
from ragkit.training.model_card import read_registry
from ragkit.training.sparse_trainer import SparseTrainConfig
from tests.test_training_pipeline import synthetic  # noqa: F401


def build_tiny_splade(folder: Path) -> Path:
    """A 1-layer random BERT MLM under SpladePooling, saved as a SparseEncoder folder.

    The word-level vocabulary is the suite's (tests.conftest), so every test word is one token.
    """
    import torch
    from sentence_transformers.models import Transformer
    from sentence_transformers.sparse_encoder import SparseEncoder
    from sentence_transformers.sparse_encoder.modules import SpladePooling
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

    from tests.conftest import corpus_words

    mlm = folder / "mlm"
    mlm.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    (mlm / "vocab.txt").write_text("\n".join(specials + corpus_words()) + "\n")
    tokenizer = BertTokenizerFast(vocab=str(mlm / "vocab.txt"))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    BertForMaskedLM(config).save_pretrained(mlm)
    tokenizer.save_pretrained(mlm)
    modules = [
        Transformer(str(mlm), transformer_task="fill-mask", max_seq_length=32),
        SpladePooling("max"),
    ]
    model = SparseEncoder(modules=modules, device="cpu")
    model.save(str(folder / "splade"))
    return folder / "splade"


@pytest.fixture(scope="module")
def tiny_splade(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_splade(tmp_path_factory.mktemp("tiny-splade"))


def sparse_training() -> SparseTrainConfig:
    return SparseTrainConfig(epochs=10.0, batch_size=16, learning_rate=1e-3, warmup_ratio=0.0)


def test_sparse_finetune_really_improves_the_sparse_channel(
    synthetic: Path,  # noqa: F811
    tiny_splade: Path,
    workspace,
) -> None:  # type: ignore[no-untyped-def]
    """A real margin, not "it ran": the untrained SPLADE is at chance on this task."""
    from ragkit.config import SparseConfig
    from ragkit.pipelines.finetune import FinetuneConfig, finetune

    workspace.ingest(synthetic / "corpus.jsonl")  # a BM25 collection: --sparse-model gives one
    config = FinetuneConfig(
        dataset=synthetic,
        eval_dataset=synthetic,
        channels=("sparse",),
        sparse_model=str(tiny_splade),
        sparse_train=sparse_training(),
        mining=MiningConfig(num_negatives=1, range_max=10),
        sparse_name="splade-tuned",
    )
    events: list[str] = []
    report = finetune(workspace, config, progress=lambda event, n: events.append(event))

    before, after = report.metrics["before"], report.metrics["after"]
    assert set(after) == {"dense", "sparse", "hybrid"} and report.eval_queries == 20
    assert before["sparse"]["ndcg@10"] < 0.25  # chance: 1 relevant among 100 documents
    assert after["sparse"]["ndcg@10"] > 0.6
    assert after["sparse"]["ndcg@10"] - before["sparse"]["ndcg@10"] > 0.45
    assert after["sparse"]["mrr@10"] > before["sparse"]["mrr@10"] + 0.6
    assert after["dense"] == before["dense"]  # the dense encoder was not trained
    assert after["hybrid"]["ndcg@10"] > before["hybrid"]["ndcg@10"] + 0.2
    assert report.channels == ["sparse"] and set(report.models) == {"sparse"}
    assert report.train_pairs == 80 and report.mining["stats"]["queries"] == 80
    assert "stage:sparse-train" in events and "sparse-train_total" in events

    model = Path(report.model_path)
    assert model == workspace.root / "models" / "splade-tuned"
    card = (model / "README.md").read_text()
    assert "SpladeLoss" in card and "query_regularizer_weight" in card and "[sparse]" in card
    (entry,) = read_registry(workspace.root)
    assert entry["kind"] == "sparse" and entry["sparse"] == {"model": str(model)}
    assert entry["fingerprint"] == report.fingerprint != report.base_fingerprint

    # Registered like a dense model: a new collection takes it as its sparse channel, its
    # vectors come from the cache the fine-tune filled, and it answers queries.
    workspace.create_collection("splade", sparse=SparseConfig(model=str(model)), state="live")
    hits = workspace.query("cat red", k=3, mode="sparse", collection="splade")
    assert hits and hits[0].text.strip() == "backup git"


def test_sparse_finetune_refuses_a_bm25_collection(
    synthetic: Path,  # noqa: F811
    workspace,
) -> None:  # type: ignore[no-untyped-def]
    from ragkit.pipelines.finetune import FinetuneConfig, finetune

    workspace.ingest(synthetic / "corpus.jsonl")
    with pytest.raises(ConfigError, match="BM25") as caught:
        finetune(workspace, FinetuneConfig(dataset=synthetic, channels=("sparse",)))
    assert "--sparse-model" in str(caught.value) and '[sparse] model = "splade"' in str(
        caught.value
    )
    assert not (workspace.root / "runs").exists()  # refused before any work
    with pytest.raises(ConfigError, match="channels"):
        finetune(workspace, FinetuneConfig(dataset=synthetic, channels=("colbert",)))


def _app():  # type: ignore[no-untyped-def]
    import typer

    from ragkit.cli.finetune import finetune_command

    app = typer.Typer()
    app.command("finetune")(finetune_command)
    app.command("noop")(lambda: None)
    return app


def test_cli_help_and_flag_errors() -> None:
    result = CliRunner().invoke(_app(), ["finetune", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for flag in ("--sparse", "--channels", "--sparse-model", "--query-regularizer"):
        assert flag in result.stdout
    assert "dense,sparse" in result.stdout and "BM25" in result.stdout
    bad = CliRunner().invoke(_app(), ["finetune", "--sparse-model", "x"])
    assert bad.exit_code == 1 and "add --sparse" in bad.output
    bad = CliRunner().invoke(_app(), ["finetune", "--sparse", "--channels", "dense"])
    assert bad.exit_code == 1 and "add sparse to --channels" in bad.output


def test_cli_trains_both_channels_on_the_same_data(
    synthetic: Path,  # noqa: F811
    tiny_splade: Path,
    tmp_path: Path,
    tiny_encoder,
    monkeypatch,
) -> None:  # type: ignore[no-untyped-def]
    import ragkit

    root = tmp_path / "ws"
    with ragkit.open(root, encoder=tiny_encoder, create=True) as kit:
        kit.ingest(synthetic / "corpus.jsonl")
    original = ragkit.open
    monkeypatch.setattr(
        ragkit, "open", lambda path, **kw: original(path, encoder=tiny_encoder, **kw)
    )
    args = ["finetune", "-w", str(root), "--dataset", str(synthetic)]
    args += ["--eval-dataset", str(synthetic), "--channels", "dense,sparse"]
    args += ["--sparse-model", str(tiny_splade), "--no-soup", "--sparse-lr", "1e-3"]
    args += ["--epochs", "6", "--batch-size", "16", "--lr", "0.1", "--negatives", "1"]
    args += ["--range-max", "10", "--json"]
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["channels"] == ["dense", "sparse"] and set(report["models"]) == {
        "dense",
        "sparse",
    }
    before, after = report["metrics"]["before"], report["metrics"]["after"]
    for mode in ("dense", "sparse", "hybrid"):
        assert after[mode]["ndcg@10"] > before[mode]["ndcg@10"] + 0.4, mode
    assert report["model_path"] == report["models"]["dense"]["path"]
    kinds = sorted(entry["kind"] for entry in read_registry(root))
    assert kinds == ["dense", "sparse"]
