"""Registries resolve config names, capabilities are protocols, and the encoder is a protocol.

The backends and the encoder defined here are deliberately tiny numpy classes: if a workspace
builds and answers queries through them, nothing in the write or query path depends on FAISS,
sentence-transformers or torch beyond the implementations that choose to.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

import ragkit
from ragkit.config import EncoderConfig, IndexConfig, SparseConfig
from ragkit.encoders.protocol import Encoder, TokenCounting
from ragkit.encoders.registry import ENCODERS, load_encoder, register_encoder
from ragkit.errors import ConfigError
from ragkit.indexes import (
    DENSE_BACKENDS,
    Closeable,
    NeedsRetrain,
    SupportsReconcile,
    atomic_write,
    dense_backend,
    register_dense_backend,
)
from ragkit.registry import Registry
from ragkit.retrieval.fusion import FUSION_METHODS, fuse, register_fusion
from ragkit.sparse_channel import SPARSE_CHANNELS, make_sparse_channel


# -- the registries ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("resolve", "setting", "known"),
    [
        (lambda: dense_backend("milvus"), "index.backend", ["faiss", "qdrant", "qdrant-edge"]),
        (lambda: fuse([{1: 1.0}], method="borda"), "fusion.method", ["convex", "dbsf", "rrf"]),
        (lambda: SPARSE_CHANNELS.get("tfidf"), "sparse.model", ["bm25", "splade"]),
        (
            lambda: load_encoder(EncoderConfig(provider="nope")),
            "encoder.provider",
            ["sentence-transformers"],
        ),
    ],
    ids=["dense", "fusion", "sparse", "encoder"],
)
def test_an_unknown_name_lists_the_known_ones(resolve: Any, setting: str, known: list[str]) -> None:
    with pytest.raises(ConfigError, match=re.escape(setting)) as caught:
        resolve()
    for name in known:
        assert name in str(caught.value)


def test_a_name_is_claimed_once_unless_replaced() -> None:
    registry: Registry[Any] = Registry("thing", "x.thing")
    registry.add("a", "os.path:join")
    registry.add("A", "os.path:join")  # the same target again is no conflict
    with pytest.raises(ValueError, match="registered already"):
        registry.add("a", "os.path:split")
    registry.add("a", "os.path:split", replace=True)
    import os.path

    assert registry.get("A") is os.path.split  # a lazy path is imported on first use


def test_importing_the_registries_imports_no_backend_library() -> None:
    code = (
        "import sys, ragkit.indexes, ragkit.sparse_channel, ragkit.retrieval.fusion, "
        "ragkit.encoders.registry, ragkit.collection\n"
        "print([m for m in ('faiss', 'qdrant_client', 'qdrant_edge', 'sentence_transformers') "
        "if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_sparse_names_resolve_to_channels() -> None:
    assert make_sparse_channel(SparseConfig(model="off")) is None
    assert make_sparse_channel(SparseConfig(model="BM25")).kind == "bm25"  # type: ignore[union-attr]
    # Any other name is a SPLADE model (a hub name or a folder); nothing loads until it encodes.
    assert make_sparse_channel(SparseConfig(model="some/splade")).kind == "splade"  # type: ignore[union-attr]


def test_a_registered_fusion_method_resolves_by_name() -> None:
    @register_fusion("first-run")
    def first_run(runs: Sequence[Any], weights: list[float], **_: object) -> dict[int, float]:
        return dict(runs[0]) if runs else {}

    try:
        assert "first-run" in FUSION_METHODS
        assert fuse([{1: 0.2, 2: 0.9}, {1: 5.0}], method="first-run") == [(2, 0.9), (1, 0.2)]
    finally:
        FUSION_METHODS.remove("first-run")
    with pytest.raises(ConfigError, match="unknown"):
        fuse([{1: 1.0}], method="first-run")


# -- a test dense backend, registered by name ------------------------------------------------
class NumpyIndex:
    """Exact inner-product search over a numpy matrix; no capability beyond DenseIndex."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._ids = np.zeros(0, dtype=np.int64)
        self._vectors = np.zeros((0, dim), dtype=np.float32)

    @classmethod
    def from_config(
        cls, dim: int, config: IndexConfig, *, directory: Path, name: str
    ) -> NumpyIndex:
        return cls(dim)

    @classmethod
    def load(cls, path: Path, dim: int, config: IndexConfig) -> NumpyIndex:
        index = cls(dim)
        with np.load(path) as data:
            index._ids, index._vectors = data["ids"], data["vectors"]
        return index

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self._ids = np.concatenate([self._ids, np.asarray(ids, dtype=np.int64)])
        self._vectors = np.concatenate([self._vectors, np.asarray(vectors, dtype=np.float32)])

    def remove(self, ids: np.ndarray) -> bool:
        keep = ~np.isin(self._ids, ids)
        self._ids, self._vectors = self._ids[keep], self._vectors[keep]
        return True

    def rebuild(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self._ids = np.zeros(0, dtype=np.int64)
        self._vectors = np.zeros((0, self.dim), dtype=np.float32)
        self.add(ids, vectors)

    def search(
        self, queries: np.ndarray, k: int, *, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        found = np.full((len(queries), k), -1, dtype=np.int64)
        mask = (
            np.ones(len(self._ids), bool)
            if allowed_ids is None
            else np.isin(self._ids, allowed_ids)
        )
        ids, vectors = self._ids[mask], self._vectors[mask]
        for row, query in enumerate(queries):
            sims = vectors @ query
            order = np.lexsort((ids, -sims))[:k]
            scores[row, : len(order)], found[row, : len(order)] = sims[order], ids[order]
        return scores, found

    def ids(self) -> np.ndarray:
        return self._ids.copy()

    def save(self, path: Path) -> None:
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as handle:
                np.savez(handle, ids=self._ids, vectors=self._vectors)

        atomic_write(path, write)


class ReconcilingIndex(NumpyIndex):
    """Declares the optional abilities by having their methods, nothing else."""

    reconciled: ClassVar[list[int]] = []
    closed: ClassVar[int] = 0

    def reconcile(self, expected_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ReconcilingIndex.reconciled.append(len(expected_ids))
        held = self.ids()
        return held[~np.isin(held, expected_ids)], expected_ids[~np.isin(expected_ids, held)]

    def close(self) -> None:
        ReconcilingIndex.closed += 1


@pytest.fixture
def test_backends() -> Iterator[None]:
    register_dense_backend("numpy-test", suffix="npz")(NumpyIndex)
    register_dense_backend("numpy-reconcile", suffix="rnpz")(ReconcilingIndex)
    yield
    DENSE_BACKENDS.remove("numpy-test")
    DENSE_BACKENDS.remove("numpy-reconcile")


def test_capabilities_are_found_with_isinstance() -> None:
    pytest.importorskip("faiss")
    from ragkit.indexes.faiss_index import FaissIndex

    faiss_index = FaissIndex(8, IndexConfig(kind="int8"))
    assert isinstance(faiss_index, NeedsRetrain)
    assert not isinstance(faiss_index, SupportsReconcile | Closeable)
    plain, extra = NumpyIndex(8), ReconcilingIndex(8)
    assert not isinstance(plain, SupportsReconcile | NeedsRetrain | Closeable)
    assert isinstance(extra, SupportsReconcile) and isinstance(extra, Closeable)


@pytest.mark.parametrize(
    "module", ["qdrant_index:QdrantIndex", "qdrant_edge_index:QdrantEdgeIndex"]
)
def test_the_qdrant_backends_reconcile_and_close(module: str) -> None:
    """Written in place and holding a client or shard; the classes say so (protocols with only
    methods can be checked on the class, without opening an index)."""
    name, _, attr = module.partition(":")
    cls = getattr(pytest.importorskip(f"ragkit.indexes.{name}"), attr)
    assert issubclass(cls, SupportsReconcile) and issubclass(cls, Closeable)
    assert not issubclass(cls, NeedsRetrain)


def _write_config(root: Path, text: str) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "ragkit.toml").write_text(text, encoding="utf-8")


def test_a_registered_backend_builds_and_answers(  # type: ignore[no-untyped-def]
    tmp_path, tiny_encoder, docs, test_backends
) -> None:
    root = tmp_path / "ws"
    _write_config(root, '[index]\nbackend = "numpy-test"\n')
    with ragkit.open(root, encoder=tiny_encoder, create=True) as kit:
        kit.ingest(docs)
        collection = kit.collection()
        assert collection is not None
        assert collection.dense_path(1).name == "dense.g000001.npz"
        assert isinstance(collection.load_dense(), NumpyIndex)
        hits = kit.query("dog pear", k=1, mode="dense")
        assert hits[0].text == "the dog ate a green pear"


def test_the_writer_reconciles_and_doctor_closes_through_the_protocols(  # type: ignore[no-untyped-def]
    tmp_path, tiny_encoder, docs, test_backends
) -> None:
    root = tmp_path / "ws"
    _write_config(root, '[index]\nbackend = "numpy-reconcile"\n')
    ReconcilingIndex.reconciled.clear()
    with ragkit.open(root, encoder=tiny_encoder, create=True) as kit:
        kit.ingest(docs)
        kit.ingest(docs)  # the second batch opens the committed generation: reconciled
        assert ReconcilingIndex.reconciled
        closed = ReconcilingIndex.closed
        assert kit.doctor().ok
        assert ReconcilingIndex.closed > closed


# -- the encoder protocol --------------------------------------------------------------------
class WordCounter:
    """Whitespace tokens: what a tokenizer-less (remote or hashing) encoder can offer."""

    special_tokens = 0
    id = "whitespace-v1"

    def count(self, texts: Sequence[str]) -> list[int]:
        return [len(text.split()) for text in texts]

    def offsets(self, text: str) -> list[tuple[int, int]]:
        return [match.span() for match in re.finditer(r"\S+", text)]


class HashingEncoder:
    """Bag of words hashed into ``dim`` buckets, L2-normalised: numpy only, no weights."""

    def __init__(self, config: EncoderConfig) -> None:
        self.name = config.model
        self.dim = config.truncate_dim or 256
        self.batch_size = config.batch_size
        self.query_prompt = ""
        self.document_prompt = ""
        self.tokens = WordCounter()
        self.max_seq_length = 128
        settings = {"kind": "hashing", "dim": self.dim, "version": 1}
        digest = hashlib.blake2b(json.dumps(settings).encode(), digest_size=16).hexdigest()
        self.fingerprint = {**settings, "id": digest}

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                bucket = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest())
                out[row, bucket % self.dim] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts)

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts)


