"""``[index]`` of ragkit.toml: the dense index backend, its kind and parameters, and a Qdrant
server's cluster settings. Re-exported by :mod:`ragkit.config`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ragkit.errors import ConfigError

__all__ = ["QDRANT_COUNTS", "QDRANT_QUANTIZATIONS", "IndexConfig"]


@dataclass(kw_only=True)
class IndexConfig:
    """Dense index backend (``faiss``, ``qdrant``, ``qdrant-edge``) and type: ``flat`` (exact),
    ``hnsw``, and with FAISS also ``ivfpq`` (+ exact refine), ``int8`` (scalar quantized, 4x
    smaller) or ``binary`` (one bit per dimension, rescored with int8 codes when ``refine``).
    ``refine_k_factor``: candidates per hit that the refine step rescores.

    Qdrant: ``qdrant_url`` selects a server; otherwise an embedded store in the collection's
    folder (``qdrant_path`` to put it elsewhere). The API key is read from the environment
    variable ``qdrant_api_key_env`` names: a key written in ragkit.toml (``qdrant_api_key``)
    is refused, so that no secret reaches the file or the store.

    A Qdrant collection is created with the cluster settings below (a server applies them; local
    mode keeps what it can report, per-vector ``on_disk`` and quantization, and ignores the
    rest, which the spec still records): ``qdrant_shard_number``, ``qdrant_replication_factor``
    and ``qdrant_write_consistency_factor`` (0: the server's default), on-disk vectors and
    payload, and ``qdrant_quantization`` (``none``, ``scalar`` int8, ``binary``, ``product``
    x16) of the dense vectors. ``qdrant_sparse``: the collection's sparse channel (BM25 or
    SPLADE) is also written into the Qdrant collection as its ``sparse`` named vector, so that
    a hybrid query can be fused by Qdrant (``[fusion] server_side``).

    ``qdrant_alias_prefix`` goes in front of every Qdrant alias that mirrors a store alias
    (``"team-a-"``: store alias ``default`` is Qdrant alias ``team-a-default``), so that
    workspaces sharing one Qdrant keep apart. It names the workspace's aliases, not a
    collection's data, so ragkit.toml holds it and no collection spec records it: a cutover
    to a collection of other settings must not rename the alias readers follow.
    """

    backend: str = "faiss"
    kind: str = "flat"
    hnsw_m: int = 32
    hnsw_ef_construction: int = 200
    hnsw_ef_search: int = 128
    ivf_nlist: int = 0
    ivf_nprobe: int = 64
    pq_m: int = 0
    pq_bits: int = 8
    refine: bool = True
    refine_k_factor: int = 10
    qdrant_url: str = ""
    qdrant_path: str = ""
    qdrant_collection: str = ""
    qdrant_api_key_env: str = "QDRANT_API_KEY"
    qdrant_api_key: str = ""  # only to refuse it with a clear message
    qdrant_shard_number: int = 0
    qdrant_replication_factor: int = 0
    qdrant_write_consistency_factor: int = 0
    qdrant_on_disk: bool = False
    qdrant_on_disk_payload: bool = True  # Qdrant's own default
    qdrant_quantization: str = "none"
    qdrant_sparse: bool = False
    qdrant_alias_prefix: str = ""
    #: one vector per document (its title and lead) beside the chunk vectors, fused with the
    #: grouped channels when hits are documents; None: the default for a new collection
    #: (:data:`ragkit.collection_spec.DOCUMENT_VECTORS_DEFAULT`)
    document_vectors: bool | None = None

    def __post_init__(self) -> None:
        if self.qdrant_api_key:
            raise ConfigError(_secret_message("index", "qdrant_api_key", "qdrant_api_key_env"))
        for name in QDRANT_COUNTS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(
                    f"[index] {name} must be an integer >= 0 (0: the Qdrant server's default), "
                    f"got {value!r}"
                )
        for name in ("qdrant_on_disk", "qdrant_on_disk_payload", "qdrant_sparse"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"[index] {name} must be true or false")
        if self.document_vectors is not None and not isinstance(self.document_vectors, bool):
            raise ConfigError(
                f"[index] document_vectors must be true or false, got {self.document_vectors!r}"
            )
        if self.qdrant_quantization not in QDRANT_QUANTIZATIONS:
            raise ConfigError(
                f"[index] qdrant_quantization {self.qdrant_quantization!r} is unknown; use one "
                f"of {list(QDRANT_QUANTIZATIONS)}"
            )
        _check_alias_prefix(self.qdrant_alias_prefix)
        replicas, consistency = self.qdrant_replication_factor, self.qdrant_write_consistency_factor
        if consistency > max(replicas, 1):
            raise ConfigError(
                f"[index] qdrant_write_consistency_factor = {consistency} exceeds "
                f"qdrant_replication_factor = {replicas or 1}: a write could never be "
                "acknowledged by that many replicas; lower it or raise the replication factor"
            )


#: the Qdrant cluster settings that count something (0: not sent, the server decides)
QDRANT_COUNTS = (
    "qdrant_shard_number",
    "qdrant_replication_factor",
    "qdrant_write_consistency_factor",
)
QDRANT_QUANTIZATIONS = ("none", "scalar", "binary", "product")


#: what a Qdrant alias prefix may hold: letters, digits and ``-_.``, as collection names do
_ALIAS_PREFIX = re.compile(r"[A-Za-z0-9_.-]{0,64}")


def _check_alias_prefix(prefix: object) -> None:
    if not isinstance(prefix, str) or not _ALIAS_PREFIX.fullmatch(prefix):
        raise ConfigError(
            f"[index] qdrant_alias_prefix {prefix!r} is not a valid Qdrant name prefix: use at "
            "most 64 letters, digits, '-', '_' or '.' (e.g. \"team-a-\")"
        )


def _secret_message(section: str, key: str, env_key: str) -> str:
    from ragkit.config import _secret_message as message

    return message(section, key, env_key)
