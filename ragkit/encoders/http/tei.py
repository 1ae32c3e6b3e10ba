"""Hugging Face text-embeddings-inference, native route ``/embed``.

TEI serves one model, so the request names none; ``dimensions`` is sent for Matryoshka models
(TEI >= 1.6). A key is optional: TEI started with ``--api-key`` checks a bearer token.
"""

from __future__ import annotations

from typing import Any

from ragkit.config import EncoderConfig
from ragkit.encoders.http.remote import RemoteEncoder
from ragkit.encoders.registry import register_encoder

__all__ = ["TEIWire", "load_tei_encoder"]


class TEIWire:
    provider = "tei"
    default_key_env = "TEI_API_KEY"
    default_base_url = "http://127.0.0.1:8080"
    default_max_tokens = 512
    default_batch_tokens = 16_384  # TEI's default --max-batch-tokens

    def __init__(self, config: EncoderConfig) -> None:
        self.dimensions = config.dimensions

    def auth(self, key: str) -> dict[str, str]:
        return {"authorization": f"Bearer {key}"}

    def route(self, kind: str) -> str:
        return "/embed"

    def body(self, texts: list[str], kind: str) -> dict[str, Any]:
        body: dict[str, Any] = {"inputs": texts, "normalize": True, "truncate": True}
        if self.dimensions:
            body["dimensions"] = self.dimensions
        return body

    def vectors(self, reply: Any) -> list[Any]:
        if not isinstance(reply, list):
            raise ValueError("expected a list of vectors")
        return reply

    def answered_model(self, reply: Any) -> str | None:
        return None

    def settings(self) -> dict[str, Any]:
        return {}


@register_encoder("tei")
def load_tei_encoder(config: EncoderConfig) -> RemoteEncoder:
    """The ``tei`` provider: a text-embeddings-inference server's ``/embed``."""
    return RemoteEncoder(config, TEIWire(config))
