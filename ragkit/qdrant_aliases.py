"""Store aliases followed by Qdrant aliases, for clients that read Qdrant directly.

The store's ``aliases`` table is the truth: queries through ragkit resolve it. A collection on
a Qdrant server (``index.qdrant_url``) or in a shared embedded folder (``index.qdrant_path``)
can also be read without ragkit, by its Qdrant collection name or through a Qdrant alias.
:func:`follow_store_aliases` makes each such Qdrant instance hold, for every store alias whose
collection lives there, a Qdrant alias named ``[index] qdrant_alias_prefix`` + the store
alias's name, pointing at that collection's Qdrant collection (one atomic ``update_aliases``
call per change), and drops such an alias when the store alias moved to a collection
elsewhere or the prefix changed.

Several workspaces may share one Qdrant. A workspace owns the Qdrant collections of its own
collections (their names in its store), and it never repoints or removes a Qdrant alias that
points at a collection it does not own: that is an :class:`AliasConflict`, a warning in a job
and a problem in ``ragkit doctor``, fixed by giving each workspace its own prefix. The names it
mirrored are recorded in the store (meta ``qdrant_aliases``), so that a new prefix removes the
aliases of the old one.

A migration's cutover and rollback call it right after their store transaction, so the swap
is one store transaction plus one Qdrant alias operation. A crash between the two leaves
Qdrant behind; the next writer job (the job runner calls this at its start) or
``ragkit doctor --repair`` puts it right. :func:`plan_store_aliases` computes the same
changes without making them (``ragkit doctor``).

A collection in its default embedded folder (``collections/<name>/qdrant``) is skipped:
nothing but ragkit opens that folder.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ragkit.errors import AliasConflictWarning, AliasSyncWarning
from ragkit.indexes import SupportsAliases, close_index

if TYPE_CHECKING:
    from ragkit.collection_parts import CollectionSource
    from ragkit.store import Store

__all__ = [
    "AliasConflict",
    "AliasPlan",
    "follow_store_aliases",
    "follow_store_aliases_or_warn",
    "plan_store_aliases",
]

#: store meta key: {Qdrant location: [alias names this workspace made there]}
MIRRORED_KEY = "qdrant_aliases"


@dataclass(frozen=True, slots=True)
class AliasConflict:
    """A Qdrant alias this workspace wants, held by a collection it does not own."""

    alias: str
    place: str
    held_by: str
    wanted: str

    def __str__(self) -> str:
        return (
            f"Qdrant alias {self.alias!r} on {self.place} points at {self.held_by!r}, a "
            f"collection this workspace does not own, so it was not moved to {self.wanted!r}: "
            "another workspace uses that alias name; set [index] qdrant_alias_prefix in "
            'ragkit.toml (e.g. "team-a-") so that this workspace\'s aliases get names of '
            "their own"
        )


@dataclass
class AliasPlan:
    """One Qdrant instance: what its aliases should be and what to change to get there.

    ``owner`` maps this workspace's Qdrant collections there to their store collections;
    ``wanted`` and ``present`` map alias names to Qdrant collections."""

    place: str
    owner: dict[str, str]
    wanted: dict[str, str]
    present: dict[str, str]
    recorded: set[str] = field(default_factory=set)
    moves: dict[str, str] = field(default_factory=dict)
    removals: list[str] = field(default_factory=list)
    conflicts: list[AliasConflict] = field(default_factory=list)

    def changes(self) -> list[str]:
        return [
            *(f"Qdrant alias {a!r} -> {c!r} on {self.place}" for a, c in self.moves.items()),
            *(f"Qdrant alias {a!r} removed on {self.place}" for a in self.removals),
        ]


@dataclass
class Followed:
    """What :func:`follow_store_aliases` changed, and the aliases it left to their owner."""

    changes: list[str] = field(default_factory=list)
    conflicts: list[AliasConflict] = field(default_factory=list)


def plan_store_aliases(source: CollectionSource) -> list[AliasPlan]:
    """What :func:`follow_store_aliases` would change on each Qdrant instance; writes nothing."""
    with _opened(source) as places:
        return [plan for plan, _ in places]


def follow_store_aliases(source: CollectionSource) -> Followed:
    """Point the Qdrant aliases where the store's aliases point (``changes`` reads
    ``"Qdrant alias 'default' -> 'docs-v2' on http://..."``)."""
    followed = Followed()
    with _opened(source) as places:
        for plan, index in places:
            for alias, collection in plan.moves.items():
                index.set_alias(alias, collection)
            for alias in plan.removals:
                index.remove_alias(alias)
            followed.changes += plan.changes()
            followed.conflicts += plan.conflicts
        held = {p.place: sorted(set(p.wanted) - {c.alias for c in p.conflicts}) for p, _ in places}
        _record(source.store, held)
    return followed


def follow_store_aliases_or_warn(source: CollectionSource) -> list[str]:
    """:func:`follow_store_aliases` where the store has already moved (a cutover committed):
    a Qdrant that cannot be reached must not turn that into a failure. It is put right later,
    so it is reported as a warning saying how; so is each alias left to another workspace."""
    try:
        followed = follow_store_aliases(source)
    except Exception as exc:
        warnings.warn(
            f"{source.root}: the store's aliases moved, but Qdrant's could not follow "
            f"({type(exc).__name__}: {exc}); queries through ragkit already use the new "
            "collection, and the next writer job or `ragkit doctor --repair` updates the "
            "Qdrant alias",
            AliasSyncWarning,
            stacklevel=2,
        )
        return []
    for conflict in followed.conflicts:
        warnings.warn(f"{source.root}: {conflict}", AliasConflictWarning, stacklevel=2)
    return followed.changes


@contextmanager
def _opened(source: CollectionSource) -> Iterator[list[tuple[AliasPlan, Any]]]:
    """Each Qdrant instance's plan, with one of its indexes open to apply it through."""
    from ragkit.collection import Collection

    places: dict[str, list[Any]] = {}
    for record in source.store.collections():
        config = record.spec.index.config()
        place = config.qdrant_url or config.qdrant_path
        if place and record.dim:
            places.setdefault(place, []).append(record)
    prefix = source.config.index.qdrant_alias_prefix
    store_aliases = source.store.aliases()
    recorded = _recorded(source.store)
    opened: list[Any] = []
    planned: list[tuple[AliasPlan, Any]] = []
    try:
        for place, records in places.items():
            indexes = [Collection(source.store, source.root, r).load_dense() for r in records]
            opened += indexes
            if not all(isinstance(i, SupportsAliases) for i in indexes):
                continue  # a backend without aliases, configured with a Qdrant location
            owner = {i.collection: r.name for r, i in zip(records, indexes, strict=True)}
            wanted = {
                prefix + alias: collection
                for alias, target in store_aliases.items()
                for collection, name in owner.items()
                if name == target and prefix + alias != collection  # the name finds it already
            }
            plan = AliasPlan(place, owner, wanted, indexes[0].aliases(), recorded.get(place, set()))
            _decide(plan, {prefix + a for a in store_aliases} | set(store_aliases))
            planned.append((plan, indexes[0]))
        yield planned
    finally:
        for index in opened:
            close_index(index)


def _decide(plan: AliasPlan, mirror_names: set[str]) -> None:
    """Fill ``moves``, ``removals`` and ``conflicts``. Removal candidates are the names this
    workspace mirrors or mirrored (recorded, or any store alias's name with or without the
    prefix); only those pointing at a collection of this workspace are touched."""
    for alias, collection in sorted(plan.wanted.items()):
        now = plan.present.get(alias)
        if now == collection:
            continue
        if now is not None and now not in plan.owner:
            plan.conflicts.append(AliasConflict(alias, plan.place, now, collection))
        else:
            plan.moves[alias] = collection
    candidates = (plan.recorded | mirror_names) - set(plan.wanted)
    plan.removals = sorted(a for a in candidates if plan.present.get(a) in plan.owner)


def _recorded(store: Store) -> dict[str, set[str]]:
    text = store.get_meta(MIRRORED_KEY)
    return {place: set(names) for place, names in json.loads(text).items()} if text else {}


def _record(store: Store, mirrored: dict[str, list[str]]) -> None:
    recorded = {place: sorted(names) for place, names in _recorded(store).items()}
    if {**recorded, **mirrored} != recorded:
        store.set_meta(MIRRORED_KEY, json.dumps({**recorded, **mirrored}, sort_keys=True))
