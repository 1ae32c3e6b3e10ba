"""Encoder migration: serve an old index with queries from a new encoder while it backfills.

Importing this package loads numpy only; torch is imported when an ``mlp`` adapter is fitted.
"""

from __future__ import annotations

from ragkit.migration.adapters import (
    ADAPTER_KINDS,
    ADAPTERS,
    QueryAdapter,
    fit_adapter,
    load_adapter,
    register_adapter,
    save_adapter,
)
from ragkit.migration.quality import adapter_recall, relative_recall, split_holdout

__all__ = [
    "ADAPTERS",
    "ADAPTER_KINDS",
    "QueryAdapter",
    "adapter_recall",
    "fit_adapter",
    "load_adapter",
    "register_adapter",
    "relative_recall",
    "save_adapter",
    "split_holdout",
]
