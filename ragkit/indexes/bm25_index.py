"""BM25 keyword index: the sparse channel that needs no model.

Texts are lower-cased, split on words, stripped of English stopwords and stemmed with PyStemmer's
english stemmer (``bm25s``'s tokenizer). Tokenizing is the slow part of BM25, so each text is
tokenized once: the index keeps every document's term counts (a documents × terms matrix, see
:class:`TermCounts`) and derives the Lucene BM25 scores from them, the same scores ``bm25s``
computes, in a few vectorized passes over the counts.

BM25 weighs a term by its inverse document frequency and a document by its length relative to
the *whole* corpus, so adding or removing one document changes every score. The scores are
therefore recomputed from the counts when the index is next searched; adding documents only
tokenizes the new texts (an ingest does that in :func:`count_terms`, before its transaction).

The scores form a term-major matrix searched by :class:`~ragkit.indexes.sparse_index.SparseIndex`
(a query is the bag of its terms), which gives BM25 the same ``allowed_ids`` filter and result
shapes as the SPLADE channel.

File format (one ``.npz``): version 2 holds the vocabulary, the ids and the term counts; the
scores are recomputed at the first search after loading. Version 1 (the score matrix alone)
still loads and searches, but cannot be updated without its texts (:attr:`BM25Index.updatable`
is False): the BM25 channel rebuilds it from the store at the first commit that changes chunks.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse

from ragkit.errors import ConfigError, IndexCorruptError
from ragkit.indexes.bm25_terms import (
    STEMMER_LANGUAGE,
    STOPWORDS,
    TermCounts,
    count_terms,
    make_stemmer,
)
from ragkit.indexes.sparse_index import SparseIndex, csr_problem, read_npz, write_npz

__all__ = ["TERM_KEYS", "BM25Index", "TermCounts", "count_terms", "term_key"]

_FORMAT = "ragkit-bm25-index"
_VERSION = 2
_SCORES_ONLY_VERSION = 1  # files written before term counts were kept
_INDEX_PREFIX = "index."
_COUNTS_PREFIX = "counts."


class BM25Index:
    """Okapi BM25 (Lucene variant) over chunk texts, keyed by int64 chunk ids."""

    def __init__(self, *, k1: float = 1.5, b: float = 0.75) -> None:
        if k1 < 0 or not 0 <= b <= 1:
            raise ConfigError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={k1}, b={b}")
        self.k1 = float(k1)
        self.b = float(b)
        self._terms: list[str] = []  # column → term
        self._vocab: dict[str, int] = {}  # term → column
        self._ids = np.zeros(0, dtype=np.int64)  # row → chunk id
        self._counts: sparse.csr_matrix | None = _empty_counts(0)  # None: version-1 file
        self._scores: SparseIndex | None = None  # derived from the counts; None when stale
        self._stemmer: Any = None

    def __len__(self) -> int:
        return len(self._ids)

    def ids(self) -> np.ndarray:
        return self._ids.copy()

    @property
    def updatable(self) -> bool:
        """Whether documents can be added or removed: False for an index read from a version-1
        file, which holds scores but no term counts, so only :meth:`rebuild` can change it."""
        return self._counts is not None

    def rebuild(self, ids: np.ndarray, texts: Sequence[str]) -> None:
        """Index exactly ``texts`` (tokenizing all of them), replacing everything."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if len(ids) != len(texts):
            raise ConfigError(f"got {len(ids)} ids for {len(texts)} texts; give one id per text")
        _check_unique(ids, "rebuild()")
        counts = count_terms(texts, self._own_stemmer())
        self._terms, self._vocab = [], {}
        self._ids = np.zeros(0, dtype=np.int64)
        self._counts = _empty_counts(0)
        self._scores = None
        self.add(ids, counts)

    def add(self, ids: np.ndarray, counts: TermCounts) -> None:
        """Add documents from their :func:`count_terms` (an id already present is replaced).

        Nothing is tokenized here; the scores are recomputed from the counts at the next search.
        """
        ids = self._check_new(ids, counts)
        if len(ids) == 0:
            return
        self.remove(ids)
        old = self._counts_or_raise("add documents to")
        columns = self._columns_of(counts.terms)
        given = counts.matrix
        rows = sparse.csr_matrix(
            (given.data.copy(), columns[given.indices], given.indptr.copy()),
            shape=(len(ids), len(self._terms)),
        )
        rows.sort_indices()  # canonical rows: what the saved file must hold
        self._counts = sparse.vstack([_widened(old, len(self._terms)), rows], format="csr")
        self._ids = np.concatenate([self._ids, ids])
        self._scores = None

    def remove(self, ids: np.ndarray) -> bool:
        """Remove documents (unknown ids are ignored); always True."""
        counts = self._counts_or_raise("remove documents from")
        gone = np.isin(self._ids, np.asarray(ids, dtype=np.int64).reshape(-1))
        if gone.any():
            keep = np.flatnonzero(~gone)
            self._counts = counts[keep]
            self._ids = self._ids[keep]
            self._scores = None
        return True

    def search_texts(
        self, queries: Sequence[str], k: int, *, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return (scores float32, ids int64), each (len(queries), k); missing slots: 0 and -1."""
        if isinstance(queries, str):
            raise ConfigError("search_texts() takes a list of queries; wrap the string in [ ]")
        scores = self._score_index()
        if scores is None:
            if k < 0:
                raise ConfigError(f"k must be >= 0, got {k}")
            return (
                np.zeros((len(queries), k), dtype=np.float32),
                np.full((len(queries), k), -1, dtype=np.int64),
            )
        queries = self._query_matrix(queries, scores.vocab_size)
        return scores.search(queries, k, allowed_ids=allowed_ids)

    def documents(self) -> tuple[np.ndarray, sparse.csr_matrix]:
        """(ids, BM25 weights) of every document, columns keyed by :func:`term_key`.

        The vocabulary's own columns are renumbered when the index is saved, so another engine
        (a Qdrant collection's sparse vector) is given a key derived from each term instead.
        Every weight depends on the whole corpus, so after any change all rows differ."""
        scores = self._score_index()
        if scores is None:
            return np.zeros(0, dtype=np.int64), sparse.csr_matrix((0, TERM_KEYS), dtype=np.float32)
        ids, rows = scores.documents()
        keys = np.array([term_key(term) for term in self._terms] or [0], dtype=np.int64)
        return ids, sparse.csr_matrix(
            (rows.data, keys[rows.indices], rows.indptr), shape=(rows.shape[0], TERM_KEYS)
        )

    def query_terms(self, queries: Sequence[str]) -> sparse.csr_matrix:
        """Queries as term counts keyed by :func:`term_key`, to search :meth:`documents`'
        vectors with (a term no document holds matches nothing there)."""
        counts = count_terms(list(queries), self._own_stemmer())
        keys = np.array([term_key(term) for term in counts.terms] or [0], dtype=np.int64)
        matrix = counts.matrix
        return sparse.csr_matrix(
            (matrix.data.astype(np.float32), keys[matrix.indices], matrix.indptr),
            shape=(len(queries), TERM_KEYS),
        )

    # -- persistence ------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """One ``.npz``: parameters, vocabulary, ids and term counts, written atomically.

        Terms no document uses any more (their documents were removed) are left out.
        """
        arrays: dict[str, np.ndarray] = {
            "format": np.array(_FORMAT),
            "k1": np.array(self.k1),
            "b": np.array(self.b),
            "stemmer": np.array(STEMMER_LANGUAGE),
            "stopwords": np.array(STOPWORDS),
        }
        if self._counts is None:  # a version-1 index is written back as it was read
            arrays["version"] = np.array(_SCORES_ONLY_VERSION, dtype=np.int64)
            arrays["vocab"] = _encode_terms(self._terms)
            if self._scores is not None:
                arrays.update(self._scores.to_arrays(prefix=_INDEX_PREFIX))
        else:
            terms, counts = _without_unused_terms(self._terms, self._counts)
            arrays["version"] = np.array(_VERSION, dtype=np.int64)
            arrays["vocab"] = _encode_terms(terms)
            arrays["ids"] = self._ids
            arrays[_COUNTS_PREFIX + "indptr"] = counts.indptr.astype(np.int64)
            arrays[_COUNTS_PREFIX + "indices"] = counts.indices.astype(np.int32)
            arrays[_COUNTS_PREFIX + "data"] = counts.data.astype(np.int32)
        write_npz(Path(path), arrays)

    @classmethod
    def load(cls, path: Path) -> BM25Index:
        path = Path(path)
        arrays = read_npz(path, what="BM25 index")

        def corrupt(reason: str) -> IndexCorruptError:
            return IndexCorruptError(
                f"{path}: not a valid ragkit BM25 index ({reason}); rebuild it from the store "
                "(`ragkit doctor --repair`)"
            )

        try:
            version = int(arrays["version"])
            if str(arrays["format"]) != _FORMAT or version not in (_VERSION, _SCORES_ONLY_VERSION):
                raise corrupt(f"format {arrays['format']!s} version {arrays['version']!s}")
            if str(arrays["stemmer"]) != STEMMER_LANGUAGE or str(arrays["stopwords"]) != (
                STOPWORDS
            ):
                raise corrupt("it was built with another tokenizer")
            index = cls(k1=float(arrays["k1"]), b=float(arrays["b"]))
            text = arrays["vocab"].astype(np.uint8).tobytes().decode("utf-8")
        except (KeyError, TypeError, ValueError, UnicodeDecodeError) as exc:
            raise corrupt(f"bad header: {exc}") from exc
        except ConfigError as exc:
            raise corrupt(str(exc)) from exc
        index._terms = text.split("\n") if text else []
        index._vocab = {term: column for column, term in enumerate(index._terms)}
        if len(index._vocab) != len(index._terms):
            raise corrupt("repeated terms in the vocabulary")
        if version == _VERSION:
            index._ids, index._counts = _read_counts(arrays, len(index._terms), corrupt)
        else:
            index._read_scores_only(arrays, path, corrupt)
        return index

    def _read_scores_only(
        self,
        arrays: dict[str, np.ndarray],
        path: Path,
        corrupt: Callable[[str], IndexCorruptError],
    ) -> None:
        """A version-1 file: searchable scores, no counts (empty, it is trivially updatable)."""
        if _INDEX_PREFIX + "ids" not in arrays:
            if self._terms:
                raise corrupt("a vocabulary without a score matrix")
            return
        scores = SparseIndex.from_arrays(arrays, source=path, prefix=_INDEX_PREFIX)
        expected = scores.vocab_size
        if len(self._terms) != expected and not (not self._terms and expected == 1):
            raise corrupt(f"{len(self._terms)} terms for a matrix of {expected}")
        self._scores, self._ids, self._counts = scores, scores.ids(), None

    # -- internals --------------------------------------------------------------------------
    def _check_new(self, ids: np.ndarray, counts: TermCounts) -> np.ndarray:
        self._counts_or_raise("add documents to")
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if not isinstance(counts, TermCounts):
            raise ConfigError(
                f"add() takes the documents' TermCounts (from count_terms), got {type(counts)}"
            )
        if len(ids) != len(counts):
            raise ConfigError(f"got {len(ids)} ids for {len(counts)} counted texts; one id each")
        _check_unique(ids, "add()")
        return ids

    def _counts_or_raise(self, action: str) -> sparse.csr_matrix:
        if self._counts is None:
            raise ConfigError(
                f"cannot {action} this BM25 index: it was read from a version-1 file, which has "
                "no term counts; rebuild it from the texts (rebuild(), or the next ingest does)"
            )
        return self._counts

    def _columns_of(self, terms: list[str]) -> np.ndarray:
        """The vocabulary column of each term, appending the terms not seen before."""
        columns = np.empty(len(terms), dtype=np.int32)
        for position, term in enumerate(terms):
            column = self._vocab.get(term)
            if column is None:
                column = self._vocab[term] = len(self._terms)
                self._terms.append(term)
            columns[position] = column
        return columns

    def _score_index(self) -> SparseIndex | None:
        """The searchable scores, recomputed from the counts after any change."""
        if self._scores is None and self._counts is not None and len(self._ids):
            self._scores = _score_index(self._ids, self._counts, self.k1, self.b)
        return self._scores

    def _own_stemmer(self) -> Any:
        if self._stemmer is None:
            self._stemmer = make_stemmer()
        return self._stemmer

    def _query_matrix(self, queries: Sequence[str], width: int) -> sparse.csr_matrix:
        """A query as its term counts: BM25 adds a term's score once per occurrence."""
        counts = count_terms(queries, self._own_stemmer())
        columns = np.array([self._vocab.get(term, -1) for term in counts.terms], dtype=np.int64)
        entries = counts.matrix.tocoo()
        known = columns[entries.col] >= 0 if len(columns) else np.zeros(0, dtype=bool)
        return sparse.csr_matrix(
            (
                entries.data[known].astype(np.float32),
                (entries.row[known], columns[entries.col[known]]),
            ),
            shape=(len(queries), width),
        )


#: the key space of :func:`term_key`: Qdrant's sparse indices are unsigned 32-bit
TERM_KEYS = 2**32


def term_key(term: str) -> int:
    """A term's column outside the index: the same in every process and after every save."""
    return int.from_bytes(hashlib.blake2b(term.encode("utf-8"), digest_size=4).digest(), "little")


def _score_index(ids: np.ndarray, counts: sparse.csr_matrix, k1: float, b: float) -> SparseIndex:
    """Lucene BM25 of every (document, term) from the counts, as ``bm25s`` computes it:
    idf = ln(1 + (N - df + 0.5) / (df + 0.5)), tf part = tf / (tf + k1 (1 - b + b |d| / avgdl)).
    """
    n_docs, n_terms = counts.shape
    width = max(1, n_terms)  # every text was stopwords only: documents exist, nothing matches
    scores = np.zeros(0, dtype=np.float32)
    if counts.nnz:
        tf = counts.data.astype(np.float64)
        lengths = np.asarray(counts.sum(axis=1), dtype=np.float64).reshape(-1)
        document_frequency = np.bincount(counts.indices, minlength=n_terms)
        idf = np.log1p((n_docs - document_frequency + 0.5) / (document_frequency + 0.5))
        relative_length = np.repeat(lengths / lengths.mean(), np.diff(counts.indptr))
        tf_part = tf / (tf + k1 * (1 - b + b * relative_length))
        # bm25s keeps idf in float32 before multiplying; doing the same keeps scores identical.
        scores = (idf.astype(np.float32)[counts.indices] * tf_part).astype(np.float32)
    # Copies: SparseIndex may sort a matrix's index arrays in place, which must not reach
    # the counts (their data would no longer line up).
    matrix = sparse.csr_matrix(
        (scores, counts.indices.copy(), counts.indptr.copy()), shape=(n_docs, width)
    )
    index = SparseIndex(width)
    index.rebuild(ids, matrix)
    return index


def _read_counts(
    arrays: dict[str, np.ndarray], n_terms: int, corrupt: Callable[[str], IndexCorruptError]
) -> tuple[np.ndarray, sparse.csr_matrix]:
    """The ids and count matrix of a version-2 file, checked: the file may be damaged."""
    needed = ["ids", *(_COUNTS_PREFIX + name for name in ("indptr", "indices", "data"))]
    if missing := [name for name in needed if name not in arrays]:
        raise corrupt(f"missing arrays {missing}")
    ids, indptr, indices, data = (arrays[name] for name in needed)
    problem = csr_problem(
        ids,
        indptr,
        indices,
        data,
        rows=len(ids),
        columns=n_terms,
        matrix="count matrix",
        column="term columns",
    )
    if problem:
        raise corrupt(problem)
    if data.dtype.kind not in "iu" or (len(data) and data.min() <= 0):
        raise corrupt("term counts that are not positive integers")
    if len(np.unique(ids)) != len(ids):
        raise corrupt("duplicate ids")
    counts = sparse.csr_matrix(
        (data.astype(np.int32), indices.astype(np.int32), indptr.astype(np.int64)),
        shape=(len(ids), n_terms),
    )
    if not counts.has_canonical_format:
        raise corrupt("unsorted or repeated terms in a document")
    return ids.astype(np.int64), counts


def _without_unused_terms(
    terms: list[str], counts: sparse.csr_matrix
) -> tuple[list[str], sparse.csr_matrix]:
    """The vocabulary and counts minus terms no document holds, columns sorted per row."""
    used = np.bincount(counts.indices, minlength=len(terms)) > 0
    new_column = np.cumsum(used) - 1
    kept = sparse.csr_matrix(
        (counts.data, new_column[counts.indices].astype(np.int32), counts.indptr),
        shape=(counts.shape[0], int(used.sum())),
    )
    kept.sort_indices()
    return list(itertools.compress(terms, used)), kept


def _check_unique(ids: np.ndarray, caller: str) -> None:
    if len(np.unique(ids)) != len(ids):
        raise ConfigError(f"the ids given to {caller} repeat; each chunk id may appear once")


def _encode_terms(terms: list[str]) -> np.ndarray:
    # Terms never contain whitespace (they are \w+ runs), so "\n" can join them.
    return np.frombuffer("\n".join(terms).encode("utf-8"), dtype=np.uint8)


def _empty_counts(n_terms: int) -> sparse.csr_matrix:
    return sparse.csr_matrix((0, n_terms), dtype=np.int32)


def _widened(counts: sparse.csr_matrix, n_terms: int) -> sparse.csr_matrix:
    """The same counts with room for new vocabulary columns (no entry moves)."""
    return sparse.csr_matrix(
        (counts.data, counts.indices, counts.indptr), shape=(counts.shape[0], n_terms)
    )
