"""Embeddings/s through ragkit's ``openai`` encoder against a loopback OpenAI-compatible server
serving the default model (all-MiniLM-L6-v2, loaded offline through ragkit's registry), by
batch size and concurrency, next to the in-process encoder; and the cost of 10% injected 429s.

The server runs in this process (tests/embedding_server.py, a thread per request) and shares
the CPU with the client: the numbers measure ragkit's client overhead (JSON, HTTP, batching,
threads) on top of the model, not a remote GPU. Run: ``python bench/remote_encoder.py``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _common
import numpy as np

from ragkit.config import EncoderConfig
from ragkit.encoders.registry import load_encoder
from tests.embedding_server import serving


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--texts", type=int, default=512, help="texts embedded per measurement")
    p.add_argument("--chars", type=int, default=600, help="characters kept per text")
    args = p.parse_args()
    _common.offline()
    texts = [
        f"{d['title']}\n\n{d['text']}"[: args.chars]
        for d in _common.iter_corpus(args.dataset, args.texts)
    ]
    local = load_encoder(EncoderConfig(model="default", batch_size=64))
    local.encode_documents(texts[:64])  # warm up
    local_seconds = float("inf")
    for _ in range(2):  # best of two: the machine is shared
        started = time.perf_counter()
        reference = local.encode_documents(texts)
        local_seconds = min(local_seconds, time.perf_counter() - started)
    rows: list[list[object]] = [
        ["in-process", 64, "–", _common.fmt_rate(len(texts), local_seconds), "–", "–"]
    ]
    results = [{"kind": "in-process", "batch": 64, "seconds": local_seconds}]

    def served(batch: list[str]) -> np.ndarray:
        return local.encode_documents(batch)

    with serving(served, model="all-MiniLM-L6-v2") as server:
        for batch_size, concurrency, fault_rate in [
            (16, 1, 0.0),
            (64, 1, 0.0),
            (16, 4, 0.0),
            (64, 2, 0.0),
            (64, 4, 0.0),
            (16, 4, 0.1),
            (64, 4, 0.1),
        ]:
            encoder = load_encoder(
                EncoderConfig(
                    provider="openai",
                    model="all-MiniLM-L6-v2",
                    base_url=f"{server.url}/v1",
                    batch_size=batch_size,
                    concurrency=concurrency,
                    dimensions=384,
                    retry_base_delay=0.05,
                    max_retries=20,
                )
            )
            encoder.encode_documents(texts[:batch_size])  # connect, warm up
            server.random_faults, server.retry_after = ("429",), "0"
            seconds, retries = float("inf"), []
            for _ in range(2):
                server.fault_rate, served = fault_rate, server.random_faults_served
                attempt: list[int] = []
                with encoder.reporting(_counting(attempt)):
                    started = time.perf_counter()
                    vectors = encoder.encode_documents(texts)
                    elapsed = time.perf_counter() - started
                assert sum(attempt) == server.random_faults_served - served
                if elapsed < seconds:
                    seconds, retries = elapsed, attempt
            server.fault_rate = 0.0
            agree = float(np.min(np.sum(vectors * reference, axis=1)))
            rows.append(
                [
                    "openai (loopback)" + (" + 10% 429" if fault_rate else ""),
                    batch_size,
                    concurrency,
                    _common.fmt_rate(len(texts), seconds),
                    sum(retries),
                    f"{agree:.6f}",
                ]
            )
            results.append(
                {
                    "kind": "openai",
                    "batch": batch_size,
                    "concurrency": concurrency,
                    "fault_rate": fault_rate,
                    "seconds": seconds,
                    "retries": sum(retries),
                    "min_cosine_to_in_process": agree,
                }
            )
            encoder.close()
    columns = ["encoder", "batch", "concurrency", "texts/s", "retries", "min cos vs local"]
    caption = f"{len(texts)} texts of ≤{args.chars} chars · {_common.machine_line()}"
    _common.print_table("remote encoder", columns, rows, caption=caption)
    print(_common.markdown_table(columns, rows))
    _common.write_result("remote_encoder", {"texts": len(texts), "results": results})


def _counting(retries: list[int]):  # type: ignore[no-untyped-def]
    def on_event(event: str, n: int) -> None:
        if event == "retry":
            retries.append(n)

    return on_event


if __name__ == "__main__":
    main()
