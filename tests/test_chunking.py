from __future__ import annotations

import itertools

import pytest

from ragkit.chunking import Chunker
from ragkit.config import ChunkingConfig
from ragkit.documents import Block, Document


def make_chunker(encoder, max_tokens: int, overlap: int = 0, **kw) -> Chunker:  # type: ignore[no-untyped-def]
    return Chunker(
        encoder.tokens,
        ChunkingConfig(max_tokens=max_tokens, overlap_tokens=overlap, **kw),
        encoder_max_tokens=encoder.max_seq_length,
    )


def doc(*blocks: Block, title: str = "Guide") -> Document:
    return Document(uri="guide.md", title=title, blocks=list(blocks), format="md")


def test_every_chunk_fits_the_budget_including_its_header(tiny_encoder) -> None:
    chunker = make_chunker(tiny_encoder, max_tokens=40, overlap=8)
    words = " ".join(f"backup{i % 7} disk snapshot." for i in range(300))
    chunks = chunker.chunk("d1", doc(Block(words, ("Backups", "Nightly"))))
    assert len(chunks) > 5
    counts = tiny_encoder.tokens.count([c.embed_text for c in chunks])
    assert max(counts) <= 40
    assert all(c.context == "Guide\nBackups > Nightly" for c in chunks)


def test_sections_never_share_a_chunk_and_keep_their_heading_path(tiny_encoder) -> None:
    chunker = make_chunker(tiny_encoder, max_tokens=200)
    chunks = chunker.chunk(
        "d1",
        doc(
            Block("the cat sat", ("Pets", "Cats")),
            Block("the dog ran", ("Pets", "Dogs")),
            Block("the dog slept", ("Pets", "Dogs")),
        ),
    )
    assert [c.headings for c in chunks] == [("Pets", "Cats"), ("Pets", "Dogs")]
    assert chunks[1].text == "the dog ran\n\nthe dog slept"
    assert [c.ordinal for c in chunks] == [0, 1]


def test_overlap_repeats_the_tail_of_the_previous_chunk(tiny_encoder) -> None:
    chunker = make_chunker(tiny_encoder, max_tokens=30, overlap=10)
    sentences = [
        f"sentence {n} has five words."
        for n in ["one", "two", "three", "four", "five", "six", "seven", "eight"]
    ]
    chunks = chunker.chunk("d1", doc(Block(" ".join(sentences))))
    assert len(chunks) >= 2
    for first, second in itertools.pairwise(chunks):
        last_sentence = first.text.split(". ")[-1].rstrip(".")
        assert second.text.startswith(last_sentence)


def test_text_without_any_boundary_is_cut_by_tokens(tiny_encoder) -> None:
    chunker = make_chunker(tiny_encoder, max_tokens=20, context_headers=False)
    text = "alpha-beta-gamma-" * 200  # no spaces, no sentence ends
    chunks = chunker.chunk("d1", doc(Block(text)))
    assert max(tiny_encoder.tokens.count([c.text for c in chunks])) <= 20
    assert "".join(c.text for c in chunks).replace("-", "") == text.replace("-", "")


def test_chunk_ids_are_stable_and_change_with_content(tiny_encoder) -> None:
    chunker = make_chunker(tiny_encoder, max_tokens=100)
    a = chunker.chunk("d1", doc(Block("the cat sat")))
    b = chunker.chunk("d1", doc(Block("the cat sat")))
    c = chunker.chunk("d1", doc(Block("the cat ran")))
    assert a[0].chunk_id == b[0].chunk_id
    assert a[0].chunk_id != c[0].chunk_id


def test_fingerprint_follows_settings(tiny_encoder) -> None:
    assert (
        make_chunker(tiny_encoder, 100).fingerprint == make_chunker(tiny_encoder, 100).fingerprint
    )
    assert make_chunker(tiny_encoder, 100).fingerprint != make_chunker(tiny_encoder, 90).fingerprint


def test_budget_too_small_is_refused(tiny_encoder) -> None:
    with pytest.raises(ValueError, match="no room"):
        make_chunker(tiny_encoder, max_tokens=4)
