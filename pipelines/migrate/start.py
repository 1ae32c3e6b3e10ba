"""``ragkit migrate plan/start/resume/status``: the plan, the job that creates and backfills
the shadow (resumed when one is open), and the read-only status."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ragkit.errors import WorkspaceError
from ragkit.pipelines._runner import job
from ragkit.store_migrations import MigrationRecord
from ragkit.workspace import Workspace

from .backfill import Backfill
from .common import aliased, refuse_running_backfill, running_backfill
from .gate import eval_set, evaluate_gate, store_eval_set
from .plan import MigrationPlan, make_plan
from .target import resolve_target

__all__ = ["migration_status", "plan_migration", "start"]


def plan_migration(
    workspace: Workspace,
    *,
    alias: str = "default",
    to: str | None = None,
    chunking: dict[str, Any] | None = None,
    index: dict[str, Any] | None = None,
    sparse: str | None = None,
    sample: bool = True,
) -> MigrationPlan:
    """What a migration of ``alias`` would change and cost. Writes nothing."""
    source = aliased(workspace, alias)
    target = resolve_target(workspace, source, to, chunking=chunking, index=index, sparse=sparse)
    return make_plan(workspace, source, target, alias=alias, sample=sample)


def start(
    workspace: Workspace,
    *,
    alias: str = "default",
    to: str | None = None,
    chunking: dict[str, Any] | None = None,
    index: dict[str, Any] | None = None,
    sparse: str | None = None,
    batch_chunks: int = 2048,
    queries: Path | None = None,
    qrels: Path | None = None,
    wait: float = 0.0,
    progress: Any = None,
    max_batches: int | None = None,
    resume_only: bool = False,
) -> dict[str, Any]:
    """Create the shadow collection (state ``building``) and backfill it; or, when the alias
    has a migration in backfill already, resume it. ``max_batches`` stops early (tests and
    step-by-step runs); ``resume_only`` refuses to start a new migration."""
    store = workspace.store
    params = {"alias": alias, "to": to, "chunking": chunking, "index": index, "sparse": sparse}
    params |= {"batch_chunks": batch_chunks, "resume_only": resume_only}
    with job(workspace, "migrate", params, wait=wait) as run:
        refuse_running_backfill(workspace, run.run_id)
        migration = store.open_migration(alias)
        resumed = migration is not None
        if migration is None:
            if resume_only:
                raise WorkspaceError(f"alias {alias!r} has no migration to resume")
            source = aliased(workspace, alias)
            target = resolve_target(
                workspace, source, to, chunking=chunking, index=index, sparse=sparse
            )
            plan = make_plan(workspace, source, target, alias=alias, sample=False)
            if plan.empty:
                raise WorkspaceError(
                    f"collection {source.name!r} already has that spec: nothing to migrate"
                )
            assert plan.record is not None
            with store.transaction():
                store.put_collection(plan.record)
                migration = store.add_migration(
                    alias, source.name, plan.target, {**plan.to_dict(), "to": to}
                )
        elif to is not None and migration.plan.get("to") != to:
            raise WorkspaceError(
                f"alias {alias!r} has migration #{migration.id} open, to "
                f"{migration.plan.get('to') or 'ragkit.toml'}; resume it with `ragkit migrate "
                "resume`, or drop it with `ragkit migrate abort` first"
            )
        if queries is not None or qrels is not None:
            if queries is None or qrels is None:
                raise WorkspaceError("give --queries and --qrels together")
            store_eval_set(workspace, queries, qrels)
        if migration.state == "backfilling":
            stats = Backfill(
                workspace,
                migration,
                run,
                batch_chunks=batch_chunks,
                progress=progress,
                max_batches=max_batches,
            ).run_all()
        else:
            stats = migration.stats
        migration = store.migration(migration.id) or migration
        result = {
            "migration": migration.id,
            "alias": alias,
            "source": migration.source,
            "target": migration.target,
            "state": migration.state,
            "resumed": resumed,
            **stats,
        }
        run.outcome(True, result)
    return result


def migration_status(
    workspace: Workspace,
    *,
    alias: str = "default",
    queries: Path | None = None,
    qrels: Path | None = None,
    evaluate: bool = False,
) -> dict[str, Any]:
    """Progress, rate, ETA, the adapter's measured quality and, with ``evaluate`` (once the
    shadow is complete), old vs new on the workspace's evaluation queries. Reads only."""
    store = workspace.store
    migration = store.open_migration(alias)
    if migration is None:
        done = [m for m in store.migrations(limit=5) if m.alias == alias]
        return {"alias": alias, "open": None, "recent": [_brief(m) for m in done]}
    source, target = workspace.collection(migration.source), workspace.collection(migration.target)
    stats = migration.stats
    documents = store.counts()["documents"]
    left = store.count_documents_after(migration.cursor) if migration.state == "backfilling" else 0
    rate = (
        stats.get("encoded", 0) / stats["encode_seconds"] if stats.get("encode_seconds") else None
    )
    chunk_rate = stats.get("chunks", 0) / stats["seconds"] if stats.get("seconds") else None
    per_document = stats.get("chunks", 0) / max(1, stats.get("documents", 0))
    eta = None
    if left and chunk_rate:
        eta = left * per_document / chunk_rate
    out: dict[str, Any] = {
        "alias": alias,
        "open": _brief(migration),
        "documents": documents,
        "documents_left": left,
        "progress": 1.0 if not documents else (documents - left) / documents,
        "shadow_chunks_added": stats.get("chunks", 0),
        "store_chunks": store.count_chunks(target.chunking_fp) if target else 0,
        "encode_rate": rate,
        "backfill_rate": chunk_rate,
        "eta_seconds": eta,
        "adapter": migration.adapter or None,
        "gate": migration.gate or None,
        "running": running_backfill(workspace),
        "source_state": source.state if source else "gone",
        "target_state": target.state if target else "gone",
    }
    if evaluate and migration.state != "backfilling" and source and target:
        judged = eval_set(workspace, queries, qrels)
        out["evaluation"] = evaluate_gate(
            workspace, source.name, target.name, judged=judged
        ).to_dict()
    return out


def _brief(migration: MigrationRecord) -> dict[str, Any]:
    return {
        "id": migration.id,
        "state": migration.state,
        "source": migration.source,
        "target": migration.target,
        "to": migration.plan.get("to"),
        "changes": [
            f"{c['field']}: {c['source']!r} → {c['target']!r}"
            for c in migration.plan.get("changes", [])
        ],
        "created": migration.created,
        "updated": migration.updated,
    }
