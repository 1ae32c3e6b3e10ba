"""Known models as one config word: ``[encoder] preset = "nv-embed-v2"``.

A preset fills the ``[encoder]`` keys the file leaves at their defaults (provider, model,
prompts, dimension, input limit, base URL), so the prompts a model was trained with are never
forgotten; a key written in ragkit.toml wins over the preset's. A local preset switches to a
served copy of the same model by naming the provider too (``provider = "tei"`` and
``base_url``): the prompts stay. ``ragkit encoders`` lists them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ragkit.errors import ConfigError

__all__ = ["PRESETS", "Preset", "apply_preset"]


@dataclass(frozen=True)
class Preset:
    name: str
    provider: str
    model: str
    #: output widths the model offers (Matryoshka), the full one first
    dims: tuple[int, ...]
    settings: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    @property
    def prompts(self) -> tuple[str, str]:
        return self.settings.get("query_prompt", ""), self.settings.get("document_prompt", "")


_NV_QUERY = "Instruct: Given a question, retrieve passages that answer the question\nQuery: "
_E5 = {"query_prompt": "query: ", "document_prompt": "passage: "}
_BGE = {
    "query_prompt": "Represent this sentence for searching relevant passages: ",
    "document_prompt": "",
}
_NOMIC = {"query_prompt": "search_query: ", "document_prompt": "search_document: "}
_GEMMA = {
    "query_prompt": "task: search result | query: ",
    "document_prompt": "title: none | text: ",
}
_NONE = {"query_prompt": "", "document_prompt": ""}

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "gemini-embedding-001",
            "gemini",
            "gemini-embedding-001",
            (3072, 1536, 768),
            {"dimensions": 3072, "max_seq_length": 2048, **_NONE},
            "task types RETRIEVAL_QUERY / RETRIEVAL_DOCUMENT; GEMINI_API_KEY",
        ),
        Preset(
            "nv-embed-v2",
            "openai",
            "nvidia/nv-embed-v2",
            (4096,),
            {
                "base_url": "https://integrate.api.nvidia.com/v1",
                "api_key_env": "NVIDIA_API_KEY",
                "max_seq_length": 4096,
                "query_prompt": _NV_QUERY,
                "document_prompt": "",
            },
            "NVIDIA NIM (OpenAI-compatible); NVIDIA_API_KEY",
        ),
        Preset(
            "embeddinggemma",
            "sentence-transformers",
            "google/embeddinggemma-300m",
            (768, 512, 256, 128),
            {"max_seq_length": 2048, **_GEMMA},
            "Matryoshka: set truncate_dim to 512, 256 or 128",
        ),
        Preset(
            "text-embedding-3-small",
            "openai",
            "text-embedding-3-small",
            (1536, 512),
            {"max_seq_length": 8191, **_NONE},
            "dimensions shortens it server-side",
        ),
        Preset(
            "text-embedding-3-large",
            "openai",
            "text-embedding-3-large",
            (3072, 1024, 256),
            {"max_seq_length": 8191, **_NONE},
            "dimensions shortens it server-side",
        ),
        Preset("e5-small-v2", "sentence-transformers", "intfloat/e5-small-v2", (384,), _E5),
        Preset("e5-base-v2", "sentence-transformers", "intfloat/e5-base-v2", (768,), _E5),
        Preset("e5-large-v2", "sentence-transformers", "intfloat/e5-large-v2", (1024,), _E5),
        Preset(
            "multilingual-e5-large",
            "sentence-transformers",
            "intfloat/multilingual-e5-large",
            (1024,),
            _E5,
        ),
        Preset(
            "bge-small-en-v1.5", "sentence-transformers", "BAAI/bge-small-en-v1.5", (384,), _BGE
        ),
        Preset("bge-base-en-v1.5", "sentence-transformers", "BAAI/bge-base-en-v1.5", (768,), _BGE),
        Preset(
            "bge-large-en-v1.5", "sentence-transformers", "BAAI/bge-large-en-v1.5", (1024,), _BGE
        ),
        Preset(
            "gte-base-en-v1.5",
            "sentence-transformers",
            "Alibaba-NLP/gte-base-en-v1.5",
            (768,),
            _NONE,
        ),
        Preset(
            "nomic-embed-text-v1.5",
            "sentence-transformers",
            "nomic-ai/nomic-embed-text-v1.5",
            (768, 512, 256, 128, 64),
            _NOMIC,
        ),
        Preset(
            "nomic-embed-text",
            "ollama",
            "nomic-embed-text",
            (768,),
            {"max_seq_length": 2048, **_NOMIC},
            "Ollama's build of nomic-embed-text-v1.5",
        ),
        Preset(
            "all-minilm-l6-v2",
            "sentence-transformers",
            "default",
            (384,),
            _NONE,
            "the default; shipped as a PyPI package",
        ),
        Preset(
            "all-mpnet-base-v2",
            "sentence-transformers",
            "sentence-transformers/all-mpnet-base-v2",
            (768,),
            _NONE,
        ),
    )
}


def apply_preset(config: Any) -> Any:
    """``config`` (an EncoderConfig) with its preset's values where the file left defaults."""
    if not config.preset:
        return config
    preset = PRESETS.get(config.preset.lower())
    if preset is None:
        raise ConfigError(
            f"encoder.preset={config.preset!r} is unknown; use one of {', '.join(sorted(PRESETS))}"
        )
    defaults = type(config)()
    values = {"provider": preset.provider, "model": preset.model, **preset.settings}
    changes = {
        key: value
        for key, value in values.items()
        if getattr(config, key) == getattr(defaults, key)
    }
    return dataclasses.replace(config, **changes)
