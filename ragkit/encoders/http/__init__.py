"""Encoders served over HTTP: OpenAI-compatible, Gemini, TEI and Ollama, through one client.

One provider per file (``openai.py``, ``gemini.py``, ``tei.py``, ``ollama.py``) says only what
its wire format is; :mod:`.client` owns what every service needs alike (batching, bounded
concurrency, retries with backoff, rate limits, errors that name the setting to fix) and
:mod:`.remote` turns that into an :class:`~ragkit.encoders.protocol.Encoder`. Nothing here
imports torch; httpx is imported when a provider is chosen (``pip install ragkit[remote]``).
"""

__all__ = ["RemoteEncoderError"]


def __getattr__(name: str) -> object:
    if name == "RemoteEncoderError":
        from ragkit.encoders.http.client import RemoteEncoderError

        return RemoteEncoderError
    raise AttributeError(name)
