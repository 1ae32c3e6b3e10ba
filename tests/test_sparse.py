"""Sparse channel: the shipped SPLADE encoder, the inverted index, BM25 — checked against
brute force, the formula, and the real model's behaviour."""

from __future__ import annotations

import math
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from scipy import sparse

from ragkit.errors import ConfigError, IndexCorruptError, WorkspaceError
from ragkit.indexes import sparse_index as sparse_index_module
from ragkit.indexes.bm25_index import BM25Index, count_terms
from ragkit.indexes.sparse_index import SparseIndex

DOCS = [
    "How to back up a SQLite database and restore it from a snapshot.",
    "Git rebase rewrites the commit history of a branch before a merge.",
    "Configure a DNS server and DHCP on the home network router.",
    "A recipe for banana bread with ripe bananas and walnuts.",
    "Prometheus alerts when a disk is almost full on the server.",
    "Create a Python virtual environment and install a wheel package.",
]
QUERIES = [
    "sqlite backup",
    "rebase a git branch",
    "dhcp router setup",
    "banana cake recipe",
    "disk full alert",
    "python venv",
]


# -- helpers ---------------------------------------------------------------------------------
def random_matrix(
    rng: np.random.Generator, n: int, vocab: int, density: float
) -> sparse.csr_matrix:
    matrix = sparse.random(n, vocab, density=density, format="csr", random_state=rng)
    return matrix.astype(np.float32)


