"""``ragkit doctor``'s checks of what a Qdrant holds beyond the points' ids.

- **qdrant aliases**: every store alias of a collection on a Qdrant server or shared embedded
  folder has its Qdrant alias (``[index] qdrant_alias_prefix`` + name) pointing at that
  collection's Qdrant collection, no alias this workspace mirrored is left over, and none it
  wants is held by another workspace's collection (a conflict, which only a prefix resolves).
  The next writer job, or ``ragkit doctor --repair``, fixes all but conflicts.
- **qdrant sparse vectors**: with ``[index] qdrant_sparse`` each point holds the sparse vector
  of the collection's sparse channel (its ``sparse.g….`` file is the record), none missing,
  none stale. Up to :data:`FULL_COMPARE_LIMIT` points are compared in full; beyond that a
  seeded sample of that many, which the report says. ``--repair`` compares in full
  (:func:`compare_sparse`) and commits the missing and stale vectors again.

Both only read, like every doctor check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ragkit.doctor import OK, PROBLEM, SKIPPED, Check
from ragkit.indexes import ReadsSparseVectors, SupportsAliases
from ragkit.indexes.qdrant_common import sparse_rows

if TYPE_CHECKING:
    from ragkit.collection import Collection
    from ragkit.collection_parts import CollectionSource
    from ragkit.qdrant_aliases import AliasPlan
    from ragkit.sparse_channel import SparseChannel

__all__ = [
    "FULL_COMPARE_LIMIT",
    "QDRANT_ALIASES",
    "QDRANT_SPARSE",
    "QdrantAliasChecks",
    "SparseComparison",
    "compare_sparse",
    "qdrant_sparse_check",
]

QDRANT_ALIASES = "qdrant aliases"
QDRANT_SPARSE = "qdrant sparse vectors"
#: points compared one by one at most; a bigger collection is checked on a seeded sample
FULL_COMPARE_LIMIT = 2048
SAMPLE_SEED = 0
_SHOWN = 5  # ids named in a report


class QdrantAliasChecks:
    """The Qdrant aliases of every collection, read once per doctor run."""

    def __init__(self, plans: list[AliasPlan], error: str = "") -> None:
        self.plans = plans
        self.error = error

    @classmethod
    def read(cls, source: CollectionSource) -> QdrantAliasChecks:
        from ragkit.qdrant_aliases import plan_store_aliases

        try:
            return cls(plan_store_aliases(source))
        except Exception as exc:  # an unreachable server, an embedded folder open elsewhere
            return cls([], f"{type(exc).__name__}: {exc}")

    def check(self, collection: Collection) -> Check | None:
        """The collection's aliases (None: it lives in no Qdrant that others read)."""
        config = collection.index_config
        place = config.qdrant_url or config.qdrant_path
        if not place or not collection.record.dim:
            return None
        if self.error:
            return Check(
                QDRANT_ALIASES, SKIPPED, f"cannot read the aliases on {place}: {self.error}"
            )
        plan = next((p for p in self.plans if p.place == place), None)
        if plan is None:
            return None  # a backend without aliases
        return _alias_check(plan, collection.name)


def _alias_check(plan: AliasPlan, name: str) -> Check:
    mine = {qdrant for qdrant, store_name in plan.owner.items() if store_name == name}
    wanted = {a: c for a, c in plan.wanted.items() if c in mine}
    wrong = [
        f"{a!r} "
        + (f"points at {plan.present[a]!r}" if a in plan.present else "is missing")
        + f" instead of {c!r}"
        for a, c in sorted(plan.moves.items())
        if c in mine
    ]
    left = [
        f"{a!r} is left over (a name this workspace no longer mirrors)"
        for a in plan.removals
        if plan.present.get(a) in mine
    ]
    conflicts = [str(c) for c in plan.conflicts if c.wanted in mine]
    counts = {"wrong": len(wrong), "left over": len(left), "conflicts": len(conflicts)}
    if wrong or left or conflicts:
        found = [f"Qdrant alias {what}" for what in [*wrong, *left]]
        if found:
            found.append("run `ragkit doctor --repair` (or the next writer job fixes it)")
        detail = f"on {plan.place}: " + "; ".join([*found, *conflicts])
        return Check(QDRANT_ALIASES, PROBLEM, detail, counts)
    held = ", ".join(f"{a} → {c}" for a, c in sorted(wanted.items())) or "no store alias"
    return Check(QDRANT_ALIASES, OK, f"on {plan.place}: {held}", counts)


