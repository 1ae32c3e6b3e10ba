"""Structure-aware chunking under a token budget measured with the encoder's tokenizer.

Sections (blocks sharing a heading path) are packed greedily; a block that alone exceeds the
budget is split at the widest boundary that works — paragraphs, lines, sentences, words, and
finally raw token spans. Consecutive chunks of one section overlap by whole units. The title
and heading path go in front of every chunk when it is embedded (contextual chunk headers).

Work is streamed: pieces are found lazily, counted in small batches, and a text too long to be
worth counting whole is split without counting it. Tokenizing 50 MB of one unbroken line at once
used to need GBs (one encoding for the whole text, then one per word); now memory stays near
the size of the text and of the chunks made, whatever the shape of the input.
"""

from __future__ import annotations

import copy
import json
import re
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain, groupby

from ragkit.config import ChunkingConfig
from ragkit.documents import Block, Chunk, Document
from ragkit.encoders.fingerprint import hash_text
from ragkit.encoders.protocol import CountsOnOtherThreads, TokenCounting
from ragkit.errors import RagkitError

__all__ = ["Chunker", "TooManyChunksError", "chunk_id_for", "doc_id_for"]

_SEPARATORS = ("\n\n", "\n", "sentence", " ")
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")
_MIN_BODY_TOKENS = 16
CHUNKING_VERSION = 1
# A piece longer than this many characters per budget token is not counted whole: it cannot fit
# the budget (short of pathological input) and counting it would cost memory in proportion.
_CHARS_PER_TOKEN_COUNTED = 64
_COUNT_BATCH_PIECES = 512
_COUNT_BATCH_CHARS = 64 * 1024


