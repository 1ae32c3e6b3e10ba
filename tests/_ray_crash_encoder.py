"""An encoder provider whose first batch kills its worker process, once.

Imported by Ray workers (the test session puts tests/ on their PYTHONPATH): the provider is
shipped to the actors by reference, so it must be an importable module, not a test function.
The marker file makes the crash happen once across restarts: the restarted actor finds it.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from ragkit.config import EncoderConfig
from ragkit.encoders.dense import DenseEncoder, load_sentence_transformer
from ragkit.encoders.registry import register_encoder

MARKER_ENV = "RAGKIT_TEST_CRASH_MARKER"


@register_encoder("crash-once")
def load_crash_once(config: EncoderConfig) -> DenseEncoder:
    encoder = load_sentence_transformer(
        dataclasses.replace(config, provider="sentence-transformers")
    )
    marker = os.environ.get(MARKER_ENV)  # set only in the Ray workers, never in the driver
    encode = encoder.encode_documents

    def encode_or_crash(texts):  # type: ignore[no-untyped-def]
        if marker and not Path(marker).exists():
            Path(marker).write_text(str(os.getpid()), encoding="utf-8")
            os._exit(1)
        return encode(texts)

    encoder.encode_documents = encode_or_crash  # type: ignore[method-assign]
    return encoder
