"""LangChain adapters: a workspace as a ``BaseRetriever``, its encoder as ``Embeddings``.

>>> from ragkit.integrations.langchain import RagkitRetriever
>>> retriever = RagkitRetriever.from_path("./.ragkit", k=5, where="format=md")
>>> retriever.invoke("how do I rotate backups?")

Searches are synchronous (SQLite, FAISS, a PyTorch encoder); the async methods run them in a
worker thread so an event loop serving other requests is not blocked while one query encodes.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from ragkit.documents import Hit
from ragkit.encoders.protocol import Encoder
from ragkit.errors import MissingDependencyError
from ragkit.workspace import Workspace, open_workspace

try:
    from langchain_core.callbacks import (
        AsyncCallbackManagerForRetrieverRun,
        CallbackManagerForRetrieverRun,
    )
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
    from langchain_core.retrievers import BaseRetriever
    from pydantic import Field
except ModuleNotFoundError as exc:  # only a missing package; a broken install keeps its error
    if (exc.name or "").partition(".")[0] not in {"langchain_core", "pydantic"}:
        raise
    raise MissingDependencyError(
        "langchain-core", "langchain", "The LangChain integration"
    ) from exc

__all__ = ["RagkitEmbeddings", "RagkitRetriever", "hit_to_document"]

Where = str | list[str] | dict[str, Any] | None


def hit_to_document(hit: Hit) -> Document:
    """A LangChain ``Document`` carrying everything a ``Hit`` knows, under stable keys.

    The hit's own fields win over document metadata of the same name, so ``score`` or ``uri``
    always mean what ragkit says they mean. ``id`` is the chunk id: stable across re-ingests of
    unchanged text, so callers can de-duplicate results from several queries.
    """
    metadata = {
        **hit.metadata,
        "score": hit.score,
        "uri": hit.uri,
        "title": hit.title,
        "headings": list(hit.headings),
        "chunk_id": hit.chunk_id,
        "doc_id": hit.doc_id,
        "rank": hit.rank,
    }
    return Document(page_content=hit.text, metadata=metadata, id=hit.chunk_id)


class RagkitRetriever(BaseRetriever):
    """Search over a ragkit workspace (its ``default`` alias), in any mode it offers.

    ``k``, ``where`` and ``mode`` set defaults; ``invoke(query, k=..., where=..., mode=...)``
    overrides them for one call (``None`` keeps the default). ``where`` takes the same filters as
    ``ragkit query --where`` (``"format=md"``, ``["year>=2020", "uri=guides/*"]`` or
    ``{"source": "docs"}``).
    """

    workspace: Any
    """An open :class:`ragkit.Workspace`; the retriever does not close it."""
    k: int = Field(default=4, ge=1)
    where: Where = None
    mode: str | None = None

    @classmethod
    def from_path(
        cls, path: str | Path, *, encoder: Encoder | None = None, **kwargs: Any
    ) -> RagkitRetriever:
        """Open an existing workspace folder (never creates one: an empty index is a mistake).

        The retriever then holds the only reference to that workspace; close it with
        ``retriever.workspace.close()`` when done.
        """
        return cls(workspace=open_workspace(path, create=False, encoder=encoder), **kwargs)

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        k: int | None = None,
        where: Where = None,
        mode: str | None = None,
    ) -> list[Document]:
        return self._search(query, k=k, where=where, mode=mode)

    async def _aget_relevant_documents(
        self,
        query: str,
        *,
        run_manager: AsyncCallbackManagerForRetrieverRun,
        k: int | None = None,
        where: Where = None,
        mode: str | None = None,
    ) -> list[Document]:
        return await asyncio.to_thread(self._search, query, k=k, where=where, mode=mode)

    def _search(
        self, query: str, *, k: int | None, where: Where, mode: str | None
    ) -> list[Document]:
        hits = self.workspace.query(
            query,
            k=self.k if k is None else k,
            where=self.where if where is None else where,
            mode=self.mode if mode is None else mode,
        )
        return [hit_to_document(hit) for hit in hits]


class RagkitEmbeddings(Embeddings):
    """A ragkit encoder as LangChain ``Embeddings``: the same vectors ragkit indexes and queries.

    ``encoder`` is any :class:`Encoder`, or a :class:`Workspace` whose configured encoder is
    used (loaded on first use). Documents get the encoder's document prompt and queries its query
    prompt, so vectors stored elsewhere stay comparable with a ragkit index of the same encoder.
    """

    def __init__(self, encoder: Encoder | Workspace) -> None:
        self._source = encoder

    @property
    def encoder(self) -> Encoder:
        source = self._source
        return source.encoder if isinstance(source, Workspace) else source

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.encoder.encode_documents(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.encoder.encode_queries([text])[0].tolist()

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        return await asyncio.to_thread(self.embed_query, text)
