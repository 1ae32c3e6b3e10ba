"""What ``ragkit status`` and ``ragkit collections`` show: counts, sources, and each
collection with its state, aliases, spec summary, size on disk and drift.

Drift is ragkit.toml disagreeing with a collection's stored spec on a setting that would
change its vectors or chunks. It is reported field by field and never applied: the collection
keeps its own settings until a migration moves it to new ones. Reading writes nothing and
loads no encoder.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragkit.collection import Collection
from ragkit.collection_spec import MIGRATION_HINT, Drift, spec_drift

if TYPE_CHECKING:
    from ragkit.collection_parts import CheckedSource
    from ragkit.store import Store

__all__ = ["alias_history", "collection_drift", "collection_summary", "workspace_status"]


def workspace_status(workspace: CheckedSource) -> dict[str, Any]:
    store = workspace.store
    aliases = store.aliases()
    collections = [
        collection_summary(workspace, Collection(store, workspace.root, record), aliases)
        for record in store.collections()
    ]
    return {
        "workspace": str(workspace.root),
        "counts": store.counts(),
        "sources": store.sources(),
        "collections": collections,
        "runs": store.runs(limit=1),
        "migrations": [
            {
                "id": m.id,
                "alias": m.alias,
                "state": m.state,
                "source": m.source,
                "target": m.target,
                "adapter_serving": m.serving_adapter,
            }
            for m in store.open_migrations()
        ],
    }


def alias_history(store: Store, alias: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """The moves of every alias (or of ``alias``), newest first: when (epoch seconds ``at``),
    which alias, from which collection (None: the alias was new) to which, and why: ``set``
    (``set_alias``, the first ingest), or a migration's cutover or rollback. Each move is
    written by ``store.set_alias`` in the transaction that makes it; a store older than
    schema 5 has none."""
    return [
        {
            "at": move.at,
            "alias": move.alias,
            "from": move.previous,
            "to": move.collection,
            "reason": move.reason,
        }
        for move in store.alias_history(alias, limit)
    ]


def collection_drift(workspace: CheckedSource, collection: Collection) -> list[Drift]:
    """Only building and live collections are compared: a retired one is kept as it was,
    and the shadow of an open migration differs from ragkit.toml on purpose (the cutover
    writes its settings there)."""
    if collection.state == "retired":
        return []
    if any(m.target == collection.name for m in workspace.store.open_migrations()):
        return []
    given = workspace.loaded_encoder  # an encoder in memory stands for [encoder]
    fingerprint = given.fingerprint if given is not None else None
    return spec_drift(collection.record.spec, workspace.config, encoder_fp=fingerprint)


def collection_summary(
    workspace: CheckedSource, collection: Collection, aliases: dict[str, str]
) -> dict[str, Any]:
    record = collection.record
    spec = record.spec
    files = list(collection.dir.glob(f"*.g{record.generation:06d}.*"))
    drift = collection_drift(workspace, collection)
    return {
        "name": record.name,
        "state": record.state,
        "aliases": sorted(a for a, target in aliases.items() if target == record.name),
        "encoder": spec.encoder.name or record.encoder.get("name"),
        "fingerprint": record.model_fp,
        "dim": record.dim,
        "chunks": workspace.store.count_chunks(collection.chunking_fp),
        "chunking": {
            "fingerprint": collection.chunking_fp,
            "max_tokens": spec.chunking.max_tokens,
            "overlap_tokens": spec.chunking.overlap_tokens,
        },
        "backend": spec.index.backend,
        "index": spec.index.kind,
        "document_vectors": spec.index.document_vectors,
        "sparse": record.sparse.get("kind", ""),
        "generation": record.generation,
        "index_bytes": sum(_size(path) for path in files),
        "spec": spec.to_dict(),
        "drift": [
            {"field": d.field, "collection": d.live, "ragkit.toml": d.configured} for d in drift
        ],
        "drift_hint": MIGRATION_HINT if drift else "",
    }


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size
