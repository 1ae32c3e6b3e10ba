"""ragkit: ingest documents, index them, query, evaluate and fine-tune retrieval.

>>> import ragkit
>>> kit = ragkit.open("./.ragkit")
>>> kit.ingest("docs/")
>>> kit.query("how do I rotate backups?", k=5)
"""

from __future__ import annotations

from ragkit.config import WorkspaceConfig
from ragkit.documents import Block, Chunk, Document, Hit
from ragkit.errors import RagkitError
from ragkit.workspace import Workspace, open_workspace

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

open = open_workspace
