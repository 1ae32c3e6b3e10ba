"""Dense encoder over sentence-transformers: prompts, Matryoshka truncation, GPU when present,
bfloat16 autocast where the hardware has it (``[encoder] precision``), or ONNX Runtime with
optional int8 weights (``[encoder] backend``, ``quantize``; see ``onnx_backend``)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ragkit.config import EncoderConfig
from ragkit.encoders.fingerprint import fingerprint_model
from ragkit.encoders.registry import (
    KNOWN_PROMPTS,
    module_config,
    offline_if_local,
    pick_device,
    quiet_loading,
    register_encoder,
    resolve_model_path,
    resolve_precision,
)
from ragkit.encoders.tokens import TokenCounter
from ragkit.errors import ConfigError

__all__ = ["DenseEncoder", "load_sentence_transformer"]


class DenseEncoder:
    """Encodes queries and documents into L2-normalised float32 vectors (cosine = inner product).

    Queries and documents may get different prompts (E5 "query: "/"passage: ", BGE's
    instruction, EmbeddingGemma's task prompts); the prompts are part of the fingerprint, and so
    is the tokenizer: the same weights behind another normalizer return other vectors.
    The precision is not: bf16 and float32 embeddings of one model agree to a cosine of ~0.99998,
    so a workspace built on a bf16 machine is queried, and its cache reused, anywhere.
    The ONNX backend is (``backend``): int8 weights move vectors by far more than bf16 does.
    """

    def __init__(
        self,
        model: Any,
        *,
        name: str,
        query_prompt: str = "",
        document_prompt: str = "",
        truncate_dim: int | None = None,
        batch_size: int = 64,
        precision: str = "fp32",
        backend: dict[str, Any] | None = None,
    ) -> None:
        self.model = model
        self.name = name
        self.query_prompt = query_prompt
        self.document_prompt = document_prompt
        self.truncate_dim = truncate_dim
        self.batch_size = batch_size
        get_dim = getattr(model, "get_embedding_dimension", None) or (
            model.get_sentence_embedding_dimension
        )
        full_dim = get_dim()
        if truncate_dim is not None and not 0 < truncate_dim <= (full_dim or truncate_dim):
            raise ConfigError(
                f"encoder.truncate_dim={truncate_dim} is invalid for {name!r} "
                f"(its dimension is {full_dim})"
            )
        self.dim: int = truncate_dim or full_dim
        self.tokens = TokenCounter(model.tokenizer)
        self.precision = precision
        self._device_type = getattr(getattr(model, "device", None), "type", "cpu")
        #: what runs the transformer when it is not torch (name, quantization, file digest)
        self.backend = backend
        #: the dtype encoding runs in under autocast; None: plain float32 (or ONNX Runtime's)
        self.autocast_dtype = None if backend else resolve_precision(precision, self._device_type)

    @classmethod
    def load(cls, config: EncoderConfig) -> DenseEncoder:
        from sentence_transformers import SentenceTransformer

        from ragkit.encoders.onnx_backend import check_backend, default_export_dir, use_onnx

        check_backend(config.backend, config.quantize)
        path = resolve_model_path(config.model, kind="dense")
        try:
            with offline_if_local(path), quiet_loading():
                model = SentenceTransformer(path, device=pick_device(config.device))
        except OSError as exc:
            raise ConfigError(
                f"cannot load the encoder {config.model!r}: {exc}. Give a local folder or a "
                "sentence-transformers model name that is cached or reachable."
            ) from exc
        if config.max_seq_length:
            model.max_seq_length = config.max_seq_length
        backend = None
        if config.backend == "onnx":
            export_dir = Path(config.export_dir) if config.export_dir else default_export_dir()
            backend = use_onnx(
                model, quantize=config.quantize, export_dir=export_dir, device=str(model.device)
            )
        return cls.from_model(model, name=config.model, config=config, backend=backend)

    @classmethod
    def from_model(
        cls,
        model: Any,
        *,
        name: str,
        config: EncoderConfig | None = None,
        backend: dict[str, Any] | None = None,
    ) -> DenseEncoder:
        """Wrap an already-built SentenceTransformer (tests, fine-tuned models in memory).
        ``backend`` describes a transformer swapped for another runtime (``use_onnx``); the
        model in hand decides it, not ``config``, which may name a backend it was not built with."""
        config = config or EncoderConfig(model=name)
        query_prompt, document_prompt = _default_prompts(model, name)
        return cls(
            model,
            name=name,
            query_prompt=config.query_prompt if config.query_prompt is not None else query_prompt,
            document_prompt=(
                config.document_prompt if config.document_prompt is not None else document_prompt
            ),
            truncate_dim=config.truncate_dim,
            batch_size=config.batch_size,
            precision=config.precision,
            backend=backend,
        )

    def config_for(self, model: str) -> EncoderConfig:
        """This encoder's settings (prompts, truncation, batch size, precision) for ``model``."""
        return EncoderConfig(
            provider=SENTENCE_TRANSFORMERS,
            model=model,
            query_prompt=self.query_prompt,
            document_prompt=self.document_prompt,
            truncate_dim=self.truncate_dim,
            batch_size=self.batch_size,
            precision=self.precision,
        )

    def sibling(self, model: Any, *, name: str) -> DenseEncoder:
        """Another model in memory (a checkpoint, a soup) encoding under this one's settings."""
        return DenseEncoder.from_model(model, name=name, config=self.config_for(name))

    @property
    def compute_dtype(self) -> str:
        """What encoding computes in: ``bfloat16``, ``float16``, ``float32`` or ``int8``."""
        if self.backend:
            return "int8" if self.backend["quantize"] == "int8" else "float32"
        return str(self.autocast_dtype or "torch.float32").removeprefix("torch.")

    @property
    def max_seq_length(self) -> int:
        value = self.model.max_seq_length
        # Static (bag-of-words) models have no limit; 512 keeps chunks a readable size.
        return int(value) if value and math.isfinite(value) else 512

    @cached_property
    def fingerprint(self) -> dict[str, Any]:
        modules = [
            {"type": type(m).__name__, "config": module_config(m)} for m in self.model.children()
        ]
        settings: dict[str, Any] = {
            "kind": "dense",
            "modules": modules,
            "query_prompt": self.query_prompt,
            "document_prompt": self.document_prompt,
            "dim": self.dim,
            "max_seq_length": self.max_seq_length,
            "normalized": True,
        }
        if self.backend:
            # int8 weights give other vectors; torch fingerprints keep their old ids
            settings["backend"] = self.backend
        return fingerprint_model(self.model, settings, tokenizer=self.model.tokenizer)

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, self.document_prompt)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, self.query_prompt)

    def _encode(self, texts: Sequence[str], prompt: str) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # sentence-transformers sorts by length inside encode(), so batches are padded little.
        with self.autocast():
            vectors = self.model.encode(
                list(texts),
                batch_size=self.batch_size,
                prompt=prompt or None,
                convert_to_numpy=True,
                normalize_embeddings=False,
                show_progress_bar=False,
            )
        vectors = np.asarray(vectors, dtype=np.float32)
        if self.truncate_dim:
            vectors = vectors[:, : self.truncate_dim]
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)

    def autocast(self) -> Any:
        """The context every encode runs in: autocast to ``autocast_dtype``, or nothing."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        import torch

        return torch.autocast(self._device_type, dtype=self.autocast_dtype)


SENTENCE_TRANSFORMERS = "sentence-transformers"


@register_encoder(SENTENCE_TRANSFORMERS)
def load_sentence_transformer(config: EncoderConfig) -> DenseEncoder:
    """The ``sentence-transformers`` provider: any local folder or hub model name."""
    return DenseEncoder.load(config)


def _default_prompts(model: Any, name: str) -> tuple[str, str]:
    prompts = getattr(model, "prompts", None) or {}
    query = prompts.get("query")
    document = prompts.get("document", prompts.get("passage", prompts.get("corpus")))
    if query is None and document is None:
        lowered = name.lower()
        for marker, (q, d) in KNOWN_PROMPTS.items():
            if marker in lowered:
                return q, d
    return query or "", document or ""
