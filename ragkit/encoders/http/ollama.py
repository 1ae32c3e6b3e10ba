"""Ollama's native ``/api/embed`` (batch input; ``/api/embeddings`` is its older one-text route).

Ollama answers with the model's full name (``nomic-embed-text:latest``), which is checked
against ``model``; ``truncate`` is left on so an over-long text is cut, not refused.
"""

from __future__ import annotations

from typing import Any

from ragkit.config import EncoderConfig
from ragkit.encoders.http.remote import RemoteEncoder
from ragkit.encoders.registry import register_encoder

__all__ = ["OllamaWire", "load_ollama_encoder"]


class OllamaWire:
    provider = "ollama"
    default_key_env = "OLLAMA_API_KEY"
    default_base_url = "http://127.0.0.1:11434"
    default_max_tokens = 2048
    default_batch_tokens = 32_768

    def __init__(self, config: EncoderConfig) -> None:
        self.model = config.model
        self.dimensions = config.dimensions

    def auth(self, key: str) -> dict[str, str]:
        return {"authorization": f"Bearer {key}"}

    def route(self, kind: str) -> str:
        return "/api/embed"

    def body(self, texts: list[str], kind: str) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "input": texts, "truncate": True}
        if self.dimensions:
            body["dimensions"] = self.dimensions
        return body

    def vectors(self, reply: Any) -> list[Any]:
        return list(reply["embeddings"])

    def answered_model(self, reply: Any) -> str | None:
        return reply.get("model")

    def settings(self) -> dict[str, Any]:
        return {}


@register_encoder("ollama")
def load_ollama_encoder(config: EncoderConfig) -> RemoteEncoder:
    """The ``ollama`` provider: a local or remote Ollama server's ``/api/embed``."""
    return RemoteEncoder(config, OllamaWire(config))
