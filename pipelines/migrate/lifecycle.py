"""``ragkit migrate start/resume/status/cutover/rollback/finalize/abort``: the migration's
steps, each a writer job (``status`` only reads).

Cutover and rollback are one store transaction each: the alias moves and the collection it
left becomes ``retired`` (still kept in step by every ingest, so a rollback is instant, makes
no encoder call and loses no update); queries resolve the alias once, so each answers wholly
from one collection with its own encoder. ragkit.toml's encoder, chunking, index and sparse
settings are then written to match the collection that answers, so the workspace shows no
drift and new collections are seeded from it.
"""

from __future__ import annotations

import dataclasses
import shutil
import socket
import time
from pathlib import Path
from typing import Any

from ragkit.collection import Collection
from ragkit.collection_spec import CollectionSpec
from ragkit.doctor import check_collection
from ragkit.errors import MigrationRefusedError, WorkspaceError
from ragkit.indexes import close_index
from ragkit.pipelines._runner import job, process_alive
from ragkit.qdrant_aliases import follow_store_aliases_or_warn
from ragkit.store_migrations import MigrationRecord
from ragkit.workspace import Workspace

from .backfill import Backfill
from .gate import GateResult, eval_set, evaluate_gate, store_eval_set
from .plan import MigrationPlan, make_plan
from .target import resolve_target

__all__ = [
    "abort",
    "cutover",
    "finalize",
    "migration_status",
    "plan_migration",
    "rollback",
    "start",
]


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
    source = _aliased(workspace, alias)
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
            source = _aliased(workspace, alias)
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
        "shadow_chunks": target.record.generation and _index_size(target),
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


def cutover(
    workspace: Workspace,
    *,
    alias: str = "default",
    queries: Path | None = None,
    qrels: Path | None = None,
    force: bool = False,
    tolerance: float = 0.0,
    wait: float = 0.0,
) -> dict[str, Any]:
    """Move ``alias`` onto the shadow in one transaction, if the shadow is complete, doctor
    clean and not worse on the gate metric (``force`` overrides the gate, never the rest)."""
    store = workspace.store
    params = {"alias": alias, "force": force, "tolerance": tolerance}
    with job(workspace, "migrate-cutover", params, wait=wait) as run:
        refuse_running_backfill(workspace, run.run_id)
        migration = _open(workspace, alias, ("ready", "rolled-back"), "cut over")
        target = _existing(workspace, migration.target)
        report = check_collection(target, workspace.sparse_channel_for(target), [], False)
        if not report.ok:
            problems = "; ".join(f"{c.name}: {c.detail}" for c in report.checks if not c.ok)
            raise MigrationRefusedError(
                f"shadow {target.name!r} does not agree with the store ({problems}); run "
                "`ragkit doctor --repair`, then cut over again"
            )
        gate = evaluate_gate(
            workspace,
            migration.source,
            migration.target,
            judged=eval_set(workspace, queries, qrels),
            tolerance=tolerance,
        )
        gate.forced = force and not gate.passed
        if not gate.passed and not force:
            store.update_migration(migration.id, gate=gate.to_dict())
            raise MigrationRefusedError(
                f"the shadow is worse than the live collection: {gate.describe()}; the alias "
                "stays where it is. Pass --force to cut over anyway"
            )
        started = time.perf_counter()
        with store.transaction():
            store.set_alias(
                alias,
                migration.target,
                reason=f"migration #{migration.id} cutover" + (" (forced)" if gate.forced else ""),
                retire_previous=True,
                allow_retired=True,
            )
            store.update_migration(migration.id, state="cutover", gate=gate.to_dict())
        follow_store_aliases_or_warn(workspace)  # Qdrant aliases too (see qdrant_aliases)
        seconds = time.perf_counter() - started
        _seed_config_from(workspace, target)
        result = _moved(migration, "cutover", seconds, gate)
        run.outcome(True, result)
    return result


def rollback(workspace: Workspace, *, alias: str = "default", wait: float = 0.0) -> dict[str, Any]:
    """Point ``alias`` back at the collection the cutover left (kept in step meanwhile): one
    transaction, no encoder call."""
    store = workspace.store
    with job(workspace, "migrate-rollback", {"alias": alias}, wait=wait) as run:
        migration = _open(workspace, alias, ("cutover",), "roll back")
        source = _existing(workspace, migration.source)
        started = time.perf_counter()
        with store.transaction():
            store.set_alias(
                alias,
                source.name,
                reason=f"migration #{migration.id} rollback",
                retire_previous=True,
                allow_retired=True,
            )
            store.update_migration(migration.id, state="rolled-back")
        follow_store_aliases_or_warn(workspace)
        seconds = time.perf_counter() - started
        _seed_config_from(workspace, source)
        result = _moved(migration, "rolled-back", seconds, None)
        run.outcome(True, result)
    return result


def finalize(
    workspace: Workspace, *, alias: str = "default", drop_cache: bool = False, wait: float = 0.0
) -> dict[str, Any]:
    """Delete the collection a cutover retired: its rows, its files and, with ``drop_cache``,
    its encoder's cached vectors. No rollback after this."""
    params = {"alias": alias, "drop_cache": drop_cache}
    with job(workspace, "migrate-finalize", params, wait=wait) as run:
        migration = _open(workspace, alias, ("cutover",), "finalize")
        removed = _drop(workspace, migration.source, drop_cache)
        workspace.store.update_migration(migration.id, state="finalized")
        result = {"migration": migration.id, "deleted": migration.source, **removed}
        run.outcome(True, result)
    return result


