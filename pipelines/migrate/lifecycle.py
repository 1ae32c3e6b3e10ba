"""``ragkit migrate cutover/rollback/finalize/abort``: the steps that move an alias or drop a
collection, each a writer job.

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
import time
from pathlib import Path
from typing import Any

from ragkit.collection import Collection
from ragkit.collection_spec import CollectionSpec
from ragkit.doctor import check_collection
from ragkit.errors import MigrationRefusedError, WorkspaceError
from ragkit.indexes import close_index
from ragkit.indexes.base import Droppable
from ragkit.pipelines._runner import job
from ragkit.qdrant_aliases import follow_store_aliases_or_warn
from ragkit.store_migrations import MigrationRecord
from ragkit.workspace import Workspace

from .common import refuse_running_backfill
from .gate import GateResult, eval_set, evaluate_gate

__all__ = ["abort", "cutover", "finalize", "rollback"]


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
    if isinstance(dense, Droppable):
        dense.drop()
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
