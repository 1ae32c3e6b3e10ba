"""What ``ragkit migrate --to`` names, turned into the parts of the shadow collection.

``--to`` takes a model registered by ``ragkit finetune`` (by its name), a preset
(``ragkit encoders`` lists them), a remote encoder as ``PROVIDER:MODEL`` (``openai:``,
``gemini:``, ``tei:``, ``ollama:``), or a sentence-transformers model name or folder. Without
``--to`` the target is ragkit.toml as it is now: the migration moves the collection onto the
settings a TOML edit asked for (the drift ``ragkit status`` reports).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from ragkit.collection import Collection
from ragkit.collection_spec import CollectionSpec
from ragkit.config import ChunkingConfig, EncoderConfig, IndexConfig, SparseConfig
from ragkit.encoders.presets import PRESETS
from ragkit.encoders.registry import ENCODERS
from ragkit.errors import ConfigError
from ragkit.training.model_card import read_registry
from ragkit.workspace import Workspace

__all__ = ["TargetSpec", "resolve_target", "shadow_name"]


@dataclass(frozen=True)
class TargetSpec:
    """The settings the shadow collection is built with (None: keep the source's)."""

    encoder: EncoderConfig
    chunking: ChunkingConfig
    index: IndexConfig
    sparse: SparseConfig
    described: str  # what --to named, as shown in the plan


def resolve_target(
    workspace: Workspace,
    source: Collection,
    to: str | None,
    *,
    chunking: dict[str, Any] | None = None,
    index: dict[str, Any] | None = None,
    sparse: str | None = None,
    encoder_options: dict[str, Any] | None = None,
) -> TargetSpec:
    """The target's settings: the source's spec with what ``to`` and the overrides change.
    ``chunking``/``index``: fields to change (e.g. ``{"max_tokens": 128}``, ``{"kind":
    "hnsw"}``); ``sparse``: a channel (bm25, splade, a SPLADE model, none)."""
    spec: CollectionSpec = source.record.spec
    runtime = workspace.config.encoder
    if to is None:
        config = workspace.config
        encoder = config.encoder
        chunking_config, index_config, sparse_config = config.chunking, config.index, config.sparse
        described = "ragkit.toml"
    else:
        encoder = _encoder_for(workspace, to, runtime)
        chunking_config = spec.chunking.config()
        index_config = spec.index.config()
        sparse_config = spec.sparse.config(workspace.config.sparse)
        described = to
    if encoder_options:
        encoder = _replace(encoder, encoder_options, "encoder")
    if chunking:
        chunking_config = _replace(chunking_config, chunking, "chunking")
    if index:
        index_config = _replace(index_config, index, "index")
    if sparse is not None:
        sparse_config = dataclasses.replace(sparse_config, model=sparse)
    return TargetSpec(encoder, chunking_config, index_config, sparse_config, described)


def _encoder_for(workspace: Workspace, to: str, runtime: EncoderConfig) -> EncoderConfig:
    keep = {
        "batch_size": runtime.batch_size,
        "device": runtime.device,
        "precision": runtime.precision,
        "export_dir": runtime.export_dir,
    }
    registered = [m for m in read_registry(workspace.root) if m.get("name") == to]
    if registered:
        settings = dict(registered[-1].get("encoder") or {"model": registered[-1]["path"]})
        known = {k: v for k, v in settings.items() if k in EncoderConfig.__dataclass_fields__}
        return EncoderConfig(**{**known, **keep})
    if to.lower() in PRESETS:
        return EncoderConfig(preset=to.lower(), **keep)
    provider, sep, model = to.partition(":")
    if sep and re.fullmatch(r"[a-z][a-z0-9_-]*", provider) and provider in ENCODERS.names():
        if not model:
            raise ConfigError(f"--to {to!r}: name the model after {provider}:")
        return EncoderConfig(provider=provider, model=model, **keep)
    return EncoderConfig(model=to, **keep)


def _replace(config: Any, changes: dict[str, Any], section: str) -> Any:
    known = {f.name: f for f in dataclasses.fields(config)}
    unknown = sorted(set(changes) - set(known))
    if unknown:
        raise ConfigError(
            f"[{section}] has no {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    values = {}
    for name, value in changes.items():
        current = getattr(config, name)
        values[name] = _coerce(value, current, f"{section}.{name}")
    return dataclasses.replace(config, **values)


def _coerce(value: Any, current: Any, label: str) -> Any:
    if not isinstance(value, str) or isinstance(current, str) or current is None:
        return value
    try:
        if isinstance(current, bool):
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(value)
            return value.lower() in ("true", "1", "yes")
        return type(current)(value)
    except ValueError:
        raise ConfigError(f"{label}={value!r}: expected a {type(current).__name__}") from None


def shadow_name(workspace: Workspace, encoder_name: str, fingerprint: str) -> str:
    """``<model slug>-<fingerprint[:8]>``, with ``-2``, ``-3``... when that name is taken."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", encoder_name.rsplit("/", 1)[-1]).strip("-._")
    base = f"{(slug or 'collection')[:40]}-{fingerprint[:8]}"
    name, n = base, 1
    while workspace.store.collection(name) is not None:
        n += 1
        name = f"{base}-{n}"
    return name
