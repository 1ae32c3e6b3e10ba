"""Structure-aware chunking under a token budget measured with the encoder's tokenizer.

Sections (blocks sharing a heading path) are packed greedily; a block that alone exceeds the
budget is split at the widest boundary that works — paragraphs, lines, sentences, words, and
finally raw token spans. Consecutive chunks of one section overlap by whole units. The title
and heading path go in front of every chunk when it is embedded (contextual chunk headers).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from itertools import groupby

from ragkit.config import ChunkingConfig
from ragkit.documents import Block, Chunk, Document
from ragkit.encoders.fingerprint import hash_text
from ragkit.encoders.protocol import TokenCounting

__all__ = ["Chunker", "chunk_id_for", "doc_id_for"]

_SEPARATORS = ("\n\n", "\n", "sentence", " ")
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")
_MIN_BODY_TOKENS = 16
CHUNKING_VERSION = 1


def doc_id_for(source: str, uri: str) -> str:
    return hash_text(f"{source}\x00{uri}")


def chunk_id_for(doc_id: str, ordinal: int, text_hash: str) -> str:
    return hash_text(f"{doc_id}\x00{ordinal}\x00{text_hash}")


@dataclass(frozen=True, slots=True)
class _Unit:
    text: str
    tokens: int
    joiner: str


class Chunker:
    """Split documents into chunks that fit ``max_tokens`` including prompt and header."""

    def __init__(
        self,
        tokens: TokenCounting,
        config: ChunkingConfig,
        *,
        encoder_max_tokens: int,
        prompt: str = "",
        tokenizer_id: str = "",
    ) -> None:
        self.tokens = tokens
        self.config = config
        self.max_tokens = min(config.max_tokens or encoder_max_tokens, encoder_max_tokens)
        prompt_tokens = tokens.count([prompt])[0] if prompt else 0
        self._budget = self.max_tokens - tokens.special_tokens - prompt_tokens
        if self._budget < _MIN_BODY_TOKENS:
            raise ValueError(f"chunking.max_tokens={self.max_tokens} leaves no room for text")
        self.overlap = max(0, min(config.overlap_tokens, self._budget // 2))
        self.fingerprint = hash_text(
            json.dumps(
                {
                    "version": CHUNKING_VERSION,
                    "max_tokens": self.max_tokens,
                    "overlap": self.overlap,
                    "context_headers": config.context_headers,
                    "prompt": prompt,
                    "tokenizer": tokenizer_id,
                },
                sort_keys=True,
            )
        )

    def chunk(self, doc_id: str, document: Document) -> list[Chunk]:
        chunks: list[Chunk] = []
        blocks = [b for b in document.blocks if b.text.strip()]
        for headings, section in groupby(blocks, key=lambda b: b.headings):
            context, context_tokens = self._context(document.title, headings)
            header_tokens = context_tokens + 2 if context else 0
            budget = max(self._budget - header_tokens, _MIN_BODY_TOKENS)
            for body in self._pack(list(section), budget):
                text_hash = hash_text(f"{context}\n\n{body}")
                ordinal = len(chunks)
                chunks.append(
                    Chunk(
                        chunk_id=chunk_id_for(doc_id, ordinal, text_hash),
                        doc_id=doc_id,
                        ordinal=ordinal,
                        text=body,
                        context=context,
                        headings=headings,
                        text_hash=text_hash,
                    )
                )
        return chunks

    def _context(self, title: str, headings: tuple[str, ...]) -> tuple[str, int]:
        """The contextual header and its token count (counted once: it is on every chunk)."""
        if not self.config.context_headers:
            return "", 0
        path = [h for h in headings if h and h != title]
        parts = [title] if title else []
        if path:
            parts.append(" > ".join(path))
        context = "\n".join(parts)
        if not context:
            return "", 0
        limit = self._budget // 3  # a runaway heading must not crowd out the body
        count = self.tokens.count([context])[0]
        if count > limit:
            context = _cut_tokens(self.tokens, context, limit)
            count = self.tokens.count([context])[0]
        return context, count

    def _pack(self, blocks: list[Block], budget: int) -> list[str]:
        counts = self.tokens.count([b.text.strip() for b in blocks])
        units: list[_Unit] = []
        for block, count in zip(blocks, counts, strict=True):
            units.extend(self._split(block.text.strip(), count, budget, "\n\n", 0))
        bodies: list[str] = []
        current: list[_Unit] = []
        size = 0
        for unit in units:
            if current and size + unit.tokens + 1 > budget:
                bodies.append(_join(current))
                current = self._overlap_tail(current, budget - unit.tokens - 1)
                size = sum(u.tokens + 1 for u in current)
            current.append(unit)
            size += unit.tokens + 1
        if current:
            bodies.append(_join(current))
        return bodies

    def _overlap_tail(self, units: list[_Unit], room: int) -> list[_Unit]:
        tail: list[_Unit] = []
        size = 0
        for unit in reversed(units):
            size += unit.tokens + 1
            if size > min(self.overlap, room):
                break
            tail.insert(0, unit)
        return tail

    def _split(self, text: str, count: int, budget: int, joiner: str, level: int) -> list[_Unit]:
        if count <= budget:
            return [_Unit(text, count, joiner)]
        while level < len(_SEPARATORS):
            separator = _SEPARATORS[level]
            level += 1
            if separator == "sentence":
                pieces, piece_joiner = _SENTENCE_END.split(text), " "
            else:
                pieces, piece_joiner = text.split(separator), separator
            pieces = [p.strip() for p in pieces if p.strip()]
            if len(pieces) > 1:
                out: list[_Unit] = []
                for piece, n in zip(pieces, self.tokens.count(pieces), strict=True):
                    out.extend(self._split(piece, n, budget, piece_joiner, level))
                if out:
                    out[0] = _Unit(out[0].text, out[0].tokens, joiner)
                return out
        return [_Unit(piece, n, " ") for piece, n in _token_windows(self.tokens, text, budget)]


def _join(units: list[_Unit]) -> str:
    parts = [units[0].text]
    for unit in units[1:]:
        parts.append(unit.joiner)
        parts.append(unit.text)
    return "".join(parts)


def _token_windows(tokens: TokenCounting, text: str, budget: int) -> list[tuple[str, int]]:
    spans = tokens.offsets(text)
    out = []
    for start in range(0, len(spans), budget):
        window = spans[start : start + budget]
        out.append((text[window[0][0] : window[-1][1]], len(window)))
    return out


def _cut_tokens(tokens: TokenCounting, text: str, limit: int) -> str:
    spans = tokens.offsets(text)
    return text[: spans[limit - 1][1]] if len(spans) > limit > 0 else text
