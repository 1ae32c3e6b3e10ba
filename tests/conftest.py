"""Shared fixtures: one tiny in-process encoder per session, so the suite runs offline in minutes.

The encoder is a sentence-transformers ``StaticEmbedding`` over a small ``WordLevel`` vocabulary
with seeded random vectors: a text's embedding is the mean of its words' vectors, so texts that
share words are close — enough for retrieval tests to assert real rankings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE_CORPUS = REPO / "examples" / "sample-corpus"
DEBIAN = REPO.parent / "shared" / "datasets" / "debian-packages"

BASE_WORDS = [
    "the",
    "a",
    "an",
    "of",
    "to",
    "in",
    "on",
    "for",
    "and",
    "or",
    "is",
    "are",
    "was",
    "be",
    "with",
    "by",
    "as",
    "at",
    "from",
    "this",
    "that",
    "it",
    "its",
    "not",
    "no",
    "backup",
    "backups",
    "restore",
    "snapshot",
    "snapshots",
    "disk",
    "disks",
    "storage",
    "zfs",
    "pool",
    "raid",
    "sqlite",
    "database",
    "wal",
    "index",
    "indexes",
    "vacuum",
    "query",
    "queries",
    "table",
    "git",
    "rebase",
    "merge",
    "commit",
    "branch",
    "bisect",
    "hook",
    "hooks",
    "shell",
    "find",
    "xargs",
    "permissions",
    "chmod",
    "network",
    "dns",
    "dhcp",
    "subnet",
    "router",
    "ssh",
    "key",
    "keys",
    "agent",
    "config",
    "systemd",
    "unit",
    "timer",
    "cron",
    "docker",
    "container",
    "image",
    "python",
    "package",
    "wheel",
    "venv",
    "monitoring",
    "alert",
    "prometheus",
    "certificate",
    "tls",
    "encryption",
    "password",
    "manager",
    "raspberry",
    "pi",
    "linux",
    "server",
    "cat",
    "dog",
    "fish",
    "bird",
    "apple",
    "banana",
    "cherry",
    "grape",
    "lemon",
    "orange",
    "pear",
    "plum",
    "red",
    "green",
    "blue",
    "yellow",
    "black",
    "white",
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
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "zeta",
]


def corpus_words() -> list[str]:
    words = dict.fromkeys(BASE_WORDS)
    if SAMPLE_CORPUS.exists():
        for path in sorted(SAMPLE_CORPUS.rglob("*")):
            if path.suffix in {".md", ".txt", ".html", ".csv"}:
                text = path.read_text(encoding="utf-8", errors="ignore").lower()
                words.update(dict.fromkeys(re.findall(r"[a-z0-9]+", text)))
    return list(words)


def build_tiny_model(dim: int = 64, seed: int = 0):  # type: ignore[no-untyped-def]
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import StaticEmbedding
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel

    vocab = {"[UNK]": 0, "[PAD]": 1}
    for word in corpus_words():
        vocab.setdefault(word, len(vocab))
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    torch.manual_seed(seed)
    static = StaticEmbedding(tokenizer, embedding_dim=dim)
    model = SentenceTransformer(modules=[static], device="cpu")
    return model


def build_tiny_bert(root: Path, extra_words: Iterable[str] = (), max_seq_length: int = 64) -> Path:
    """A 2-layer, 32-wide random BERT with a WordPiece vocabulary of the test corpus (plus
    ``extra_words``), mean pooled, saved as a sentence-transformers folder under ``root``."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Pooling, Transformer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    hf = root / "hf"
    hf.mkdir(parents=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(corpus_words()))]
    words += sorted(set(extra_words) - set(words))
    (hf / "vocab.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(words),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(hf)
    BertTokenizerFast(str(hf / "vocab.txt")).save_pretrained(hf)
    transformer = Transformer(str(hf), max_seq_length=max_seq_length)
    model = SentenceTransformer(modules=[transformer, Pooling(32, "mean")], device="cpu")
    folder = root / "st"
    model.save(str(folder))
    return folder


@pytest.fixture(scope="session")
def tiny_model():  # type: ignore[no-untyped-def]
    return build_tiny_model()


@pytest.fixture(scope="session")
def tiny_encoder(tiny_model):  # type: ignore[no-untyped-def]
    from ragkit.encoders import DenseEncoder

    return DenseEncoder.from_model(tiny_model, name="tiny-static")


@pytest.fixture
def workspace(tmp_path, tiny_encoder):  # type: ignore[no-untyped-def]
    import ragkit

    kit = ragkit.open(tmp_path / "ws", encoder=tiny_encoder, create=True)
    yield kit
    kit.close()


@pytest.fixture
def docs(tmp_path):  # type: ignore[no-untyped-def]
    """Three small files in two formats and a subfolder, with headings."""
    root = tmp_path / "docs"
    files = {
        "pets.md": "# Pets\n\n## Cats\n\nthe cat sat on the red apple\n\n"
        "## Dogs\n\nthe dog ate a green pear\n",
        "fruit.txt": "banana cherry grape lemon orange\n\nplum and yellow lemon\n",
        "sub/net.md": "# Network\n\ndns dhcp subnet router\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return root
