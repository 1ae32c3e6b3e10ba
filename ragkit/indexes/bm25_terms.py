"""Tokenizing for BM25: texts to term counts, the one costly step, done once per text.

Texts are lower-cased, split on words, stripped of English stopwords and stemmed with PyStemmer's
english stemmer (``bm25s``'s tokenizer). Kept apart from :mod:`ragkit.indexes.bm25_index` because
an ingest counts the new chunks' terms before its transaction, without the index loaded or
locked; the index then maps the counts onto its vocabulary.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse

from ragkit.errors import ConfigError, MissingDependencyError

__all__ = ["STEMMER_LANGUAGE", "STOPWORDS", "TermCounts", "count_terms", "make_stemmer"]

STEMMER_LANGUAGE = "english"
STOPWORDS = "en"


@dataclass(frozen=True)
class TermCounts:
    """Tokenized texts: ``matrix[i, j]`` is how often ``terms[j]`` occurs in text *i*.

    The terms are the texts' own (sorted), not an index's vocabulary, so texts can be counted
    before the index they go into is loaded or locked;
    :meth:`~ragkit.indexes.bm25_index.BM25Index.add` maps them.
    """

    terms: list[str]
    matrix: sparse.csr_matrix  # (texts × terms), int32 counts

    def __len__(self) -> int:
        return int(self.matrix.shape[0])


def count_terms(texts: Sequence[str], stemmer: Any = None) -> TermCounts:
    """Tokenize ``texts`` into term counts: the one costly step of BM25, done once per text.

    ``stemmer`` is a PyStemmer english stemmer to reuse (one is made when None); a stemmer is
    not thread-safe, so concurrent callers pass their own or none.
    """
    if isinstance(texts, str):
        raise ConfigError("count_terms() takes a list of texts; wrap the string in [ ]")
    texts = list(texts)
    if not texts:
        return TermCounts([], sparse.csr_matrix((0, 0), dtype=np.int32))
    tokenized = _import_bm25s().tokenize(
        texts,
        stopwords=STOPWORDS,
        stemmer=make_stemmer() if stemmer is None else stemmer,
        return_ids=True,
        show_progress=False,
    )
    # Sorted terms make the saved vocabulary independent of bm25s's set iteration order.
    terms = sorted(tokenized.vocab)
    sorted_column = np.empty(len(terms), dtype=np.int32)
    sorted_column[[tokenized.vocab[term] for term in terms]] = np.arange(len(terms))
    lengths = np.fromiter(map(len, tokenized.ids), dtype=np.int64, count=len(texts))
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    flat = np.fromiter(
        itertools.chain.from_iterable(tokenized.ids), dtype=np.int64, count=int(indptr[-1])
    )
    matrix = sparse.csr_matrix(
        (np.ones(len(flat), dtype=np.int32), sorted_column[flat], indptr),
        shape=(len(texts), len(terms)),
    )
    matrix.sum_duplicates()  # one entry per (text, term), holding its count
    return TermCounts(terms, matrix)


def _import_bm25s() -> Any:
    try:
        import bm25s
    except ImportError as exc:
        raise MissingDependencyError("bm25s", "sparse", "The BM25 index") from exc
    return bm25s


def make_stemmer() -> Any:
    try:
        import Stemmer
    except ImportError as exc:
        raise MissingDependencyError("PyStemmer", "sparse", "The BM25 index's stemmer") from exc
    return Stemmer.Stemmer(STEMMER_LANGUAGE)
