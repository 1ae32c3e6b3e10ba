"""ragkit: ingest documents, index them, query, evaluate and fine-tune retrieval.

>>> import ragkit
>>> kit = ragkit.open("./.ragkit", create=True)
>>> kit.ingest("docs/")
>>> kit.query("how do I rotate backups?", k=5)

The public names are imported on first use (module ``__getattr__``), so ``import ragkit.errors``
or ``ragkit --help`` never pays for the workspace, numpy, FAISS or torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ragkit.config import WorkspaceConfig
    from ragkit.documents import Block, Chunk, Document, Hit
    from ragkit.errors import RagkitError
    from ragkit.workspace import Workspace
    from ragkit.workspace import open_workspace as open

__all__ = [
    "Block",
    "Chunk",
    "Document",
    "Hit",
    "RagkitError",
    "Workspace",
    "WorkspaceConfig",
    "open",
]

__version__ = "0.1.0"

# public name -> (module, attribute)
_LAZY: dict[str, tuple[str, str]] = {
    "Block": ("ragkit.documents", "Block"),
    "Chunk": ("ragkit.documents", "Chunk"),
    "Document": ("ragkit.documents", "Document"),
    "Hit": ("ragkit.documents", "Hit"),
    "RagkitError": ("ragkit.errors", "RagkitError"),
    "Workspace": ("ragkit.workspace", "Workspace"),
    "WorkspaceConfig": ("ragkit.config", "WorkspaceConfig"),
    "open": ("ragkit.workspace", "open_workspace"),
}


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'ragkit' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