@pytest.fixture
def hashing_provider() -> Iterator[None]:
    register_encoder("hashing-test")(HashingEncoder)
    yield
    ENCODERS.remove("hashing-test")


def test_dense_encoder_satisfies_the_protocol(tiny_encoder) -> None:  # type: ignore[no-untyped-def]
    assert isinstance(tiny_encoder, Encoder)
    assert isinstance(tiny_encoder.tokens, TokenCounting)
    assert tiny_encoder.tokens.id  # the chunking fingerprint's tokenizer hash
    assert isinstance(HashingEncoder(EncoderConfig(model="h")), Encoder)


def test_a_non_torch_encoder_builds_and_queries_a_workspace(  # type: ignore[no-untyped-def]
    tmp_path, docs, hashing_provider, monkeypatch
) -> None:
    # Any attempt to import these from here on fails: the workspace must not need them.
    for module in ("torch", "sentence_transformers", "transformers"):
        monkeypatch.setitem(sys.modules, module, None)
    root = tmp_path / "ws"
    _write_config(root, '[encoder]\nprovider = "hashing-test"\nmodel = "hash-256"\n')
    with ragkit.open(root, create=True) as kit:
        assert isinstance(kit.encoder, HashingEncoder)
        report = kit.ingest(docs)
        assert report.files_failed == 0 and report.chunks_added == 4
        collection = kit.collection()
        assert collection is not None
        assert collection.record.model_fp == kit.encoder.fingerprint["id"]
        for mode in ("dense", "hybrid"):
            hits = kit.query("dog pear", k=1, mode=mode)
            assert hits[0].text == "the dog ate a green pear"
    # reopened: the fingerprint matches, nothing is re-encoded
    with ragkit.open(root) as kit:
        assert kit.ingest(docs).chunks_encoded == 0
