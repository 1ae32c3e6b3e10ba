"""Any OpenAI-compatible ``/v1/embeddings`` endpoint: OpenAI, Azure OpenAI, vLLM, TEI's
OpenAI route, Ollama's ``/v1``, LiteLLM, infinity, NVIDIA NIM.

Azure differs only in auth and addressing: ``base_url`` is the deployment URL
(``https://<resource>.openai.azure.com/openai/deployments/<deployment>``) and setting
``api_version`` sends it as a query parameter with the key in an ``api-key`` header.
``encoding_format = "base64"`` asks for little-endian float32 bytes, a third of the JSON.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from ragkit.config import EncoderConfig
from ragkit.encoders.http.remote import RemoteEncoder
from ragkit.encoders.registry import register_encoder
from ragkit.errors import ConfigError

__all__ = ["OpenAIWire", "load_openai_encoder"]

_FORMATS = ("float", "base64")


class OpenAIWire:
    provider = "openai"
    default_key_env = "OPENAI_API_KEY"
    default_base_url = "https://api.openai.com/v1"
    default_max_tokens = 8191
    default_batch_tokens = 100_000  # OpenAI allows 300k tokens per request

    def __init__(self, config: EncoderConfig) -> None:
        if config.encoding_format not in _FORMATS:
            raise ConfigError(f"encoder.encoding_format must be one of {_FORMATS}")
        self.model = config.model
        self.dimensions = config.dimensions
        self.encoding_format = config.encoding_format
        self.azure = bool(config.api_version)

    def auth(self, key: str) -> dict[str, str]:
        return {"api-key": key} if self.azure else {"authorization": f"Bearer {key}"}

    def route(self, kind: str) -> str:
        return "/embeddings"

    def body(self, texts: list[str], kind: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "input": texts,
            "encoding_format": self.encoding_format,
        }
        if self.dimensions:
            body["dimensions"] = self.dimensions
        return body

    def vectors(self, reply: Any) -> list[Any]:
        data = sorted(reply["data"], key=lambda item: item["index"])
        if [item["index"] for item in data] != list(range(len(data))):
            raise ValueError("the data indexes are not 0..n-1")
        return [_decoded(item["embedding"]) for item in data]

    def answered_model(self, reply: Any) -> str | None:
        return reply.get("model")

    def settings(self) -> dict[str, Any]:
        return {}


def _decoded(embedding: Any) -> Any:
    if isinstance(embedding, str):  # encoding_format = "base64"
        raw = base64.b64decode(embedding, validate=True)
        if len(raw) % 4:
            raise ValueError("a base64 vector is not whole float32 values")
        return np.frombuffer(raw, dtype="<f4")
    return embedding


@register_encoder("openai")
def load_openai_encoder(config: EncoderConfig) -> RemoteEncoder:
    """The ``openai`` provider: any server speaking OpenAI's embeddings API."""
    return RemoteEncoder(config, OpenAIWire(config))
