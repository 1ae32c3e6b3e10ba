"""Query latency per mode, and memory / recall / latency per dense index kind, at scale.

    python bench/scale.py [--sizes 10000 100000] [--encoder static|default] [--dataset DIR]
    python bench/scale.py --sizes --index-workspace WS   # index kinds on a workspace's vectors

For each size N a corpus of N chunks is written and ingested into a fresh workspace (reused when
it exists: ingest is incremental). The corpus starts with the dataset's own documents (each is
one chunk of about 140 tokens in debian-packages) and, past the dataset's size, continues with
synthetic documents: a real title with a numeric suffix and 2-6 sentences drawn at random from
the whole corpus, so term statistics and lengths stay those of the real data.

Two tables per size:

* **query latency** per mode (dense, sparse = BM25, hybrid = RRF of both): single queries
  through ``Workspace.query`` (encode + search + fetch rows), the dataset's dev queries,
  p50/p95/p99 after a warm-up.
* **dense index kinds** (flat, HNSW, IVF-PQ with and without refine, int8, binary with and
  without int8 rescoring): build time, bytes per vector of the saved index, recall@10 against
  exact flat search, single-query search latency (one thread, index only).

The corpora are embedded with the default encoder (all-MiniLM-L6-v2; 100k chunks take about
15 minutes in bf16 on 2 CPU cores, an hour in float32). ``--encoder static`` embeds with a static
model made from that encoder's own token embeddings (384-d, mean of token vectors) and ingests
100k chunks in a minute: search, filtering, fusion and row fetching, the parts that grow with N,
are the same code, but its vectors are far more clustered than sentence embeddings, so its ANN
recall is a worst case. The time the encoder adds per query does not depend on N and is measured
on its own (the ``encode`` line).
"""

from __future__ import annotations

import json
import os
import random
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common

MODES = ("dense", "sparse", "hybrid")


# -- corpus ---------------------------------------------------------------------------------
def write_corpus(dataset: Path, size: int, folder: Path, seed: int = 0) -> Path:
    """``size`` documents: the dataset's own, then synthetic ones built from its sentences."""
    path = folder / f"corpus-{size}.jsonl"
    if path.exists():
        return path
    real = list(_common.iter_corpus(dataset))
    rng = random.Random(seed)
    sentences = [
        s.strip() for doc in real for s in re.split(r"(?<=[.!?])\s+", doc["text"]) if len(s) > 20
    ]
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        for i in range(size):
            if i < len(real):
                doc = real[i]
                record = {"_id": f"{doc['_id']}#{i}", "title": doc["title"], "text": doc["text"]}
            else:
                base = real[rng.randrange(len(real))]
                text = " ".join(rng.sample(sentences, rng.randint(2, 6)))
                record = {"_id": f"synthetic-{i}", "title": f"{base['title']}-{i}", "text": text}
            out.write(json.dumps(record) + "\n")
    tmp.rename(path)
    return path


