"""The bridge between async request handlers and the synchronous, CPU-bound workspace.

One :class:`QueryService` per server process wraps one :class:`~ragkit.workspace.Workspace`.
Queries run in worker threads (an anyio capacity limiter bounds how many wait at once), and a
lock lets one of them into the workspace at a time. The lock is deliberate: the Searcher's reader
cache is a plain dict filled on a miss, a fast tokenizer raises "Already borrowed" when two
threads encode through it together, and a PyStemmer stemmer is not safe to share. FAISS, torch
and SQLite release the GIL inside, so the event loop keeps accepting requests meanwhile; a
caller with many queries sends them to ``/query/batch``, which encodes them as one batch.
"""

from __future__ import annotations

import threading
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from ragkit.errors import (
    ConfigError,
    DegradedSearchWarning,
    EncoderMismatchError,
    IndexCorruptError,
    RagkitError,
    StoreDamagedError,
    WorkspaceError,
)

if TYPE_CHECKING:
    from ragkit.documents import Hit
    from ragkit.workspace import Workspace

__all__ = ["Answer", "ApiError", "QueryService"]


class ApiError(Exception):
    """An error with the HTTP status and kind the client sees; the message is the ragkit one,
    which already says what happened and what to do."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message


@dataclass
class Answer:
    hits: list[list[dict[str, Any]]]
    mode: str
    alias: str
    warnings: list[str]
    took_ms: float


@dataclass
class Counters:
    queries: int = 0
    requests: int = 0
    errors: int = 0
    in_flight: int = 0
    started: float = field(default_factory=time.time)


def as_api_error(error: RagkitError) -> ApiError:
    """Map ragkit's errors to statuses: the caller's mistake is a 4xx, a damaged or mismatched
    workspace is a 503 (the server is up, its data needs `ragkit doctor --repair`)."""
    if isinstance(error, StoreDamagedError | IndexCorruptError):
        return ApiError(503, "workspace_damaged", str(error))
    if isinstance(error, EncoderMismatchError):
        return ApiError(503, "encoder_mismatch", str(error))
    if isinstance(error, ConfigError):
        return ApiError(400, "bad_request", str(error))
    if isinstance(error, WorkspaceError):
        return ApiError(404, "not_indexed", str(error))
    return ApiError(400, "bad_request", str(error))


class QueryService:
    def __init__(self, workspace: Workspace, *, concurrency: int = 4) -> None:
        self.workspace = workspace
        self.concurrency = concurrency
        self.limiter = anyio.CapacityLimiter(concurrency)
        self._lock = threading.Lock()
        self.counters = Counters()

    async def query(
        self,
        texts: list[str],
        *,
        k: int,
        mode: str | None,
        where: Any,
        collection: str,
        rerank: bool | str | None,
    ) -> Answer:
        def work() -> Answer:
            return self._query_now(texts, k, mode, where, collection, rerank)

        return await self.call(work, count=len(texts))

    async def call(self, work: Any, *, count: int = 0, exclusive: bool = True) -> Any:
        """Run ``work`` in a worker thread, mapping ragkit's errors. ``exclusive`` work holds
        the workspace lock; store reads alone need not (the store serializes its connection)."""
        self.counters.requests += 1
        self.counters.in_flight += 1
        try:

            def run() -> Any:
                if not exclusive:
                    return work()
                with self._lock:
                    return work()

            result = await anyio.to_thread.run_sync(run, limiter=self.limiter)
            self.counters.queries += count
            return result
        except RagkitError as error:
            self.counters.errors += 1
            raise as_api_error(error) from error
        except ApiError:
            self.counters.errors += 1
            raise
        finally:
            self.counters.in_flight -= 1

    def _query_now(
        self,
        texts: list[str],
        k: int,
        mode: str | None,
        where: Any,
        collection: str,
        rerank: bool | str | None,
    ) -> Answer:
        started = time.perf_counter()
        alias = self.alias_for(collection)
        modes = self.workspace.available_modes(alias)
        used = mode or ("hybrid" if "hybrid" in modes else "dense")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DegradedSearchWarning)
            seen = self._generation(alias)
            for _ in range(3):
                results = self.workspace.query_many(
                    texts, k=k, where=where, mode=mode, rerank=rerank, alias=alias
                )
                # A writer that commits between the index read and the row fetch deletes rows
                # the hits point at, and the Searcher drops those hits: a short answer from a
                # generation that moved is asked again, from the new one.
                now = self._generation(alias)
                if now == seen or all(len(hits) == k for hits in results):
                    break
                seen = now
        notes = [str(w.message) for w in caught if issubclass(w.category, DegradedSearchWarning)]
        return Answer(
            hits=[[hit_json(hit) for hit in hits] for hits in results],
            mode=used,
            alias=alias,
            warnings=notes,
            took_ms=(time.perf_counter() - started) * 1000,
        )

    def _generation(self, alias: str) -> tuple[str | None, int]:
        store = self.workspace.store
        name = store.resolve_alias(alias) or alias  # an alias, or a collection named directly
        record = store.collection(name)
        return name, record.generation if record else -1

    def alias_for(self, name: str) -> str:
        """An alias as given, or the alias that points at collection ``name`` (so a migration's
        swap is seen by the next request), or a collection without an alias by its own name
        (a shadow being built, to compare before a cutover)."""
        store = self.workspace.store
        aliases = store.aliases()
        if name in aliases:
            return name
        pointing = sorted(alias for alias, target in aliases.items() if target == name)
        if pointing:
            return pointing[0]
        names = [record.name for record in store.collections()]
        if not aliases and not names:
            return name  # an empty workspace: its own error says to run `ragkit ingest`
        if name in names:
            return name
        known = ", ".join(sorted({*aliases, *names}))
        raise ApiError(
            404, "unknown_collection", f"no alias or collection named {name!r}; known: {known}"
        )

    def collections(self) -> list[dict[str, Any]]:
        store = self.workspace.store
        aliases = store.aliases()
        out = []
        for record in store.collections():
            names = sorted(alias for alias, target in aliases.items() if target == record.name)
            out.append(
                {
                    "name": record.name,
                    "aliases": names,
                    "generation": record.generation,
                    "dim": record.dim,
                    "encoder": record.encoder.get("name"),
                    "backend": record.backend,
                    "sparse": record.sparse.get("kind", ""),
                    "state": record.state,
                    "modes": self.workspace.available_modes(names[0]) if names else [],
                }
            )
        return out


def hit_json(hit: Hit) -> dict[str, Any]:
    out = asdict(hit)
    out["headings"] = list(hit.headings)
    return out
