"""The Gemini API's embeddings (``gemini-embedding-001`` and successors).

Gemini embeds queries and documents differently by ``task_type`` (RETRIEVAL_QUERY /
RETRIEVAL_DOCUMENT) rather than by prompt, so the task types are in the fingerprint.
``output_dimensionality`` (``dimensions``: 3072, 1536 or 768) truncates a Matryoshka vector
that only the 3072-wide one comes back normalised; the encoder normalises every reply. The key
goes in the ``x-goog-api-key`` header, never in the URL, so it cannot end up in an error.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ragkit.config import EncoderConfig
from ragkit.encoders.http.remote import QUERY, RemoteEncoder
from ragkit.encoders.registry import register_encoder

__all__ = ["GeminiWire", "load_gemini_encoder"]


class GeminiWire:
    provider = "gemini"
    default_key_env = "GEMINI_API_KEY"
    default_base_url = "https://generativelanguage.googleapis.com/v1beta"
    default_max_tokens = 2048
    default_batch_tokens = 20_000

    def __init__(self, config: EncoderConfig) -> None:
        self.model = config.model.removeprefix("models/")
        self.dimensions = config.dimensions
        self.query_task = config.query_task or "RETRIEVAL_QUERY"
        self.document_task = config.document_task or "RETRIEVAL_DOCUMENT"

    def auth(self, key: str) -> dict[str, str]:
        return {"x-goog-api-key": key}

    def route(self, kind: str) -> str:
        return f"/models/{self.model}:batchEmbedContents"

    def body(self, texts: list[str], kind: str) -> dict[str, Any]:
        task = self.query_task if kind == QUERY else self.document_task
        extra = {"outputDimensionality": self.dimensions} if self.dimensions else {}
        return {
            "requests": [
                {
                    "model": f"models/{self.model}",
                    "content": {"parts": [{"text": text}]},
                    "taskType": task,
                    **extra,
                }
                for text in texts
            ]
        }

    def vectors(self, reply: Any) -> list[Any]:
        return [item["values"] for item in reply["embeddings"]]

    def answered_model(self, reply: Any) -> str | None:
        return None

    def settings(self) -> dict[str, Any]:
        return {"query_task": self.query_task, "document_task": self.document_task}


@register_encoder("gemini")
def load_gemini_encoder(config: EncoderConfig) -> RemoteEncoder:
    """The ``gemini`` provider (at most 100 texts per request: keep batch_size <= 100)."""
    if config.batch_size > 100:
        config = dataclasses.replace(config, batch_size=100)
    return RemoteEncoder(config, GeminiWire(config))
