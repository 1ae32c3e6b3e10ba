"""The byte budget of a remote encoder without a local tokenizer is an upper bound of what a
real WordPiece tokenizer (all-MiniLM-L6-v2's) counts, also on adversarial text."""

from __future__ import annotations

import random

import pytest

from ragkit.chunking import Chunker
from ragkit.config import ChunkingConfig
from ragkit.documents import Block, Document
from ragkit.encoders.http.tokens import ByteBudget, token_counter


def adversarial_texts() -> list[str]:
    rng = random.Random(7)
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return [
        "".join(rng.choice(letters) for _ in range(3000)),  # one long random word
        "".join(chr(rng.randint(0x4E00, 0x9FFF)) for _ in range(800)),  # CJK
        "".join(rng.choice("0123456789") for _ in range(2000)),  # digits
        "".join(rng.choice("!\"#$%&'()*+,-./:;<=>?@[]^_`{|}~") for _ in range(2000)),
        " ".join(
            "".join(rng.choice(letters) for _ in range(rng.randint(1, 30))) for _ in range(300)
        ),
        "naïve café Zürich Ελληνικά русский текст عربى हिन्दी 🙂🚀 " * 40,
        "a1.b2,c3;" * 300,
    ]


@pytest.fixture(scope="module")
def minilm():  # type: ignore[no-untyped-def]
    return token_counter("default")


def test_bytes_bound_the_real_token_count(minilm) -> None:  # type: ignore[no-untyped-def]
    budget = ByteBudget()
    texts = adversarial_texts()
    for text, estimate, real in zip(texts, budget.count(texts), minilm.count(texts), strict=True):
        assert real <= estimate, text[:40]
        assert real + minilm.special_tokens <= estimate + budget.special_tokens


@pytest.mark.parametrize("limit", [128, 512])
def test_chunks_cut_by_the_byte_budget_fit_the_models_limit(minilm, limit: int) -> None:  # type: ignore[no-untyped-def]
    chunker = Chunker(
        ByteBudget(), ChunkingConfig(overlap_tokens=8), encoder_max_tokens=limit, prompt="query: "
    )
    blocks = [Block(text=t, headings=("Héading ✓",)) for t in adversarial_texts()]
    chunks = chunker.chunk("d", Document(uri="d", title="Tïtle 東京", blocks=blocks, format="txt"))
    assert len(chunks) > 10
    counts = minilm.count(["query: " + c.embed_text for c in chunks])
    assert max(counts) + minilm.special_tokens <= limit
    for chunk in chunks:
        assert ByteBudget().count(["query: " + chunk.embed_text])[0] <= limit


def test_a_named_local_tokenizer_counts_exactly(minilm) -> None:  # type: ignore[no-untyped-def]
    assert minilm.count(["hello world"]) == [2] and minilm.special_tokens == 2
    assert minilm.id and ByteBudget().id == "utf8-bytes-v1"