def brute_force(
    docs: sparse.csr_matrix,
    ids: np.ndarray,
    queries: sparse.csr_matrix,
    k: int,
    allowed: set[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Dense float64 scores; hits are positive scores, best first, ties by id; pad 0 / -1."""
    scores = queries.toarray().astype(np.float64) @ docs.toarray().astype(np.float64).T
    out_scores = np.zeros((queries.shape[0], k))
    out_ids = np.full((queries.shape[0], k), -1, dtype=np.int64)
    for row in range(queries.shape[0]):
        hits = [
            (-scores[row, j], int(ids[j]))
            for j in range(len(ids))
            if scores[row, j] > 0 and (allowed is None or int(ids[j]) in allowed)
        ]
        for slot, (negative, doc_id) in enumerate(sorted(hits)[:k]):
            out_scores[row, slot], out_ids[row, slot] = -negative, doc_id
    return out_scores, out_ids


def assert_same_hits(index: SparseIndex, docs, ids, queries, k: int, allowed=None) -> None:
    allowed_array = None if allowed is None else np.array(sorted(allowed), dtype=np.int64)
    scores, hit_ids = index.search(queries, k, allowed_ids=allowed_array)
    want_scores, want_ids = brute_force(docs, ids, queries, k, allowed)
    assert scores.dtype == np.float32 and hit_ids.dtype == np.int64
    assert scores.shape == hit_ids.shape == (queries.shape[0], k)
    np.testing.assert_array_equal(hit_ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-6)


# -- SpladeEncoder on the shipped model --------------------------------------------------------
@pytest.fixture(scope="session")
def splade():
    from ragkit.encoders.sparse import SpladeEncoder

    return SpladeEncoder.load("default", device="cpu", batch_size=8)


def test_splade_encodes_non_negative_csr_rows(splade) -> None:
    assert splade.vocab_size == 30522
    docs = splade.encode_documents(DOCS)
    queries = splade.encode_queries(QUERIES)
    for matrix, n in ((docs, len(DOCS)), (queries, len(QUERIES))):
        assert sparse.isspmatrix_csr(matrix)
        assert matrix.shape == (n, 30522) and matrix.dtype == np.float32
        assert matrix.data.min() > 0  # explicit zeros were dropped, weights are ReLU'd
        assert np.all(matrix.getnnz(axis=1) > 3)
    # Sparse means sparse: a handful of active tokens per query, not thousands.
    assert queries.getnnz(axis=1).max() < 200
    assert splade.encode_queries([]).shape == (0, 30522)
    with pytest.raises(ConfigError, match="list of texts"):
        splade.encode_queries("sqlite backup")


def test_splade_decode_names_the_query_words(splade) -> None:
    query = splade.encode_queries(["database backup"])
    top = splade.decode(query[0], top_k=4)
    assert len(top) == 4
    assert {"database", "backup"} <= {token for token, _ in top}
    weights = [weight for _, weight in top]
    assert weights == sorted(weights, reverse=True) and weights[0] > 0
    assert len(splade.decode(query[0], top_k=None)) == query.nnz


def test_splade_retrieves_the_matching_document(splade) -> None:
    index = SparseIndex(splade.vocab_size)
    ids = np.arange(100, 100 + len(DOCS), dtype=np.int64)
    index.rebuild(ids, splade.encode_documents(DOCS))
    _, hits = index.search(splade.encode_queries(QUERIES), 1)
    np.testing.assert_array_equal(hits[:, 0], ids)


def test_splade_fingerprint_is_stable_and_describes_the_model(splade) -> None:
    from ragkit.encoders.sparse import SpladeEncoder

    fingerprint = splade.fingerprint
    assert fingerprint["kind"] == "splade" and fingerprint["vocab_size"] == 30522
    assert len(fingerprint["id"]) == 32
    again = SpladeEncoder.from_model(splade.model, name="default").fingerprint
    assert again["id"] == fingerprint["id"]


def test_sparse_bytes_round_trip_and_damage(splade) -> None:
    from ragkit.encoders.sparse import sparse_from_bytes, sparse_to_bytes

    row = splade.encode_documents(DOCS[:1])
    blob = sparse_to_bytes(row)
    assert len(blob) == 8 * row.nnz
    back = sparse_from_bytes(blob, splade.vocab_size)
    assert back.shape == (1, 30522) and back.dtype == np.float32
    assert (back != row).nnz == 0
    assert sparse_from_bytes(b"", 10).nnz == 0
    with pytest.raises(WorkspaceError, match="not a whole number"):
        sparse_from_bytes(blob[:-3], splade.vocab_size)
    with pytest.raises(WorkspaceError, match="outside"):
        sparse_from_bytes(blob, 100)


# -- SparseIndex -------------------------------------------------------------------------------
def test_sparse_index_equals_brute_force_on_random_data() -> None:
    rng = np.random.default_rng(1)
    docs = random_matrix(rng, 300, 400, 0.03)
    queries = random_matrix(rng, 25, 400, 0.02)
    ids = rng.choice(10**9, size=300, replace=False).astype(np.int64)
    index = SparseIndex(400)
    index.rebuild(ids, docs)
    assert len(index) == 300 and sorted(index.ids()) == sorted(ids)
    assert_same_hits(index, docs, ids, queries, k=10)
    # k larger than the number of matching documents: the tail is padded with 0 / -1.
    scores, hit_ids = index.search(queries, 300)
    matches = (queries @ docs.T).getnnz(axis=1)
    assert np.all((hit_ids >= 0).sum(axis=1) == matches)
    assert np.all(scores[hit_ids == -1] == 0)


def test_sparse_index_add_remove_upsert_match_brute_force(monkeypatch) -> None:
    # Small thresholds, so that a few dozen documents go through delta merges and compactions.
    monkeypatch.setattr(sparse_index_module, "_MIN_DELTA", 8)
    rng = np.random.default_rng(2)
    vocab = 200
    queries = random_matrix(rng, 12, vocab, 0.05)
    index = SparseIndex(vocab)
    live: dict[int, sparse.csr_matrix] = {}

    def check() -> None:
        ids = np.array(sorted(live), dtype=np.int64)
        docs = sparse.vstack([live[i] for i in ids], format="csr")
        assert len(index) == len(live)
        np.testing.assert_array_equal(np.sort(index.ids()), ids)
        assert_same_hits(index, docs, ids, queries, k=7)

    for batch in range(10):
        ids = np.arange(batch * 6, batch * 6 + 6, dtype=np.int64)
        rows = random_matrix(rng, 6, vocab, 0.06)
        index.add(ids, rows)
        live.update({int(i): rows[j] for j, i in enumerate(ids)})
    check()
    removed = np.arange(0, 60, 3)
    assert index.remove(np.concatenate([removed, [999_999]])) is True  # unknown ids are ignored
    for doc_id in removed:
        del live[int(doc_id)]
    check()
    # Re-adding an existing id replaces its vector.
    replacement = random_matrix(rng, 2, vocab, 0.2)
    index.add(np.array([1, 2]), replacement)
    live[1], live[2] = replacement[0], replacement[1]
    check()


def test_selective_filter_still_returns_k_hits() -> None:
    rng = np.random.default_rng(3)
    vocab = 50
    docs = random_matrix(rng, 2000, vocab, 0.2)
    ids = np.arange(2000, dtype=np.int64) + 10_000
    query = random_matrix(rng, 1, vocab, 0.3)
    index = SparseIndex(vocab)
    index.rebuild(ids, docs)
    # Allow the 15 matching documents that rank *lowest*: none is in the unfiltered top 1000.
    scores = (query @ docs.T).toarray()[0]
    matching = np.flatnonzero(scores > 0)
    allowed = set(ids[matching[np.argsort(scores[matching])[:15]]].tolist())
    _, unfiltered = index.search(query, 1000)
    assert not allowed & set(unfiltered[0].tolist())
    assert_same_hits(index, docs, ids, query, k=10, allowed=allowed)
    _, hit_ids = index.search(query, 10, allowed_ids=np.array(sorted(allowed)))
    assert np.all(hit_ids >= 0)
    # A filter that matches nothing in the index gives no hits.
    _, none = index.search(query, 5, allowed_ids=np.array([-5, 7]))
    assert np.all(none == -1)


def test_sparse_index_save_load_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    docs = random_matrix(rng, 120, 300, 0.05)
    queries = random_matrix(rng, 10, 300, 0.05)
    ids = np.arange(120, dtype=np.int64) * 7
    index = SparseIndex(300)
    index.add(ids[:100], docs[:100])
    index.add(ids[100:], docs[100:])
    index.remove(ids[:10])
    path = tmp_path / "sparse.npz"
    index.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["sparse.npz"]  # no temp file left behind
    loaded = SparseIndex.load(path)
    assert loaded.vocab_size == 300 and len(loaded) == 110
    for a, b in zip(index.search(queries, 8), loaded.search(queries, 8), strict=True):
        np.testing.assert_array_equal(a, b)
    assert_same_hits(loaded, docs[10:], ids[10:], queries, k=8)
    with np.load(path, allow_pickle=False) as stored:  # plain arrays, no pickle needed
        assert "ids" in stored.files


def test_sparse_index_rejects_bad_input() -> None:
    index = SparseIndex(10)
    with pytest.raises(ConfigError, match="non-negative"):
        index.add(np.array([1]), sparse.csr_matrix(np.array([[0.0, -1.0] + [0.0] * 8])))
    with pytest.raises(ConfigError, match="shape"):
        index.add(np.array([1, 2]), sparse.csr_matrix((1, 10), dtype=np.float32))
    with pytest.raises(ConfigError, match="repeat"):
        index.add(np.array([3, 3]), sparse.csr_matrix((2, 10), dtype=np.float32))
    with pytest.raises(ConfigError, match="width 10"):
        index.search(sparse.csr_matrix((1, 11), dtype=np.float32), 3)


def test_corrupt_or_missing_sparse_file_raises_index_corrupt(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"this is not an npz file at all")
    with pytest.raises(IndexCorruptError, match=r"garbage\.npz"):
        SparseIndex.load(garbage)
    with pytest.raises(IndexCorruptError, match="missing"):
        SparseIndex.load(tmp_path / "absent.npz")

    good = tmp_path / "good.npz"
    index = SparseIndex(20)
    index.rebuild(np.arange(5), random_matrix(np.random.default_rng(5), 5, 20, 0.3))
    index.save(good)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(IndexCorruptError, match=r"truncated\.npz"):
        SparseIndex.load(truncated)

    # A readable archive whose arrays do not fit together.
    with np.load(good, allow_pickle=False) as stored:
        arrays = {name: stored[name] for name in stored.files}
    arrays["indices"] = arrays["indices"] + 100  # points past the 5 documents
    tampered = tmp_path / "tampered.npz"
    np.savez(tampered, **arrays)
    with pytest.raises(IndexCorruptError, match="out of range"):
        SparseIndex.load(tampered)
    assert zipfile.is_zipfile(tampered)


# -- BM25Index ---------------------------------------------------------------------------------
BM25_DOCS = [
    "cat dog cat",
    "dog bird",
    "the fish swims",
    "cat bird bird fish",
    "tree",
]


def bm25_by_hand(query: list[str], k1: float = 1.5, b: float = 0.75) -> np.ndarray:
    """Lucene BM25 over BM25_DOCS (each word is its own stem; "the" is a stopword)."""
    docs = [[w for w in text.split() if w != "the"] for text in BM25_DOCS]
    n, avgdl = len(docs), sum(len(d) for d in docs) / len(docs)
    scores = np.zeros(n)
    for term in query:
        df = sum(term in d for d in docs)
        if df == 0:
            continue
        idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
        for j, doc in enumerate(docs):
            tf = Counter(doc)[term]
            scores[j] += idf * tf / (tf + k1 * (1 - b + b * len(doc) / avgdl))
    return scores


@pytest.fixture(scope="module")
def bm25() -> BM25Index:
    index = BM25Index()
    index.rebuild(np.arange(len(BM25_DOCS), dtype=np.int64) + 50, BM25_DOCS)
    return index


def test_bm25_scores_follow_the_formula(bm25: BM25Index) -> None:
    assert len(bm25) == 5
    for query in (["cat"], ["bird", "fish"], ["dog", "dog", "tree"]):
        expected = bm25_by_hand(query)
        scores, ids = bm25.search_texts([" ".join(query)], 5)
        order = sorted((-s, j + 50) for j, s in enumerate(expected) if s > 0)
        assert ids[0].tolist() == [doc_id for _, doc_id in order] + [-1] * (5 - len(order))
        np.testing.assert_allclose(scores[0, : len(order)], [-s for s, _ in order], rtol=1e-5)


def test_bm25_stems_and_drops_stopwords(bm25: BM25Index) -> None:
    _, ids = bm25.search_texts(["Cats and their dogs", "the and of", "unicorn"], 3)
    assert ids[0].tolist() == [50, 51, 53]  # "cats" → cat, "dogs" → dog
    assert ids[1].tolist() == [-1, -1, -1]  # nothing but stopwords
    assert ids[2].tolist() == [-1, -1, -1]  # unknown word


def test_bm25_allowed_ids_and_save_load(bm25: BM25Index, tmp_path: Path) -> None:
    scores, ids = bm25.search_texts(["cat bird"], 3, allowed_ids=np.array([51, 52]))
    assert ids[0].tolist() == [51, -1, -1]
    path = tmp_path / "bm25.npz"
    bm25.save(path)
    loaded = BM25Index.load(path)
    assert len(loaded) == 5 and sorted(loaded.ids()) == list(range(50, 55))
    queries = ["cat", "bird fish", "dogs and trees"]
    for a, b in zip(bm25.search_texts(queries, 4), loaded.search_texts(queries, 4), strict=True):
        np.testing.assert_array_equal(a, b)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(IndexCorruptError, match=r"bm25\.npz"):
        BM25Index.load(path)


def test_bm25_empty_corpus_and_bad_input(tmp_path: Path) -> None:
    index = BM25Index()
    index.rebuild(np.zeros(0, dtype=np.int64), [])
    scores, ids = index.search_texts(["cat"], 2)
    assert ids.tolist() == [[-1, -1]] and scores.tolist() == [[0.0, 0.0]]
    index.save(tmp_path / "empty.npz")
    assert len(BM25Index.load(tmp_path / "empty.npz")) == 0
    with pytest.raises(ConfigError, match="one id per text"):
        index.rebuild(np.arange(2), ["only one"])


# -- BM25 updates from stored term counts -----------------------------------------------------
BM25_WORDS = [
    "cat", "cats", "dog", "dogs", "running", "runs", "bird", "fish", "fishing", "tree", "trees",
    "server", "servers", "backup", "backups", "red", "green", "the", "and", "of", "is", "it",
]  # fmt: skip
BM25_QUERIES = ["cat", "running dogs", "fish fishing tree", "server backup red", "rare3 cats"]


def bm25_corpus(n: int, seed: int) -> list[str]:
    """Random short texts: repeated words (tf > 1), stems shared by several words, stopwords,
    rare words that vanish when their text is removed, and texts with no term at all."""
    rng = np.random.default_rng(seed)
    texts = []
    for i in range(n):
        words = list(rng.choice(BM25_WORDS, size=int(rng.integers(1, 14))))
        texts.append(" ".join(words + ([f"rare{i}"] if i % 7 == 0 else [])))
    return [*texts, "the and of it", ""]


def bm25s_scores(ids: np.ndarray, texts: list[str], queries: list[str]) -> np.ndarray:
    """(queries × ids) scores of ``bm25s`` indexing ``texts`` from scratch: the reference."""
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")

    def tokens(strings: list[str]) -> list[list[str]]:
        return bm25s.tokenize(
            strings, stopwords="en", stemmer=stemmer, return_ids=False, show_progress=False
        )

    retriever = bm25s.BM25(k1=1.5, b=0.75, method="lucene")
    retriever.index(tokens(texts), create_empty_token=False, show_progress=False)
    return np.stack(
        [
            retriever.get_scores_from_ids(retriever.get_tokens_ids(query))
            for query in tokens(queries)
        ]
    )


def all_scores(index: BM25Index, ids: np.ndarray, queries: list[str]) -> np.ndarray:
    """(queries × ids) scores from searching every document: 0 where a document is no hit."""
    scores, hit_ids = index.search_texts(queries, len(ids) + 5)
    column = {int(doc_id): j for j, doc_id in enumerate(ids)}
    out = np.zeros((len(queries), len(ids)), dtype=np.float32)
    for row in range(len(queries)):
        for score, doc_id in zip(scores[row], hit_ids[row], strict=True):
            if doc_id >= 0:
                out[row, column[int(doc_id)]] = score
    return out


def test_bm25_updates_score_like_a_rebuild_and_bm25s(tmp_path: Path) -> None:
    texts = bm25_corpus(300, seed=3)
    current = dict(zip((np.arange(len(texts)) * 2 + 1).tolist(), texts, strict=True))
    ids = np.array(list(current), dtype=np.int64)
    index = BM25Index()
    index.add(ids[:150], count_terms(texts[:150]))
    index.remove(ids[:150:4])  # removes rare0, rare28, …: their terms leave the file
    index.add(ids[150:], count_terms(texts[150:]))
    replaced = ids[1:60:5]
    new_texts = [f"cats running {current[int(i)]}" for i in replaced]
    index.add(replaced, count_terms(new_texts))  # an id added again is replaced
    for doc_id in ids[:150:4]:
        del current[int(doc_id)]
    current.update(zip(replaced.tolist(), new_texts, strict=True))
    final_ids, final_texts = np.array(list(current), dtype=np.int64), list(current.values())
    assert sorted(index.ids().tolist()) == sorted(final_ids.tolist())

    expected = bm25s_scores(final_ids, final_texts, BM25_QUERIES)
    assert (expected > 0).any(axis=1).all()
    rebuilt = BM25Index()
    rebuilt.rebuild(final_ids, final_texts)
    index.save(tmp_path / "bm25.npz")
    loaded = BM25Index.load(tmp_path / "bm25.npz")
    for candidate in (index, rebuilt, loaded):
        scores = all_scores(candidate, final_ids, BM25_QUERIES)
        np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)
        assert candidate.search_texts(BM25_QUERIES, 10)[1].tolist() == (
            rebuilt.search_texts(BM25_QUERIES, 10)[1].tolist()
        )
    assert loaded.updatable and "rare0" not in loaded._vocab and "rare7" in loaded._vocab


def test_bm25_add_tokenizes_nothing_but_the_new_texts(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import bm25s

    tokenized: list[int] = []
    original = bm25s.tokenize
    monkeypatch.setattr(
        bm25s, "tokenize", lambda texts, **kw: tokenized.append(len(texts)) or original(texts, **kw)
    )
    texts = bm25_corpus(100, seed=5)
    index = BM25Index()
    index.rebuild(np.arange(len(texts)), texts)
    assert tokenized == [len(texts)]
    index.remove(np.arange(10))
    index.add(np.arange(1000, 1003), count_terms(texts[:3]))
    index.search_texts(["cat dog"], 3)
    assert tokenized == [len(texts), 3, 1]  # the three new texts, then the query


def write_bm25_version_1(path: Path, ids: np.ndarray, texts: list[str]) -> None:
    """An index file as version 1 wrote it: bm25s's score matrix and vocabulary, no counts."""
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    tokens = bm25s.tokenize(
        texts, stopwords="en", stemmer=stemmer, return_ids=False, show_progress=False
    )
    retriever = bm25s.BM25(k1=1.5, b=0.75, method="lucene")
    retriever.index(tokens, create_empty_token=False, show_progress=False)
    stored, vocab = retriever.scores, retriever.vocab_dict
    scores = sparse.csc_matrix(
        (stored["data"], stored["indices"], stored["indptr"]),
        shape=(len(ids), len(vocab)),
        dtype=np.float32,
    )
    index = SparseIndex(len(vocab))
    index.rebuild(ids, scores)
    terms = sorted(vocab, key=vocab.__getitem__)
    with open(path, "wb") as handle:  # a handle: np.savez would append ".npz" to the name
        np.savez(
            handle,
            format=np.array("ragkit-bm25-index"),
            version=np.array(1, dtype=np.int64),
            k1=np.array(1.5),
            b=np.array(0.75),
            stemmer=np.array("english"),
            stopwords=np.array("en"),
            vocab=np.frombuffer("\n".join(terms).encode("utf-8"), dtype=np.uint8),
            **index.to_arrays(prefix="index."),
        )


def test_bm25_version_1_file_searches_and_is_rebuilt_on_change(tmp_path: Path) -> None:
    from ragkit.sparse_channel import Bm25Channel

    texts = bm25_corpus(80, seed=9)
    ids = np.arange(len(texts), dtype=np.int64) + 100
    path = tmp_path / "old.npz"
    write_bm25_version_1(path, ids, texts)
    old = BM25Index.load(path)
    assert not old.updatable and sorted(old.ids().tolist()) == ids.tolist()
    current = BM25Index()
    current.rebuild(ids, texts)
    for a, b in zip(
        old.search_texts(BM25_QUERIES, 8), current.search_texts(BM25_QUERIES, 8), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-5)
    with pytest.raises(ConfigError, match="version-1 file"):
        old.add(ids[:1] + 1000, count_terms(texts[:1]))
    channel = Bm25Channel()
    assert channel.apply(old, ids[:0], ids[:0], None)  # no change: nothing to rebuild
    assert not channel.apply(old, ids[:1], ids[:0], None)  # a change: rebuild from the store
    old.save(tmp_path / "again.npz")  # written back as it was read
    assert not BM25Index.load(tmp_path / "again.npz").updatable


def test_ingest_tokenizes_only_new_chunks_and_upgrades_a_version_1_file(
    workspace, tmp_path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    import bm25s

    from ragkit.sparse_channel import sparse_path

    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(6):
        (docs / f"note{i}.md").write_text(f"# Note {i}\n\ncats and dogs number{i}\n")
    channel = workspace.sparse_channel
    tokenized: list[int] = []
    original = bm25s.tokenize
    monkeypatch.setattr(
        bm25s, "tokenize", lambda texts, **kw: tokenized.append(len(texts)) or original(texts, **kw)
    )
    first = workspace.ingest(docs)
    assert sum(tokenized) == first.chunks_added == 6  # a new collection: each chunk once
    tokenized.clear()

    def sparse_file() -> Path:
        collection = workspace.collection()
        return sparse_path(collection.dir, channel, collection.record.generation)

    (docs / "note1.md").write_text("# Note 1\n\nfishing birds\n")
    report = workspace.ingest(docs)
    assert report.chunks_added == 1 and sum(tokenized) == 1  # not the 5 unchanged chunks
    assert BM25Index.load(sparse_file()).updatable
    assert workspace.query("fishing", k=1, mode="sparse")[0].uri == "note1.md"

    # An index file from before counts were kept is searched as is, then rebuilt from the
    # store (every chunk tokenized once) at the first commit that changes chunks.
    rows = workspace.store.chunk_hashes()
    write_bm25_version_1(
        sparse_file(), np.array([r[0] for r in rows], dtype=np.int64), [r[2] for r in rows]
    )
    assert workspace.query("fishing", k=1, mode="sparse")[0].uri == "note1.md"
    tokenized.clear()
    (docs / "note2.md").write_text("# Note 2\n\nred trees\n")
    workspace.ingest(docs)
    assert sum(tokenized) == 1 + len(rows)  # the new chunk, then the rebuild of all 6
    assert BM25Index.load(sparse_file()).updatable
    assert workspace.query("trees", k=1, mode="sparse")[0].uri == "note2.md"
    sparse_ids = set(workspace.collection().load_sparse(channel).ids().tolist())
    assert sparse_ids == set(workspace.store.all_chunk_ids().tolist())


def test_bm25_damaged_term_counts_raise_index_corrupt(tmp_path: Path) -> None:
    index = BM25Index()
    index.rebuild(np.arange(5), BM25_DOCS)
    good = tmp_path / "good.npz"
    index.save(good)
    with np.load(good, allow_pickle=False) as stored:
        arrays = {name: stored[name] for name in stored.files}
    damages = {
        "out of range": {"counts.indices": arrays["counts.indices"] + 100},
        "not positive": {"counts.data": -arrays["counts.data"]},
        "missing arrays": {"ids": None},
        "shape": {"counts.indptr": arrays["counts.indptr"][:-1]},
    }
    for reason, change in damages.items():
        damaged = {**arrays, **change}
        path = tmp_path / "damaged.npz"
        with open(path, "wb") as handle:
            np.savez(handle, **{k: v for k, v in damaged.items() if v is not None})
        with pytest.raises(IndexCorruptError, match=rf"damaged\.npz.*{reason}"):
            BM25Index.load(path)
