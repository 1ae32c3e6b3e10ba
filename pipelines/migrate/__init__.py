"""``ragkit migrate``: move a live collection onto a new encoder, chunking, index kind or sparse
channel with no downtime — plan, shadow backfill, query adapter, evaluation gate, atomic
cutover, rollback, finalize. See docs/migrate.md."""

from ragkit.pipelines.migrate.adapter import fit_query_adapter, stop_adapter
from ragkit.pipelines.migrate.gate import GateResult, evaluate_gate
from ragkit.pipelines.migrate.lifecycle import abort, cutover, finalize, rollback
from ragkit.pipelines.migrate.plan import MigrationPlan
from ragkit.pipelines.migrate.start import migration_status, plan_migration, start

__all__ = [
    "GateResult",
    "MigrationPlan",
    "abort",
    "cutover",
    "evaluate_gate",
    "finalize",
    "fit_query_adapter",
    "migration_status",
    "plan_migration",
    "rollback",
    "start",
    "stop_adapter",
]
