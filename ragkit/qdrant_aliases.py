"""Store aliases followed by Qdrant aliases, for clients that read Qdrant directly.

The store's ``aliases`` table is the truth: queries through ragkit resolve it. A collection on
a Qdrant server (``index.qdrant_url``) or in a shared embedded folder (``index.qdrant_path``)
can also be read without ragkit, by its Qdrant collection name or through a Qdrant alias.
:func:`follow_store_aliases` makes each such Qdrant instance hold, for every store alias whose
collection lives there, a Qdrant alias of the same name pointing at that collection's Qdrant
collection (one atomic ``update_aliases`` call), and drops such an alias when the store alias
moved to a collection elsewhere.

A migration's cutover and rollback call it right after their store transaction, so the swap
is one store transaction plus one Qdrant alias operation. A crash between the two leaves
Qdrant behind; the next writer job (the job runner calls this at its start) or
``ragkit doctor --repair`` puts it right.

A collection in its default embedded folder (``collections/<name>/qdrant``) is skipped:
nothing but ragkit opens that folder.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from ragkit.errors import AliasSyncWarning
from ragkit.indexes import SupportsAliases, close_index

if TYPE_CHECKING:
    from ragkit.workspace import Workspace

__all__ = ["follow_store_aliases", "follow_store_aliases_or_warn"]


def follow_store_aliases(workspace: Workspace) -> list[str]:
    """Point the Qdrant aliases where the store's aliases point; returns what was changed
    (``"alias 'default' -> 'docs-v2' on http://..."``)."""
    from ragkit.collection import Collection

    places: dict[str, list[Any]] = {}
    for record in workspace.store.collections():
        config = record.spec.index.config()
        place = config.qdrant_url or config.qdrant_path
        if place and record.dim:
            places.setdefault(place, []).append(record)
    changes: list[str] = []
    store_aliases = workspace.store.aliases()
    for place, records in places.items():
        opened = [Collection(workspace.store, workspace.root, r).load_dense() for r in records]
        try:
            held = {r.name: i for r, i in zip(records, opened, strict=True)}
            if not all(isinstance(i, SupportsAliases) for i in held.values()):
                continue  # a backend without aliases, configured with a Qdrant location
            changes += _follow(place, held, store_aliases)
        finally:
            for index in opened:
                close_index(index)
    return changes


def follow_store_aliases_or_warn(workspace: Workspace) -> list[str]:
    """:func:`follow_store_aliases` where the store has already moved (a cutover committed):
    a Qdrant that cannot be reached must not turn that into a failure. It is put right later,
    so it is reported as a warning saying how."""
    try:
        return follow_store_aliases(workspace)
    except Exception as exc:
        warnings.warn(
            f"{workspace.root}: the store's aliases moved, but Qdrant's could not follow "
            f"({type(exc).__name__}: {exc}); queries through ragkit already use the new "
            "collection, and the next writer job or `ragkit doctor --repair` updates the "
            "Qdrant alias",
            AliasSyncWarning,
            stacklevel=2,
        )
        return []


def _follow(place: str, held: dict[str, Any], store_aliases: dict[str, str]) -> list[str]:
    some = next(iter(held.values()))
    ours = {index.collection for index in held.values()}
    present = some.aliases()
    changes = []
    for alias, target in sorted(store_aliases.items()):
        wanted = held[target].collection if target in held else None
        if wanted == alias:
            continue  # the collection itself has that name: readers find it already
        if wanted is not None and present.get(alias) != wanted:
            some.set_alias(alias, wanted)
            changes.append(f"Qdrant alias {alias!r} -> {wanted!r} on {place}")
        elif wanted is None and present.get(alias) in ours:
            some.remove_alias(alias)  # the store alias moved to a collection elsewhere
            changes.append(f"Qdrant alias {alias!r} removed on {place}")
    return changes
