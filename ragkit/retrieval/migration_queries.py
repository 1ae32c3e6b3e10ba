"""What a migration changes in the query path, kept beside :mod:`ragkit.retrieval.search`.

- While a migration's query adapter serves a collection (``store.adapter_serving``), that
  collection's dense queries are encoded by the shadow's model and mapped into its space by
  the fitted adapter (``ragkit/migration/``), so the collection answers even when its own model
  can no longer be loaded.
- Once a migration is complete (ready, cut over, rolled back), the encoder a cutover or
  rollback would switch to is loaded in the background, so the first query after the switch
  pays no model load (seconds for a large model).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragkit.errors import WorkspaceError

if TYPE_CHECKING:
    from ragkit.collection import Collection
    from ragkit.collection_parts import CollectionSource

__all__ = ["QueryEncoding"]

#: seconds between two looks for a migration whose other side should be loaded ahead
WARM_EVERY = 5.0


class QueryEncoding:
    """Query vectors for a collection: its own encoder, or a serving adapter's mapping."""

    def __init__(self, source: CollectionSource) -> None:
        self.source = source
        self._adapters: dict[str, tuple[int, Any]] = {}
        self._warm_checked = -WARM_EVERY
        self._warming: set[str] = set()

    def needs_own_encoder(self, collection: Collection) -> bool:
        """False while an adapter serves the collection: the new model encodes its queries."""
        return self.source.store.adapter_serving(collection.name) is None

    def encode(self, collection: Collection, texts: list[str]) -> np.ndarray:
        source = self.source
        migration = source.store.adapter_serving(collection.name)
        if migration is None:
            return source.encoder_for(collection).encode_queries(texts)
        target = source.collection(migration.target)
        if target is None or target.name != migration.target:
            raise WorkspaceError(f"the query adapter's collection {migration.target!r} is gone")
        adapter = self._adapter(source.root / migration.adapter["path"])
        return adapter(np.asarray(source.encoder_for(target).encode_queries(texts)))

    def _adapter(self, path: Path) -> Any:
        key = str(path)
        stamp = path.stat().st_mtime_ns if path.exists() else 0
        cached = self._adapters.get(key)
        if cached is None or cached[0] != stamp:
            from ragkit.migration.adapters import load_adapter

            cached = self._adapters[key] = (stamp, load_adapter(path))
        return cached[1]

    def warm_the_other_side(self, alias: str, collection: Collection) -> None:
        """Checked at most every :data:`WARM_EVERY` seconds; the load runs on its own thread."""
        now = time.monotonic()
        if now - self._warm_checked < WARM_EVERY:
            return
        self._warm_checked = now
        migration = self.source.store.open_migration(alias)
        if migration is None or migration.state == "backfilling":
            return
        other = migration.target if collection.name == migration.source else migration.source
        found = self.source.collection(other)
        if found is None or other in self._warming:
            return
        self._warming.add(other)

        def load() -> None:
            try:
                self.source.warm_encoder(found)
            finally:
                self._warming.discard(other)

        threading.Thread(target=load, name=f"warm-{other}", daemon=True).start()