@dataclass(frozen=True, slots=True)
class SparseComparison:
    """Points whose Qdrant sparse vector differs from the channel's record."""

    total: int
    checked: int
    missing: np.ndarray
    stale: np.ndarray

    @property
    def sampled(self) -> bool:
        return self.checked < self.total

    def ids(self) -> np.ndarray:
        return np.union1d(self.missing, self.stale)


def compare_sparse(
    index: Any, channel: SparseChannel, sparse_index: Any, *, limit: int | None
) -> SparseComparison:
    """Every point the channel has a vector for (or a seeded sample of ``limit``), against
    what the point holds. Only points that exist count: the dense ids check reports others."""
    expected = np.intersect1d(np.asarray(sparse_index.ids()), np.asarray(index.ids()))
    total = len(expected)
    if limit is not None and total > limit:
        pick = np.random.default_rng(SAMPLE_SEED).choice(total, limit, replace=False)
        expected = expected[np.sort(pick)]
    ids, rows = channel.document_vectors(sparse_index, expected)
    keep = np.isin(ids, expected)
    ids, rows = ids[keep], rows[np.flatnonzero(keep)]
    held = index.sparse_vectors(ids)
    missing, stale = [], []
    for point, want in zip(ids, sparse_rows(rows, len(ids)), strict=True):
        if not len(want[0]):
            continue  # a text of stopwords only: nothing to copy
        have = held.get(int(point))
        if have is None or not len(have[0]):
            missing.append(int(point))
        elif not _same(want, have):
            stale.append(int(point))
    return SparseComparison(
        total, len(expected), np.array(missing, np.int64), np.array(stale, np.int64)
    )


def _same(want: tuple[np.ndarray, np.ndarray], have: tuple[np.ndarray, np.ndarray]) -> bool:
    a, b = np.argsort(want[0]), np.argsort(have[0])
    return np.array_equal(want[0][a], have[0][b]) and np.allclose(
        want[1][a], have[1][b], rtol=1e-5, atol=1e-7
    )


def qdrant_sparse_check(
    collection: Collection,
    channel: SparseChannel | None,
    dense: Any,
    sparse: Any,
    *,
    writer_active: bool = False,
) -> Check | None:
    """The check for a collection with ``qdrant_sparse`` (None for any other). A writer puts
    its next commit's vectors into Qdrant before the store commits it, so while one is at
    work the points may rightly be ahead of the committed file: not checked then."""
    if not collection.index_config.qdrant_sparse or channel is None:
        return None
    if writer_active:
        detail = "a writer is at work; Qdrant may already hold its next commit's vectors"
        return Check(QDRANT_SPARSE, SKIPPED, detail)
    if collection.record.generation == 0:
        return Check(QDRANT_SPARSE, OK, "nothing committed yet")
    if dense is None or sparse is None:
        return Check(QDRANT_SPARSE, SKIPPED, "the dense or the sparse index did not load")
    if not isinstance(dense, ReadsSparseVectors):
        backend = collection.index_config.backend
        return Check(QDRANT_SPARSE, SKIPPED, f"{backend} cannot give its sparse vectors back")
    found = compare_sparse(dense, channel, sparse, limit=FULL_COMPARE_LIMIT)
    how = (
        f"a sample of {found.checked} of {found.total} points (seed {SAMPLE_SEED})"
        if found.sampled
        else f"all {found.total} points"
    )
    counts = {"checked": found.checked, "missing": len(found.missing), "stale": len(found.stale)}
    if not len(found.ids()):
        return Check(QDRANT_SPARSE, OK, f"{how}: the same {channel.kind} vectors", counts)
    parts = [
        f"{len(ids)} {what} (ids {_named(ids)})"
        for what, ids in (("without their sparse vector", found.missing), ("stale", found.stale))
        if len(ids)
    ]
    points = (
        f"Qdrant collection {dense.collection!r}"
        if isinstance(dense, SupportsAliases)
        else f"the {collection.index_config.backend} points"
    )
    detail = (
        f"{points}, {how} compared with the {channel.kind} "
        f"index: {', '.join(parts)}; run `ragkit doctor --repair` to rewrite them"
    )
    return Check(QDRANT_SPARSE, PROBLEM, detail, counts)


def _named(ids: np.ndarray) -> str:
    shown = ", ".join(str(int(i)) for i in ids[:_SHOWN])
    return shown + (" …" if len(ids) > _SHOWN else "")
