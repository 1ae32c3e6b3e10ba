"""Chunk runs grouped into document runs: how a document scores from the chunks it retrieved.

A long page becomes dozens of chunks, and a relevance judgment is about the page. Scoring a
page by its best chunk (``"max"``) lets one lucky passage of an off-topic page beat a page
that matches the query all over; adding the page's next best chunks with a decaying weight
(``"decayed"``: ``s1 + λ·s2 + λ²·s3 ...``) rewards a page that several passages support, while
one strong chunk still dominates. Short documents (one chunk) score the same either way.

All functions are pure; a run is ``{id: score}``, higher is better, as in
:mod:`ragkit.retrieval.fusion`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

from ragkit.errors import ConfigError

if TYPE_CHECKING:
    from ragkit.config import WorkspaceConfig

__all__ = [
    "DOCUMENT_SCORES",
    "DocumentScoring",
    "best_chunks",
    "by_document",
    "document_scoring",
    "group_run",
]

Key = TypeVar("Key", bound=Hashable)

#: ``[query] documents``: how a document's chunk scores become its score
DOCUMENT_SCORES = ("max", "decayed")


@dataclass(frozen=True, slots=True)
class DocumentScoring:
    """``method`` from :data:`DOCUMENT_SCORES`; ``decay`` is λ and ``chunks`` how many of a
    document's best chunks count (``"decayed"`` only)."""

    method: str = "max"
    decay: float = 0.5
    chunks: int = 3

    def __post_init__(self) -> None:
        if self.method not in DOCUMENT_SCORES:
            raise ConfigError(
                f"[query] documents = {self.method!r} is unknown; use one of {DOCUMENT_SCORES}"
            )
        if isinstance(self.decay, bool) or not (
            isinstance(self.decay, int | float) and 0 <= self.decay <= 1
        ):
            raise ConfigError(f"[query] decay must be a number in [0, 1], got {self.decay!r}")
        if isinstance(self.chunks, bool) or not isinstance(self.chunks, int) or self.chunks < 1:
            raise ConfigError(f"[query] decay_chunks must be an integer >= 1, got {self.chunks!r}")


def group_run(
    run: Mapping[int, float],
    document_of: Mapping[int, Key] | Callable[[int], Key],
    scoring: DocumentScoring,
) -> dict[Key, float]:
    """``{chunk: score}`` → ``{document: score}``; chunks without a document are left out.

    ``"decayed"`` adds only the positive part of the further chunks: a negative cosine says
    "unrelated", and it should not make a document rank below one that has fewer chunks.
    """
    lookup = document_of.get if isinstance(document_of, Mapping) else document_of
    per_document: dict[Key, list[float]] = {}
    for chunk, score in run.items():
        document = lookup(chunk)
        if document is not None:
            per_document.setdefault(document, []).append(float(score))
    if scoring.method == "max" or scoring.chunks == 1:
        return {document: max(scores) for document, scores in per_document.items()}
    out: dict[Key, float] = {}
    for document, scores in per_document.items():
        scores.sort(reverse=True)
        rest = scores[1 : scoring.chunks]
        out[document] = scores[0] + math.fsum(
            scoring.decay ** (i + 1) * max(score, 0.0) for i, score in enumerate(rest)
        )
    return out


def best_chunks(
    ranked: list[tuple[int, float]], document_of: Mapping[int, Key] | Callable[[int], Key]
) -> dict[Key, int]:
    """Each document's first chunk in a chunk ranking: the passage shown for the document."""
    lookup = document_of.get if isinstance(document_of, Mapping) else document_of
    out: dict[Key, int] = {}
    for chunk, _ in ranked:
        document = lookup(chunk)
        if document is not None and document not in out:
            out[document] = chunk
    return out


def by_document(
    store: Any,
    runs: list[list[dict[int, float]]],
    ranked: list[list[tuple[int, float]]],
    scoring: DocumentScoring,
    combine: Callable[[list[dict[Any, float]]], list[tuple[Any, float]]],
    *,
    documents: list[dict[int, float]] | None = None,
) -> list[list[tuple[int, float]]]:
    """One entry per document: each channel's chunks grouped into documents first, then
    the channels' document rankings combined; a document is shown by its chunk that ranks
    first in the chunk ranking.

    ``documents``: per query, a ranking of document vectors keyed by each document's first
    chunk (:mod:`ragkit.document_vectors`), combined as one more run after the channels'; a
    document only it found is shown by its first chunk."""
    chunk_ids = {chunk for channel in runs for run in channel for chunk in run}
    chunk_ids.update(chunk for run in documents or () for chunk in run)
    document_of = store.chunk_documents(sorted(chunk_ids))
    out = []
    for i, chunk_ranking in enumerate(ranked):
        shown = best_chunks(chunk_ranking, document_of)
        grouped_runs = [group_run(channel[i], document_of, scoring) for channel in runs]
        if documents is not None:
            leads = {document_of[c]: c for c in documents[i] if c in document_of}
            grouped_runs.append({d: documents[i][c] for d, c in leads.items()})
            shown = {**leads, **shown}
        grouped = combine(grouped_runs)
        out.append([(shown[document], score) for document, score in grouped])
    return out


def document_scoring(config: WorkspaceConfig, documents: bool | str) -> DocumentScoring | None:
    """None for chunk hits; ``True`` takes ``[query]``'s scoring, a name overrides its method."""
    if documents is False or documents is None:
        return None
    if documents is True:
        return config.query.scoring()
    if not isinstance(documents, str):
        raise ConfigError(f"documents must be True, False or one of {DOCUMENT_SCORES}")
    return replace(config.query.scoring(), method=documents)
