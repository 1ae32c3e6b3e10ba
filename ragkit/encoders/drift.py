"""Encoder drift: a provider changed the model behind the same name.

A remote model's weights cannot be hashed, so a collection built on one records what the
service returned for a fixed probe text (:data:`~ragkit.encoders.http.remote.PROBE_TEXT`):
a hash and the vector itself at float16 (enough for a cosine to five decimals, 8 KiB at 4096
dimensions). ``ragkit doctor`` embeds the probe again; a cosine below
:data:`DRIFT_THRESHOLD` means queries are now embedded by another model than the collection's
vectors were, which silently degrades every search. Served floats are not bit-reproducible
(batch shapes, GPUs), so a hash mismatch alone is not drift: the same model agrees to a cosine
of 0.99999 or better, a retrained one rarely above 0.99.
"""

from __future__ import annotations

import base64
import hashlib
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ragkit.collection_parts import CollectionSource
    from ragkit.doctor import Check
    from ragkit.encoders.protocol import Encoder
    from ragkit.store import CollectionRecord

__all__ = ["DRIFT_THRESHOLD", "ENCODER_DRIFT", "drift_checks", "probe_cosine", "probe_record"]

DRIFT_THRESHOLD = 0.999
ENCODER_DRIFT = "encoder drift"


def probe_record(encoder: Encoder) -> dict[str, Any]:
    """What ``encoder`` returns for the probe text, as stored in a collection's fingerprint."""
    from ragkit.encoders.http.remote import PROBE_TEXT

    vector = np.asarray(encoder.encode_documents([PROBE_TEXT])[0], dtype=np.float16)
    data = vector.tobytes()
    return {
        "text": PROBE_TEXT,
        "sha256": hashlib.sha256(data).hexdigest(),
        "vector_f16": base64.b64encode(data).decode("ascii"),
    }


def probe_cosine(recorded: dict[str, Any], encoder: Encoder) -> float:
    """Cosine between the recorded probe vector and what ``encoder`` returns for it now."""
    before = np.frombuffer(base64.b64decode(recorded["vector_f16"]), dtype=np.float16)
    now = np.asarray(encoder.encode_documents([recorded["text"]])[0], dtype=np.float32)
    if before.shape[0] != now.shape[0]:
        return 0.0
    before32 = before.astype(np.float32)
    denominator = float(np.linalg.norm(before32) * np.linalg.norm(now)) or 1.0
    return float(before32 @ now) / denominator


def drift_checks(workspace: CollectionSource, record: CollectionRecord) -> list[Check]:
    """The drift check of one collection for ``ragkit doctor``: none for a collection without
    a probe (local models are fingerprinted by their weights), skipped when the workspace's
    encoder is no longer the collection's or the service cannot be reached."""
    from ragkit.doctor import OK, PROBLEM, SKIPPED, Check
    from ragkit.errors import RagkitError

    recorded = record.encoder.get("probe")
    if not isinstance(recorded, dict) or "vector_f16" not in recorded:
        return []
    try:
        from ragkit.collection import Collection

        # the collection's own encoder, from its spec
        encoder = workspace.encoder_for(Collection(workspace.store, workspace.root, record))
        if encoder.fingerprint["id"] != record.model_fp:
            detail = "the workspace's encoder is not this collection's; probe not compared"
            return [Check(ENCODER_DRIFT, SKIPPED, detail)]
        cosine = probe_cosine(recorded, encoder)
    except RagkitError as exc:
        return [Check(ENCODER_DRIFT, SKIPPED, f"could not embed the probe: {exc}")]
    name = record.encoder.get("name", record.name)
    if cosine < DRIFT_THRESHOLD:
        detail = (
            f"the probe text now embeds at cosine {cosine:.5f} to the vector recorded when the "
            f"collection was built (< {DRIFT_THRESHOLD}): the service changed the model behind "
            f"{name!r}; queries no longer match the stored vectors. Re-embed into a new "
            "workspace, or pin a model version in encoder.model"
        )
        return [Check(ENCODER_DRIFT, PROBLEM, detail, {"cosine_ppm": int(cosine * 1e6)})]
    return [Check(ENCODER_DRIFT, OK, f"probe cosine {cosine:.6f} (model {name!r} unchanged)")]
