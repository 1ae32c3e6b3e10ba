"""BM25 keyword index: the sparse channel that needs no model, built with ``bm25s``.

Texts are lower-cased, split on words, stripped of English stopwords and stemmed with PyStemmer's
english stemmer. ``bm25s`` precomputes each (term, document) BM25 score, so the index is a
term-major score matrix: it is stored and searched by
:class:`~ragkit.indexes.sparse_index.SparseIndex` (a query is the bag of its terms), which gives
BM25 the same ``allowed_ids`` filter, the same result shapes and the same single-file ``.npz``
format as the SPLADE channel.

BM25 weighs a term by its inverse document frequency over the *whole* corpus, so adding or
removing one document changes every score: the index is only ever rebuilt from all texts.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse

from ragkit.errors import ConfigError, IndexCorruptError, MissingDependencyError
from ragkit.indexes.sparse_index import SparseIndex, read_npz, write_npz

__all__ = ["BM25Index"]

_FORMAT = "ragkit-bm25-index"
_VERSION = 1
_STEMMER_LANGUAGE = "english"
_STOPWORDS = "en"
_INDEX_PREFIX = "index."


class BM25Index:
    """Okapi BM25 (Lucene variant) over chunk texts, keyed by int64 chunk ids."""

    def __init__(self, *, k1: float = 1.5, b: float = 0.75) -> None:
        if k1 < 0 or not 0 <= b <= 1:
            raise ConfigError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={k1}, b={b}")
        self.k1 = float(k1)
        self.b = float(b)
        self._vocab: dict[str, int] = {}
        self._index: SparseIndex | None = None
        self._stemmer: Any = None

    def __len__(self) -> int:
        return len(self._index) if self._index is not None else 0

    def ids(self) -> np.ndarray:
        return self._index.ids() if self._index is not None else np.zeros(0, dtype=np.int64)

    def rebuild(self, ids: np.ndarray, texts: Sequence[str]) -> None:
        """Index all ``texts`` (IDF is a corpus statistic, so there is no incremental add)."""
        bm25s = _import_bm25s()
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if len(ids) != len(texts):
            raise ConfigError(f"got {len(ids)} ids for {len(texts)} texts; give one id per text")
        if len(ids) == 0:
            self._vocab, self._index = {}, None
            return
        retriever = bm25s.BM25(k1=self.k1, b=self.b, method="lucene")
        retriever.index(self._tokenize(texts), create_empty_token=False, show_progress=False)
        stored = retriever.scores
        vocab_size = len(stored["indptr"]) - 1
        # bm25s keeps a (documents × terms) CSC matrix; its transpose is our term-major layout.
        scores = sparse.csc_matrix(
            (stored["data"], stored["indices"], stored["indptr"]),
            shape=(int(stored["num_docs"]), vocab_size),
            dtype=np.float32,
        )
        index = SparseIndex(max(1, vocab_size))
        if vocab_size:
            index.rebuild(ids, scores)
        else:  # every text was stopwords only: documents exist but nothing can match them
            index.rebuild(ids, sparse.csr_matrix((len(ids), 1), dtype=np.float32))
        self._vocab = dict(retriever.vocab_dict)
        self._index = index

    def search_texts(
        self, queries: Sequence[str], k: int, *, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return (scores float32, ids int64), each (len(queries), k); missing slots: 0 and -1."""
        if isinstance(queries, str):
            raise ConfigError("search_texts() takes a list of queries; wrap the string in [ ]")
        if self._index is None:
            if k < 0:
                raise ConfigError(f"k must be >= 0, got {k}")
            return (
                np.zeros((len(queries), k), dtype=np.float32),
                np.full((len(queries), k), -1, dtype=np.int64),
            )
        return self._index.search(self._query_matrix(queries), k, allowed_ids=allowed_ids)

    # -- persistence ------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """One ``.npz``: parameters, the vocabulary and the score matrix, written atomically."""
        tokens = sorted(self._vocab, key=self._vocab.__getitem__)
        arrays: dict[str, np.ndarray] = {
            "format": np.array(_FORMAT),
            "version": np.array(_VERSION, dtype=np.int64),
            "k1": np.array(self.k1),
            "b": np.array(self.b),
            "stemmer": np.array(_STEMMER_LANGUAGE),
            "stopwords": np.array(_STOPWORDS),
            # Terms never contain whitespace (they are \w+ runs), so "\n" can join them.
            "vocab": np.frombuffer("\n".join(tokens).encode("utf-8"), dtype=np.uint8),
        }
        if self._index is not None:
            arrays.update(self._index.to_arrays(prefix=_INDEX_PREFIX))
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
            if str(arrays["format"]) != _FORMAT or int(arrays["version"]) != _VERSION:
                raise corrupt(f"format {arrays['format']!s} version {arrays['version']!s}")
            if str(arrays["stemmer"]) != _STEMMER_LANGUAGE or str(arrays["stopwords"]) != (
                _STOPWORDS
            ):
                raise corrupt("it was built with another tokenizer")
            index = cls(k1=float(arrays["k1"]), b=float(arrays["b"]))
            text = arrays["vocab"].astype(np.uint8).tobytes().decode("utf-8")
        except (KeyError, TypeError, ValueError, UnicodeDecodeError) as exc:
            raise corrupt(f"bad header: {exc}") from exc
        except ConfigError as exc:
            raise corrupt(str(exc)) from exc
        tokens = text.split("\n") if text else []
        if _INDEX_PREFIX + "ids" in arrays:
            index._index = SparseIndex.from_arrays(arrays, source=path, prefix=_INDEX_PREFIX)
            expected = index._index.vocab_size
            if len(tokens) != expected and not (not tokens and expected == 1):
                raise corrupt(f"{len(tokens)} terms for a matrix of {expected}")
        elif tokens:
            raise corrupt("a vocabulary without a score matrix")
        index._vocab = {token: position for position, token in enumerate(tokens)}
        if len(index._vocab) != len(tokens):
            raise corrupt("repeated terms in the vocabulary")
        return index

    # -- internals --------------------------------------------------------------------------
    def _tokenize(self, texts: Sequence[str]) -> list[list[str]]:
        bm25s = _import_bm25s()
        if self._stemmer is None:
            self._stemmer = _make_stemmer()
        return bm25s.tokenize(
            list(texts),
            stopwords=_STOPWORDS,
            stemmer=self._stemmer,
            return_ids=False,
            show_progress=False,
        )

    def _query_matrix(self, queries: Sequence[str]) -> sparse.csr_matrix:
        """A query as its term counts: BM25 adds a term's score once per occurrence."""
        assert self._index is not None
        rows: list[int] = []
        cols: list[int] = []
        for row, tokens in enumerate(self._tokenize(queries) if queries else []):
            for token in tokens:
                column = self._vocab.get(token)
                if column is not None:
                    rows.append(row)
                    cols.append(column)
        counts = np.ones(len(rows), dtype=np.float32)
        # Duplicate (row, column) pairs are summed on conversion, giving the counts.
        return sparse.csr_matrix(
            (counts, (rows, cols)), shape=(len(queries), self._index.vocab_size)
        )


def _import_bm25s() -> Any:
    try:
        import bm25s
    except ImportError as exc:
        raise MissingDependencyError("bm25s", "sparse", "The BM25 index") from exc
    return bm25s


def _make_stemmer() -> Any:
    try:
        import Stemmer
    except ImportError as exc:
        raise MissingDependencyError("PyStemmer", "sparse", "The BM25 index's stemmer") from exc
    return Stemmer.Stemmer(_STEMMER_LANGUAGE)
