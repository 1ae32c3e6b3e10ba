"""``ragkit migrate adapter``: fit a query adapter that maps the new model's query vectors into
the live collection's space, measure it, and let it serve while the backfill runs.

For when the old encoder can no longer encode queries (a provider switched the model off) or
the user wants the new model's queries early. Fitting pairs are texts embedded by both models:
the live collection's chunks whose vectors the cache holds for both encoders (the backfill
caches the new ones; nothing is encoded again for them), plus, while the old encoder still
works, generated queries encoded by each model with its own query prompt (so an adapter fitted
on documents alone does not fail quietly where query and document prompts differ).

Before it may serve, the adapter is measured on held-out generated queries: recall@10 of the
adapter-served search over the old vectors relative to the new model's own search over the new
vectors of the same chunks. Below the threshold (default 0.95) it is refused with the figure.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import numpy as np

from ragkit.collection import Collection
from ragkit.errors import MigrationRefusedError, WorkspaceError
from ragkit.pipelines._runner import job
from ragkit.store_migrations import MigrationRecord
from ragkit.workspace import Workspace

from .gate import generated_queries

__all__ = ["adapter_path", "fit_query_adapter", "stop_adapter"]

_MAX_CORPUS = 30_000


def adapter_path(workspace: Workspace, migration: MigrationRecord, kind: str) -> Path:
    return workspace.root / "migrations" / str(migration.id) / f"adapter-{kind}.npz"


def fit_query_adapter(
    workspace: Workspace,
    *,
    alias: str = "default",
    kind: str = "procrustes",
    sample: int = 20_000,
    queries: int = 300,
    query_pairs: int = 1000,
    threshold: float = 0.95,
    serve: bool = False,
    force: bool = False,
    seed: int = 0,
    wait: float = 0.0,
) -> dict[str, Any]:
    from ragkit.migration.adapters import adapter_recall, fit_adapter, save_adapter
    from ragkit.migration.quality import relative_recall

    store = workspace.store
    params = {"alias": alias, "kind": kind, "sample": sample, "serve": serve, "force": force}
    with job(workspace, "migrate-adapter", params, wait=wait) as run:
        migration = store.open_migration(alias)
        if migration is None:
            raise WorkspaceError(f"alias {alias!r} has no open migration to fit an adapter for")
        if serve and migration.state not in ("backfilling", "ready"):
            raise WorkspaceError(
                f"migration #{migration.id} is {migration.state}: an adapter serves the live "
                "collection only while its shadow is built (it can still be measured)"
            )
        source = _collection(workspace, migration.source)
        target = _collection(workspace, migration.target)
        old, new, hashes = _document_pairs(workspace, source, target)
        if len(old) < 2:
            raise MigrationRefusedError(
                f"only {len(old)} chunks are embedded by both models yet; let the backfill run "
                "further (`ragkit migrate status`)"
            )
        rng = random.Random(seed)
        order = list(range(len(old)))
        rng.shuffle(order)
        fit_rows = np.array(sorted(order[:sample]), dtype=np.int64)
        held_texts, relevant, pair_texts = _held_out(
            workspace, source, hashes, queries, query_pairs, seed
        )
        if not held_texts:
            raise MigrationRefusedError(
                "no held-out query could be generated from the chunks both models embed yet; "
                "let the backfill run further"
            )
        target_encoder = workspace.encoder_for(target)
        held = np.asarray(target_encoder.encode_queries(held_texts), dtype=np.float32)
        fit_old, fit_new = old[fit_rows], new[fit_rows]
        extra = _query_pairs(workspace, source, target, pair_texts)
        if extra is not None:
            fit_old = np.vstack([fit_old, extra[0]])
            fit_new = np.vstack([fit_new, extra[1]])
        adapter = fit_adapter(kind, fit_new, fit_old, seed=seed)
        corpus = np.array(sorted(set(order[:_MAX_CORPUS]) | set(relevant)), dtype=np.int64)
        position = {int(row): i for i, row in enumerate(corpus)}
        served_recall, new_recall, recall = relative_recall(
            adapter,
            queries_new=held,
            relevant=np.array([position[r] for r in relevant]),
            docs_new=new[corpus],
            docs_old=old[corpus],
            k=10,
        )
        agreement = adapter_recall(
            adapter, queries_new=held, docs_new=new[corpus], docs_old=old[corpus], k=10
        )
        started = time.perf_counter()
        adapter(held[:1])
        path = adapter_path(workspace, migration, kind)
        save_adapter(adapter, path)
        serving = serve and (recall >= threshold or force)
        info = {
            "kind": kind,
            "path": str(path.relative_to(workspace.root)),
            "relative_recall_at_10": recall,
            "served_recall_at_10": served_recall,
            "new_recall_at_10": new_recall,
            "agreement_at_10": agreement,
            "threshold": threshold,
            "fit_pairs": len(fit_old),
            "query_pairs": 0 if extra is None else len(extra[0]),
            "held_out_queries": len(held),
            "corpus": len(corpus),
            "fit_seconds": adapter.fit_seconds,
            "apply_us": (time.perf_counter() - started) * 1e6,
            "serving": serving,
            "forced": serving and recall < threshold,
        }
        store.update_migration(migration.id, adapter=info)
        run.outcome(True, info)
    if serve and not serving:
        raise MigrationRefusedError(
            f"the {kind} adapter keeps {recall:.3f} of the new model's recall@10 "
            f"({served_recall:.3f} of {new_recall:.3f}) on {len(held)} held-out queries, below "
            f"the threshold {threshold:.2f}; it does "
            "not serve. Try --kind mlp or affine, a larger --sample once more of the backfill "
            "is done, or --force"
        )
    return info


def stop_adapter(workspace: Workspace, *, alias: str = "default", wait: float = 0.0) -> None:
    with job(workspace, "migrate-adapter", {"alias": alias, "stop": True}, wait=wait):
        migration = workspace.store.open_migration(alias)
        if migration is None or not migration.adapter:
            raise WorkspaceError(f"alias {alias!r} has no query adapter")
        workspace.store.update_migration(
            migration.id, adapter={**migration.adapter, "serving": False}
        )


def _collection(workspace: Workspace, name: str) -> Collection:
    found = workspace.collection(name)
    if found is None or found.name != name:
        raise WorkspaceError(f"collection {name!r} is gone")
    return found


def _held_out(
    workspace: Workspace,
    source: Collection,
    hashes: list[str],
    queries: int,
    query_pairs: int,
    seed: int,
) -> tuple[list[str], list[int], list[str]]:
    """Generated queries whose chunk both models embed (held out, with that chunk's row as
    the one to find) and, apart from them, generated queries to fit on."""
    row_of = {h: i for i, h in enumerate(hashes)}
    hash_of = {i: h for i, h, _ in workspace.store.chunk_hashes(source.chunking_fp)}
    pool, _ = generated_queries(workspace, source.name, n=queries * 2 + query_pairs, seed=seed)
    held, relevant, rest = [], [], []
    for qid, text in pool.items():
        row = row_of.get(hash_of.get(int(qid[1:]), ""))
        if row is not None and len(held) < queries:
            held.append(text)
            relevant.append(row)
        else:
            rest.append(text)
    return held, relevant, rest[:query_pairs]


def _document_pairs(
    workspace: Workspace, source: Collection, target: Collection
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Vectors of the same texts by the old and the new encoder, from the cache, and the
    texts' hashes, row by row."""
    store = workspace.store
    hashes = sorted({h for _, h, _ in store.chunk_hashes(source.chunking_fp)})
    old = store.cached_vectors(hashes, source.record.model_fp, source.record.dim)
    new = store.cached_vectors(sorted(old), target.record.model_fp, target.record.dim)
    both = sorted(new)
    if not both:
        return np.zeros((0, source.record.dim), np.float32), np.zeros((0, 1), np.float32), []
    return (
        np.stack([old[h] for h in both]).astype(np.float32),
        np.stack([new[h] for h in both]).astype(np.float32),
        both,
    )


def _query_pairs(
    workspace: Workspace, source: Collection, target: Collection, texts: list[str]
) -> tuple[np.ndarray, np.ndarray] | None:
    """Generated queries (none of the held-out ones) encoded by both models with their own
    query prompts, while the old encoder still loads and answers; None when it does not."""
    if not texts:
        return None
    try:
        old = np.asarray(workspace.encoder_for(source).encode_queries(texts), dtype=np.float32)
    except Exception:  # the old model is gone: documents alone fit the adapter
        return None
    new = np.asarray(workspace.encoder_for(target).encode_queries(texts), dtype=np.float32)
    return old, new
