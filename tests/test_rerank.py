"""CrossEncoderReranker on tiny random cross-encoders built once per session (no model hub)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ragkit.errors import ConfigError
from ragkit.retrieval.rerank import CrossEncoderReranker

WORDS = [
    *("backup", "restore", "snapshot", "sqlite", "database", "git", "rebase", "merge", "branch"),
    *("dns", "dhcp", "router", "python", "wheel", "venv", "disk", "alert", "cat", "dog"),
    *("banana", "recipe", "the", "a", "of", "to", "how"),
]

QUERY = "how to restore a sqlite backup"
CANDIDATES = [
    (11, "restore the sqlite database from a backup snapshot"),
    (12, "git rebase and merge a branch"),
    (13, "dns and dhcp on the router"),
    (14, "a banana recipe"),
    (15, "python wheel in a venv"),
    (16, "disk alert"),
    (17, "cat and dog"),
]


def build_tiny_cross_encoder(folder: Path, *, num_labels: int = 1, seed: int = 0) -> Path:
    """A 1-layer BERT with a WordLevel tokenizer, saved as a plain Hugging Face folder."""
    import torch
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {token: i for i, token in enumerate([*specials, *WORDS])}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=64,
    )
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=num_labels,
        initializer_range=0.5,  # large random weights: scores spread out, no near-ties
    )
    BertForSequenceClassification(config).save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_cross_encoder_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_cross_encoder(tmp_path_factory.mktemp("tiny-cross-encoder"))


@pytest.fixture(scope="session")
def reranker(tiny_cross_encoder_path: Path) -> CrossEncoderReranker:
    return CrossEncoderReranker.load(str(tiny_cross_encoder_path), device="cpu", batch_size=3)


def test_rerank_orders_by_the_models_own_scores(reranker: CrossEncoderReranker) -> None:
    predicted = reranker.model.predict(
        [(QUERY, text) for _, text in CANDIDATES], show_progress_bar=False
    )
    assert len(set(np.round(predicted, 6))) == len(CANDIDATES)  # no ties: the order is defined
    expected_order = [CANDIDATES[i][0] for i in np.argsort(-predicted)]
    assert expected_order != [doc_id for doc_id, _ in CANDIDATES]  # reranking changes something

    ranked = reranker.rerank(QUERY, CANDIDATES)
    assert [doc_id for doc_id, _ in ranked] == expected_order
    by_id = {doc_id: score for doc_id, score in ranked}
    for (doc_id, _), score in zip(CANDIDATES, predicted, strict=True):
        assert by_id[doc_id] == pytest.approx(float(score), abs=1e-6)


def test_top_n_keeps_the_best(reranker: CrossEncoderReranker) -> None:
    full = reranker.rerank(QUERY, CANDIDATES)
    assert reranker.rerank(QUERY, CANDIDATES, top_n=3) == full[:3]
    assert reranker.rerank(QUERY, CANDIDATES, top_n=100) == full
    assert reranker.rerank(QUERY, CANDIDATES, top_n=0) == []
    assert reranker.rerank(QUERY, []) == []
    with pytest.raises(ConfigError, match="top_n"):
        reranker.rerank(QUERY, CANDIDATES, top_n=-1)


def test_from_model_matches_load(reranker: CrossEncoderReranker) -> None:
    wrapped = CrossEncoderReranker.from_model(reranker.model, name="in-memory", batch_size=32)
    assert wrapped.name == "in-memory"
    ours, theirs = wrapped.rerank(QUERY, CANDIDATES), reranker.rerank(QUERY, CANDIDATES)
    assert [doc_id for doc_id, _ in ours] == [doc_id for doc_id, _ in theirs]
    assert [score for _, score in ours] == pytest.approx([score for _, score in theirs], abs=1e-6)


def test_multi_label_model_is_refused(tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = build_tiny_cross_encoder(tmp_path_factory.mktemp("tiny-nli"), num_labels=3)
    nli = CrossEncoderReranker.load(str(folder), device="cpu")
    with pytest.raises(ConfigError, match="num_labels=1"):
        nli.rerank(QUERY, CANDIDATES)


def test_missing_model_folder_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot load the reranker"):
        CrossEncoderReranker.load(str(tmp_path / "no-such-model"), device="cpu")
