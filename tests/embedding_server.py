"""A loopback embedding server for tests and ``bench/remote_encoder.py``.

Speaks the four wire formats ragkit's remote encoders use (OpenAI ``/v1/embeddings``, Gemini
``:batchEmbedContents``, TEI ``/embed``, Ollama ``/api/embed``) over a pluggable embedding
function, and plays faults on demand: ``server.faults`` is a list consumed one per request
(``"429"``, ``"500"``, ``"slow"``, ``"drop"``, ``"truncated"``, ``"wrong_dim"``, ``"nan"``,
``"wrong_model"``, ``"401"``, ``"404"``), or ``server.fault_rate`` draws them at random from a
seeded generator. It binds 127.0.0.1 only: no test reaches any other address.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

Embed = Callable[[list[str]], np.ndarray]
_WORD = re.compile(r"\w+")


def hashed_bag_of_words(texts: list[str], dim: int = 64) -> np.ndarray:
    """Deterministic embeddings that make retrieval meaningful: each word adds a signed unit
    at a hashed position, so texts sharing words have a high cosine."""
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for row, text in enumerate(texts):
        for word in _WORD.findall(text.lower()):
            digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
            out[row, digest[0] % dim] += 1.0 if digest[1] & 1 else -1.0
        out[row, dim - 1] += 0.01  # never all zero
    return out / np.linalg.norm(out, axis=1, keepdims=True)


class EmbeddingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, embed: Embed, *, model: str = "fake-embed", seed: int = 0) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.embed, self.model = embed, model
        self.faults: list[str] = []
        self.fault_rate = 0.0
        self.random_faults_served = 0
        self.random_faults: tuple[str, ...] = ("429", "500", "drop")
        self.retry_after = "0.01"
        self.slow_seconds = 1.0
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []  # path, headers, body of every request
        self.texts_embedded = 0
        self.embedded_log: list[str] = []  # texts of every reply sent with vectors

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def next_fault(self) -> str:
        with self.lock:
            if self.faults:
                return self.faults.pop(0)
            if self.fault_rate and self.rng.random() < self.fault_rate:
                self.random_faults_served += 1
                return self.rng.choice(self.random_faults)
            return ""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: EmbeddingServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        with self.server.lock:
            self.server.requests.append(
                {"path": self.path, "headers": dict(self.headers), "body": body}
            )
        fault = self.server.next_fault()
        if fault == "drop":
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        if fault == "slow":
            time.sleep(self.server.slow_seconds)
        if fault in ("429", "500", "401", "404"):
            headers = {"retry-after": self.server.retry_after} if fault == "429" else {}
            self._send(int(fault), {"error": {"message": f"fault {fault}"}}, headers)
            return
        texts, reply = self._parse(body)
        vectors = self.server.embed(texts) if texts else np.zeros((0, 1))
        with self.server.lock:
            self.server.texts_embedded += len(texts)
            self.server.embedded_log.extend(texts)
        if fault == "wrong_dim":
            vectors = vectors[:, :-1]
        rows = vectors.astype(float).tolist()
        if fault == "nan" and rows:
            rows[0][0] = float("nan")
        payload = reply(rows, body, fault == "wrong_model")
        data = json.dumps(payload).encode()
        if fault == "truncated":
            data = data[: len(data) // 2]
        self._send_bytes(200, data, {})

    def _parse(self, body: dict[str, Any]) -> tuple[list[str], Callable[..., Any]]:
        path = self.path.split("?")[0]
        if path.endswith("/embeddings"):
            return list(body["input"]), self._openai
        if path.endswith(":batchEmbedContents"):
            texts = [r["content"]["parts"][0]["text"] for r in body["requests"]]
            return texts, lambda rows, body, wrong: {"embeddings": [{"values": r} for r in rows]}
        if path == "/embed":
            return list(body["inputs"]), lambda rows, body, wrong: rows
        if path == "/api/embed":
            model = self.server.model

            def ollama(rows: list[Any], body: dict[str, Any], wrong: bool) -> Any:
                return {"model": "other-model" if wrong else model + ":latest", "embeddings": rows}

            return list(body["input"]), ollama
        raise ValueError(path)

    def _openai(self, rows: list[Any], body: dict[str, Any], wrong: bool) -> Any:
        if body.get("encoding_format") == "base64":
            items = [base64.b64encode(np.asarray(r, "<f4").tobytes()).decode() for r in rows]
        else:
            items = rows
        data = [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(items)]
        data.reverse()  # servers may answer out of order; the index says where each goes
        return {"data": data, "model": "other-model" if wrong else body.get("model")}

    def _send(self, status: int, payload: Any, headers: dict[str, str]) -> None:
        self._send_bytes(status, json.dumps(payload).encode(), headers)

    def _send_bytes(self, status: int, data: bytes, headers: dict[str, str]) -> None:
        try:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
            pass


@contextmanager
def serving(embed: Embed = hashed_bag_of_words, **options: Any) -> Iterator[EmbeddingServer]:
    """Run an :class:`EmbeddingServer` in a thread for the block."""
    server = EmbeddingServer(embed, **options)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