class TooManyChunksError(RagkitError):
    """A document would make more chunks than the caller allows (raised as soon as it would)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"would make more than {limit} chunks")
        self.limit = limit


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
        self._count_chars = max(self._budget * _CHARS_PER_TOKEN_COUNTED, 4096)
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

    def for_thread(self) -> Chunker | None:
        """The same chunker over a token counter of its own, for use on another thread (the
        ingest's producer); None when the counter cannot give one (chunk on this thread)."""
        if not isinstance(self.tokens, CountsOnOtherThreads):
            return None
        twin = copy.copy(self)
        twin.tokens = self.tokens.for_thread()
        return twin

    def chunk(
        self, doc_id: str, document: Document, *, max_chunks: int | None = None
    ) -> list[Chunk]:
        """Chunks of ``document``; past ``max_chunks``, stop with :class:`TooManyChunksError` as
        soon as one more would be made, so an enormous input costs no more than the cap."""
        chunks: list[Chunk] = []
        blocks = [b for b in document.blocks if b.text.strip()]
        for headings, section in groupby(blocks, key=lambda b: b.headings):
            context, context_tokens = self._context(document.title, headings)
            header_tokens = context_tokens + 2 if context else 0
            budget = max(self._budget - header_tokens, _MIN_BODY_TOKENS)
            for body in self._pack(section, budget):
                if max_chunks is not None and len(chunks) >= max_chunks:
                    raise TooManyChunksError(max_chunks)
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
        context = context[: self._count_chars]  # a hostile title must not be tokenized whole
        limit = self._budget // 3  # a runaway heading must not crowd out the body
        count = self.tokens.count([context])[0]
        if count > limit:
            context = _cut_tokens(self.tokens, context, limit)
            count = self.tokens.count([context])[0]
        return context, count

    def _pack(self, blocks: Iterable[Block], budget: int) -> Iterator[str]:
        texts = (b.text.strip() for b in blocks)
        units = (
            unit
            for text, count in self._counted(texts)
            for unit in self._split(text, count, budget, "\n\n", 0)
        )
        current: list[_Unit] = []
        size = 0
        for unit in units:
            if current and size + unit.tokens + 1 > budget:
                yield _join(current)
                current = self._overlap_tail(current, budget - unit.tokens - 1)
                size = sum(u.tokens + 1 for u in current)
            current.append(unit)
            size += unit.tokens + 1
        if current:
            yield _join(current)

    def _overlap_tail(self, units: list[_Unit], room: int) -> list[_Unit]:
        tail: list[_Unit] = []
        size = 0
        for unit in reversed(units):
            size += unit.tokens + 1
            if size > min(self.overlap, room):
                break
            tail.insert(0, unit)
        return tail

    def _counted(self, pieces: Iterable[str]) -> Iterator[tuple[str, int | None]]:
        """Pieces with their token counts, counted in small batches so memory stays bounded;
        a piece too long to fit any budget gets ``None`` instead of being tokenized whole."""
        batch: list[str] = []
        chars = 0
        for piece in pieces:
            if len(piece) > self._count_chars:
                yield from zip(batch, self.tokens.count(batch), strict=True)
                batch, chars = [], 0
                yield piece, None
                continue
            batch.append(piece)
            chars += len(piece)
            if len(batch) >= _COUNT_BATCH_PIECES or chars >= _COUNT_BATCH_CHARS:
                yield from zip(batch, self.tokens.count(batch), strict=True)
                batch, chars = [], 0
        yield from zip(batch, self.tokens.count(batch), strict=True)

    def _counted_words(self, words: Iterable[str]) -> Iterator[tuple[str, int | None]]:
        batch: list[str] = []
        chars = 0
        for word in chain(words, [""]):
            long = len(word) > self._count_chars
            if batch and (long or not word or chars + len(word) > _COUNT_BATCH_CHARS):
                yield from self._words_in_context(batch)
                batch, chars = [], 0
            if long:
                yield word, None
            elif word:
                batch.append(word)
                chars += len(word) + 1

    def _words_in_context(self, words: list[str]) -> Iterator[tuple[str, int]]:
        """Token counts of ``words`` from one tokenization of them joined by spaces."""
        starts = [start for start, _ in self.tokens.offsets(" ".join(words))]
        first, end = 0, 0
        for word in words:
            end += len(word)
            last = bisect_left(starts, end, lo=first)
            yield word, last - first
            first, end = last, end + 1

    def _split(
        self, text: str, count: int | None, budget: int, joiner: str, level: int
    ) -> Iterator[_Unit]:
        """Units of at most ``budget`` tokens; ``count`` is None when the text was too long to
        count, which means it needs splitting."""
        if count is not None and count <= budget:
            yield _Unit(text, count, joiner)
            return
        while level < len(_SEPARATORS):
            separator = _SEPARATORS[level]
            level += 1
            pieces = _pieces(text, separator)
            first, second = next(pieces, None), next(pieces, None)
            if first is None or second is None:
                continue
            piece_joiner = " " if separator == "sentence" else separator
            first_joiner: str | None = joiner
            # Huge text split into words: count words in context, a batch per tokenizer call,
            # instead of one call per word (exact for WordPiece, within a token otherwise).
            counted = self._counted_words if count is None and separator == " " else self._counted
            for piece, n in counted(chain((first, second), pieces)):
                for unit in self._split(piece, n, budget, piece_joiner, level):
                    if first_joiner is not None:
                        unit = _Unit(unit.text, unit.tokens, first_joiner)
                        first_joiner = None
                    yield unit
            return
        for piece, n in _token_windows(self.tokens, text, budget):
            yield _Unit(piece, n, " ")


def _pieces(text: str, separator: str) -> Iterator[str]:
    """The stripped, non-empty pieces of ``text`` between separators, found lazily so a huge
    text is never held twice (as itself and as a list of its pieces)."""
    if separator == "sentence":
        bounds = ((m.start(), m.end()) for m in _SENTENCE_END.finditer(text))
    else:
        bounds = _find_all(text, separator)
    start = 0
    for cut, resume in chain(bounds, [(len(text), len(text))]):
        piece = text[start:cut].strip()
        if piece:
            yield piece
        start = resume


def _find_all(text: str, separator: str) -> Iterator[tuple[int, int]]:
    cut = text.find(separator)
    while cut != -1:
        yield cut, cut + len(separator)
        cut = text.find(separator, cut + len(separator))


def _join(units: list[_Unit]) -> str:
    parts = [units[0].text]
    for unit in units[1:]:
        parts.append(unit.joiner)
        parts.append(unit.text)
    return "".join(parts)


def _token_windows(tokens: TokenCounting, text: str, budget: int) -> Iterator[tuple[str, int]]:
    """Windows of ``budget`` tokens over a text with no other boundary, tokenized a segment at
    a time: the offsets of every token of a 50 MB text would not fit in memory. The last token
    of a segment may be cut by the segment's end, so it is read again with the next one."""
    segment_chars = max(budget * 32, 4096)
    start = 0
    while start < len(text):
        end = min(len(text), start + segment_chars)
        last = end == len(text)
        spans = tokens.offsets(text[start:end])
        if not last:
            spans = spans[:-1]
        usable = len(spans) if last else len(spans) - len(spans) % budget
        if usable == 0:
            if last:
                return
            segment_chars *= 2  # very long tokens: widen until a whole window fits
            continue
        for first in range(0, usable, budget):
            window = spans[first : first + budget]
            yield text[start + window[0][0] : start + window[-1][1]], len(window)
        if last:
            return
        start += spans[usable][0] if usable < len(spans) else spans[usable - 1][1]


def _cut_tokens(tokens: TokenCounting, text: str, limit: int) -> str:
    spans = tokens.offsets(text)
    return text[: spans[limit - 1][1]] if len(spans) > limit > 0 else text
