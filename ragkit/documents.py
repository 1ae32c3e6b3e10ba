"""The data that flows from connectors through chunking into the store."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Block", "Chunk", "Document", "Hit"]


@dataclass(frozen=True, slots=True)
class Block:
    """One structural unit of a document (a paragraph, a code block, a table, a list, a page).

    ``headings`` is the heading path the block sits under, outermost first, so the chunker can
    keep sections together and put the path in front of the chunk text.
    """

    text: str
    headings: tuple[str, ...] = ()
    kind: str = "paragraph"


@dataclass(slots=True)
class Document:
    """A parsed source document.

    ``uri`` identifies the document within its source and never changes while the document
    exists (a relative file path, or ``path#row-id`` for rows of a csv/jsonl file).
    """

    uri: str
    title: str
    blocks: list[Block]
    format: str
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return "\n\n".join(block.text for block in self.blocks if block.text)


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of a document sized for the encoder.

    ``context`` (document title and heading path) is put in front of ``text`` when embedding,
    so a chunk that says "Run it with --force" still knows which tool and section it is about.
    """

    chunk_id: str
    doc_id: str
    ordinal: int
    text: str
    context: str
    headings: tuple[str, ...]
    text_hash: str

    @property
    def embed_text(self) -> str:
        return f"{self.context}\n\n{self.text}" if self.context else self.text


@dataclass(frozen=True, slots=True)
class Hit:
    """One retrieval result."""

    chunk_id: str
    score: float
    text: str
    doc_id: str
    uri: str
    title: str
    headings: tuple[str, ...]
    metadata: dict[str, Any]
    rank: int = 0
