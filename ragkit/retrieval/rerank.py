"""Second-stage reranking with a cross-encoder.

A bi-encoder scores query and document separately, so it can search millions of chunks but
misses interactions between their words; a cross-encoder reads each (query, chunk) pair together
and is more precise, but costs one forward pass per pair. So it only reorders the few dozen
candidates that the first stage (dense, sparse, fused) already found.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ragkit.encoders.registry import offline_if_local, pick_device, quiet_loading
from ragkit.errors import ConfigError

__all__ = ["CrossEncoderReranker"]


class CrossEncoderReranker:
    """Reorders ``(id, text)`` candidates by a ``sentence_transformers.CrossEncoder``'s score."""

    def __init__(self, model: Any, *, name: str, batch_size: int = 32) -> None:
        if batch_size <= 0:
            raise ConfigError(f"rerank batch_size must be positive, got {batch_size}")
        self.model = model
        self.name = name
        self.batch_size = batch_size

    @classmethod
    def load(
        cls, name_or_path: str, *, device: str | None = None, batch_size: int = 32
    ) -> CrossEncoderReranker:
        from sentence_transformers import CrossEncoder

        try:
            with offline_if_local(name_or_path), quiet_loading():
                model = CrossEncoder(name_or_path, device=pick_device(device))
        except OSError as exc:
            raise ConfigError(
                f"cannot load the reranker {name_or_path!r}: {exc}. Give a local folder or a "
                "cross-encoder model name that is cached or reachable."
            ) from exc
        return cls.from_model(model, name=name_or_path, batch_size=batch_size)

    @classmethod
    def from_model(cls, model: Any, *, name: str, batch_size: int = 32) -> CrossEncoderReranker:
        """Wrap an already-built ``CrossEncoder`` (tests, fine-tuned models in memory)."""
        return cls(model, name=name, batch_size=batch_size)

    def rerank(
        self,
        query: str,
        candidates: Sequence[tuple[int, str]],
        *,
        top_n: int | None = None,
    ) -> list[tuple[int, float]]:
        """Return ``(id, score)`` best first (equal scores by id), cut to ``top_n`` if given."""
        if top_n is not None and top_n < 0:
            raise ConfigError(f"top_n must be >= 0 or None, got {top_n}")
        if not candidates or top_n == 0:
            return []
        scores = self.model.predict(
            [(query, text) for _, text in candidates],
            batch_size=self.batch_size,
            show_progress_bar=False,
            convert_to_numpy=True,
        )
        if scores.ndim != 1:
            raise ConfigError(
                f"the reranker {self.name!r} gives {scores.shape[-1]} scores per pair; "
                "reranking needs a cross-encoder with a single relevance output (num_labels=1)"
            )
        ranked = sorted(
            (
                (int(doc_id), float(score))
                for (doc_id, _), score in zip(candidates, scores, strict=True)
            ),
            key=lambda item: (-item[1], item[0]),
        )
        return ranked if top_n is None else ranked[:top_n]