def abort(workspace: Workspace, *, alias: str = "default", wait: float = 0.0) -> dict[str, Any]:
    """Drop the shadow of an open migration that is not cut over; the live one is untouched."""
    with job(workspace, "migrate-abort", {"alias": alias}, wait=wait) as run:
        refuse_running_backfill(workspace, run.run_id)
        migration = _open(workspace, alias, ("backfilling", "ready", "rolled-back"), "abort")
        removed = (
            _drop(workspace, migration.target, drop_cache=False)
            if workspace.store.collection(migration.target)
            else {}
        )
        workspace.store.update_migration(migration.id, state="aborted")
        result = {"migration": migration.id, "deleted": migration.target, **removed}
        run.outcome(True, result)
    return result


# -- helpers ------------------------------------------------------------------------------------
def running_backfill(workspace: Workspace, exclude: int | None = None) -> dict[str, Any] | None:
    """A ``migrate`` job still running (it lets the lock go while it encodes): pid and host.
    A row of this host whose process is gone is a crash, not a running backfill."""
    host = socket.gethostname()
    for row in workspace.store.runs(limit=50, kind="migrate"):
        if row["status"] != "running" or row["run_id"] == exclude:
            continue
        if row.get("host") == host and (
            row.get("pid") is None or not process_alive(int(row["pid"]))
        ):
            continue
        return {"run_id": row["run_id"], "pid": row.get("pid"), "host": row.get("host")}
    return None


def refuse_running_backfill(workspace: Workspace, own_run: int) -> None:
    running = running_backfill(workspace, exclude=own_run)
    if running is not None:
        where = f"pid {running['pid']} on {running['host']}"
        here = running["host"] == socket.gethostname()
        raise WorkspaceError(
            f"a migration backfill is running ({where}, run {running['run_id']}); wait for "
            f"it to finish{', or stop it with Ctrl-C / kill' if here else ''} first"
        )


def _aliased(workspace: Workspace, alias: str) -> Collection:
    source = workspace.collection(alias)
    if source is None:
        raise WorkspaceError(
            f"{workspace.root}: no collection behind {alias!r}; run `ragkit ingest PATH` first"
        )
    return source


def _open(workspace: Workspace, alias: str, states: tuple[str, ...], doing: str) -> MigrationRecord:
    migration = workspace.store.open_migration(alias)
    if migration is None:
        raise WorkspaceError(
            f"alias {alias!r} has no open migration to {doing}; `ragkit migrate start` opens one"
        )
    if migration.state not in states:
        hint = {
            "backfilling": "the backfill is not complete: `ragkit migrate status`, "
            "`ragkit migrate resume`",
            "ready": "it is not cut over",
            "cutover": "it is cut over: `ragkit migrate rollback` first",
            "rolled-back": "it was rolled back: `ragkit migrate cutover` again or abort",
        }.get(migration.state, "")
        raise MigrationRefusedError(
            f"migration #{migration.id} is {migration.state}; cannot {doing} ({hint})"
        )
    return migration


def _existing(workspace: Workspace, name: str) -> Collection:
    record = workspace.store.collection(name)
    if record is None:
        raise WorkspaceError(f"collection {name!r} is gone; `ragkit migrate abort` closes this")
    return Collection(workspace.store, workspace.root, record)


def _drop(workspace: Workspace, name: str, drop_cache: bool) -> dict[str, int]:
    collection = _existing(workspace, name)
    dense = None
    if collection.index_config.backend != "faiss" and collection.record.generation:
        dense = collection.load_dense()  # a Qdrant collection lives outside the folder too
    with workspace.store.transaction():
        removed = workspace.store.delete_collection(name, drop_cache=drop_cache)
    drop = getattr(dense, "drop", None)
    if callable(drop):
        drop()
    if dense is not None:
        close_index(dense)
    shutil.rmtree(collection.dir, ignore_errors=True)
    return removed


def _seed_config_from(workspace: Workspace, collection: Collection) -> None:
    """ragkit.toml's vector settings, written to match the collection that now answers."""
    spec: CollectionSpec = collection.record.spec
    config = workspace.config
    updated = dataclasses.replace(
        config,
        encoder=spec.encoder.config(config.encoder),
        chunking=spec.chunking.config(),
        index=spec.index.config(),
        sparse=spec.sparse.config(config.sparse),
    )
    updated.save(workspace.config_path)
    workspace.config = updated
    workspace.parts.config = updated


def _index_size(collection: Collection) -> int:
    dense = collection.load_dense()
    try:
        return len(dense)
    finally:
        close_index(dense)


def _moved(
    migration: MigrationRecord, state: str, seconds: float, gate: GateResult | None
) -> dict[str, Any]:
    return {
        "migration": migration.id,
        "alias": migration.alias,
        "state": state,
        "live": migration.target if state == "cutover" else migration.source,
        "retired": migration.source if state == "cutover" else migration.target,
        "swap_seconds": seconds,
        "gate": gate.to_dict() if gate else None,
    }


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