def static_encoder() -> Any:
    """A static model over the default encoder's tokenizer and token embeddings (384-d)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Normalize, StaticEmbedding

    from ragkit.config import EncoderConfig
    from ragkit.encoders import DenseEncoder

    default = DenseEncoder.load(EncoderConfig())
    transformer = default.model[0]
    weights = transformer.auto_model.embeddings.word_embeddings.weight.detach().clone()
    static = StaticEmbedding(transformer.tokenizer, embedding_weights=weights)
    model = SentenceTransformer(modules=[static, Normalize()], device="cpu")
    return DenseEncoder.from_model(model, name="minilm-token-embeddings-static")


# -- tables ---------------------------------------------------------------------------------
def mode_latency(kit: Any, queries: list[str]) -> list[dict]:
    rows = []
    for mode in MODES:
        if mode not in kit.available_modes():
            continue
        stats = _common.latency_ms(lambda q, m=mode: kit.query(q, k=10, mode=m), queries)
        rows.append({"mode": mode, **stats})
    return rows


def encode_latency(queries: list[str]) -> dict:
    from ragkit.config import EncoderConfig
    from ragkit.encoders import DenseEncoder

    encoder = DenseEncoder.load(EncoderConfig())
    stats = _common.latency_ms(lambda q: encoder.encode_queries([q]), queries)
    return {"mode": f"encode only ({encoder.name})", **stats}


INDEX_KINDS: list[tuple[str, dict]] = [
    ("flat (exact)", {"kind": "flat"}),
    ("hnsw M=32 ef=128", {"kind": "hnsw"}),
    ("ivfpq nprobe=64 + exact refine x10", {"kind": "ivfpq"}),
    ("ivfpq nprobe=64, no refine", {"kind": "ivfpq", "refine": False}),
    ("int8", {"kind": "int8"}),
    ("binary + int8 rescoring x4", {"kind": "binary", "refine_k_factor": 4}),
    ("binary + int8 rescoring x10", {"kind": "binary"}),
    ("binary, no rescoring", {"kind": "binary", "refine": False}),
]


def index_table(ids: Any, vectors: Any, queries: Any, latency_queries: int) -> list[dict]:
    import numpy as np

    from ragkit.config import IndexConfig
    from ragkit.indexes.faiss_index import FaissIndex

    dim = vectors.shape[1]
    truth: Any = None
    rows = []
    for label, options in INDEX_KINDS:
        index = FaissIndex(dim, IndexConfig(**options))
        started = time.perf_counter()
        index.add(ids, vectors)
        build = time.perf_counter() - started
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "index.faiss"
            index.save(path)
            per_vector = path.stat().st_size / len(ids)
        _, found = index.search(queries, 10)
        if truth is None:
            truth = found
        recall = float(
            np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)])
        )
        single = [queries[i : i + 1] for i in range(min(latency_queries, len(queries)))]
        stats = _common.latency_ms(lambda q, ix=index: ix.search(q, 10), single)
        rows.append(
            {
                "index": label,
                "structure": index.structure,
                "build_s": round(build, 2),
                "bytes_per_vector": round(per_vector, 1),
                "recall@10": round(recall, 4),
                **stats,
            }
        )
    return rows


def workspace_vectors(kit: Any, queries: list[str]) -> tuple[Any, Any, Any]:
    collection = kit.collection()
    ids, vectors, missing = collection.vectors_from_cache()
    if missing:
        raise SystemExit(f"{kit.root}: {len(missing)} chunks have no cached vector")
    return ids, vectors, kit.encoder.encode_queries(queries)


def show(title: str, rows: list[dict]) -> None:
    if rows:
        _common.print_table(title, list(rows[0]), [list(row.values()) for row in rows])


# -- main -----------------------------------------------------------------------------------
def main() -> None:
    _common.offline()
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    p.add_argument("--encoder", choices=["static", "default"], default="default")
    p.add_argument("--split", default="dev", help="queries of this split are the probes")
    p.add_argument("--queries", type=int, default=200, help="probe queries per table")
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "ragkit-scale")
    p.add_argument("--index-workspace", type=Path, default=None, help="also run the index table")
    p.add_argument("--skip-index-table", action="store_true")
    args = p.parse_args()

    import ragkit
    from ragkit.evaluation import load_beir

    queries = list(dict(sorted(load_beir(args.dataset, args.split).queries.items())).values())
    queries = queries[: args.queries]
    encoder = static_encoder() if args.encoder == "static" else None
    load_before = os.getloadavg()
    payload: dict[str, Any] = {"machine": _common.machine(), "encoder": args.encoder, "runs": []}

    encode_row = encode_latency(queries)
    print(f"query encode, default encoder: {encode_row}")
    payload["encode"] = encode_row

    for size in args.sizes:
        corpus = write_corpus(args.dataset, size, args.work)
        kit = ragkit.open(args.work / f"ws-{size}-{args.encoder}", create=True, encoder=encoder)
        started = time.perf_counter()
        report = kit.ingest(corpus)
        ingest_s = time.perf_counter() - started
        chunks = len(kit.store.all_chunk_ids())
        print(
            f"\n{size:,} documents → {chunks:,} chunks; ingest {ingest_s:.1f} s "
            f"({report.chunks_added:,} chunks added, {report.commits} commits)"
        )
        modes = mode_latency(kit, queries)
        show(f"query latency, {chunks:,} chunks (ms)", modes)
        run: dict[str, Any] = {
            "documents": size,
            "chunks": chunks,
            "ingest_s": round(ingest_s, 1),
            "latency": modes,
        }
        if not args.skip_index_table:
            ids, vectors, probe = workspace_vectors(kit, queries)
            run["indexes"] = index_table(ids, vectors, probe, args.queries)
            show(f"dense index kinds, {chunks:,} vectors", run["indexes"])
        payload["runs"].append(run)
        kit.close()

    if args.index_workspace is not None:
        kit = ragkit.open(args.index_workspace, create=False)
        ids, vectors, probe = workspace_vectors(kit, queries)
        rows = index_table(ids, vectors, probe, args.queries)
        label = f"dense index kinds, {len(ids):,} vectors of {args.index_workspace}"
        show(label, rows)
        payload["workspace_indexes"] = {"workspace": str(args.index_workspace), "rows": rows}
        kit.close()

    payload["load_average"] = {"start": load_before, "end": os.getloadavg()}
    print(f"\nload average: start {load_before}, end {os.getloadavg()}")
    print(f"results: {_common.write_result(f'scale-{args.encoder}', payload)}")


if __name__ == "__main__":
    main()
