"""Embedded Qdrant options against FAISS: qdrant-client local mode, Qdrant Edge, FAISS flat.

    python bench/qdrant_backends.py [--n 20000] [--dim 384] [--vocab 30522] [--nnz 100]
                                    [--queries 200] [--backends faiss,qdrant-local,...]

Synthetic data: ``n`` random unit vectors, and per document a SPLADE-like sparse row with about
``nnz`` distinct terms drawn from a Zipf-like distribution over ``vocab`` (queries: ~20 terms).
Dense queries are documents plus noise, so each has a clear nearest neighbour.

Each backend is built in one subprocess and queried in a fresh one, so "load" is an open from
disk and "RSS" is what the opened index adds to a process that holds only the queries:

- build: add dense + sparse and persist (FAISS/SparseIndex files; local mode writes as it goes;
  Edge flushes, and ``edge-hnsw`` also builds its graph).
- dense / filtered / sparse / hybrid: single-query latency, p50 and p95 in ms. "filtered" lets
  1% of the ids through (``allowed_ids``), "hybrid" is RRF over dense and sparse top-100: inside
  Qdrant for the Qdrant backends, FAISS + ragkit's ``SparseIndex`` + ``fuse`` for FAISS.
- recall@10: dense top-10 against exact search.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common

BACKENDS = ("faiss", "qdrant-local", "edge-flat", "edge-hnsw")
K = 10
DEPTH = 100
_PARAMS = ("n", "dim", "vocab", "nnz", "queries", "local_queries", "seed")


# -- data -----------------------------------------------------------------------------------
def dataset(args: argparse.Namespace) -> dict[str, Any]:
    from scipy import sparse

    rng = np.random.default_rng(args.seed)
    x = rng.standard_normal((args.n, args.dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = np.arange(args.n, dtype=np.int64) * 7 + 3  # chunk ids are sparse, not 0..n-1
    weights = 1.0 / (np.arange(args.vocab) + 50.0)
    weights /= weights.sum()

    def sparse_rows(count: int, nnz: int) -> sparse.csr_matrix:
        draws = np.sort(rng.choice(args.vocab, size=(count, int(nnz * 1.4)), p=weights), axis=1)
        rows, cols = [], []
        for r, row in enumerate(draws):
            terms = np.unique(row)[:nnz]
            rows.append(np.full(len(terms), r))
            cols.append(terms)
        r, c = np.concatenate(rows), np.concatenate(cols)
        values = rng.lognormal(0.0, 0.6, size=len(r)).astype(np.float32)
        return sparse.csr_matrix((values, (r, c)), shape=(count, args.vocab), dtype=np.float32)

    docs_sparse = sparse_rows(args.n, args.nnz)
    source = rng.integers(args.n, size=args.queries)
    queries = x[source] + 0.08 * rng.standard_normal((args.queries, args.dim), dtype=np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    queries_sparse = sparse_rows(args.queries, 20)
    allowed = np.sort(rng.choice(ids, size=max(1, args.n // 100), replace=False))
    truth = ids[np.argsort(-(queries @ x.T), axis=1)[:, :K]]
    return {
        "ids": ids,
        "x": x,
        "sparse": docs_sparse,
        "queries": queries.astype(np.float32),
        "queries_sparse": queries_sparse,
        "allowed": allowed,
        "truth": truth,
    }


# -- backends -------------------------------------------------------------------------------
def open_backend(name: str, folder: Path, dim: int, vocab: int) -> Any:
    """The index objects for one backend, created or reopened from ``folder``."""
    if name == "faiss":
        from ragkit.config import IndexConfig
        from ragkit.indexes.faiss_index import FaissIndex
        from ragkit.indexes.sparse_index import SparseIndex

        if (folder / "dense.faiss").exists():
            dense = FaissIndex.load(folder / "dense.faiss", dim, IndexConfig())
            return dense, SparseIndex.load(folder / "sparse.npz")
        return FaissIndex(dim, IndexConfig()), SparseIndex(vocab)
    if name == "qdrant-local":
        from ragkit.indexes.qdrant_index import QdrantIndex

        return QdrantIndex(dim, path=folder / "qdrant", collection="bench")
    from ragkit.indexes.qdrant_edge_index import QdrantEdgeIndex

    kind = name.removeprefix("edge-")
    if (folder / "dense.qedge").exists():
        return QdrantEdgeIndex.open(folder / "dense.qedge", dim, kind=kind)
    return QdrantEdgeIndex(dim, kind=kind, workdir=folder)


def build(name: str, folder: Path, data: dict[str, Any], args: argparse.Namespace) -> dict:
    index = open_backend(name, folder, args.dim, args.vocab)
    start = time.perf_counter()
    if name == "faiss":
        dense, sparse_index = index
        dense.add(data["ids"], data["x"])
        sparse_index.add(data["ids"], data["sparse"])
        dense.save(folder / "dense.faiss")
        sparse_index.save(folder / "sparse.npz")
    else:
        index.add(data["ids"], data["x"], sparse=data["sparse"])
        index.save(folder / ("manifest.json" if name == "qdrant-local" else "dense.qedge"))
    seconds = time.perf_counter() - start
    if name != "faiss":
        index.close()
    return {"build_s": seconds, "disk_mb": _disk_mb(folder)}


def query(name: str, folder: Path, data: dict[str, Any], args: argparse.Namespace) -> dict:
    import psutil

    open_backend(name, folder.parent / f"warm-up-{name}", args.dim, args.vocab)  # imports
    process = psutil.Process()
    before = process.memory_info().rss
    start = time.perf_counter()
    index = open_backend(name, folder, args.dim, args.vocab)
    load_s = time.perf_counter() - start
    rss_mb = (process.memory_info().rss - before) / 2**20
    queries, sparse_q, allowed = data["queries"], data["queries_sparse"], data["allowed"]
    if name == "qdrant-local":  # pure Python: seconds per sparse query at 20k points
        queries, sparse_q = queries[: args.local_queries], sparse_q[: args.local_queries]
        data["truth"] = data["truth"][: args.local_queries]

    if name == "faiss":
        from ragkit.retrieval.fusion import fuse

        dense, sparse_index = index

        def hybrid(i: int) -> Any:
            ds, di = dense.search(queries[i : i + 1], DEPTH)
            ss, si = sparse_index.search(sparse_q[i], DEPTH)
            runs = [
                {int(a): float(s) for a, s in zip(di[0], ds[0], strict=True) if a >= 0},
                {int(a): float(s) for a, s in zip(si[0], ss[0], strict=True) if a >= 0},
            ]
            return fuse(runs, method="rrf", k=60)[:K]

        modes = {
            "dense": lambda i: dense.search(queries[i : i + 1], K),
            "filtered": lambda i: dense.search(queries[i : i + 1], K, allowed_ids=allowed),
            "sparse": lambda i: sparse_index.search(sparse_q[i], K),
            "hybrid": hybrid,
        }
        found = dense.search(queries, K)[1]
    else:
        modes = {
            "dense": lambda i: index.search(queries[i : i + 1], K),
            "filtered": lambda i: index.search(queries[i : i + 1], K, allowed_ids=allowed),
            "sparse": lambda i: index.search_sparse(sparse_q[i], K),
            "hybrid": lambda i: index.search_hybrid(
                queries[i : i + 1], sparse_q[i], K, depth=DEPTH
            ),
        }
        found = np.vstack([index.search(queries[i : i + 1], K)[1] for i in range(len(queries))])
    out: dict[str, Any] = {"load_s": load_s, "rss_mb": rss_mb}
    for mode, run in modes.items():
        for i in range(min(5, len(queries))):  # warm-up
            run(i)
        times = []
        for i in range(len(queries)):
            t = time.perf_counter()
            run(i)
            times.append((time.perf_counter() - t) * 1000)
        out[f"{mode}_p50_ms"] = float(np.percentile(times, 50))
        out[f"{mode}_p95_ms"] = float(np.percentile(times, 95))
    truth = data["truth"]
    out["recall_at_10"] = float(
        np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)])
    )
    return out


def _disk_mb(folder: Path) -> float:
    """Allocated size (Qdrant preallocates sparse files: apparent size would overstate it)."""
    total = sum(p.stat().st_blocks * 512 for p in folder.rglob("*") if p.is_file())
    return total / 2**20


# -- driver ---------------------------------------------------------------------------------
def worker(args: argparse.Namespace) -> None:
    warnings.filterwarnings("ignore", category=UserWarning, module="qdrant_client")
    folder = Path(args.dir)
    cache = folder.parent / "data.npz"
    if args.worker == "data":
        data = dataset(args)
        from scipy import sparse

        np.savez(cache, **{k: v for k, v in data.items() if not sparse.issparse(v)})
        sparse.save_npz(folder.parent / "sparse.npz", data["sparse"])
        sparse.save_npz(folder.parent / "queries_sparse.npz", data["queries_sparse"])
        print(json.dumps({}))
        return
    from scipy import sparse

    with np.load(cache) as stored:
        data = {k: stored[k] for k in stored.files}
    data["queries_sparse"] = sparse.load_npz(folder.parent / "queries_sparse.npz").tocsr()
    if args.worker == "build":
        data["sparse"] = sparse.load_npz(folder.parent / "sparse.npz").tocsr()
        folder.mkdir(parents=True, exist_ok=True)
        result = build(args.backend, folder, data, args)
    else:
        del data["x"]  # the query process holds only what a reader would
        result = query(args.backend, folder, data, args)
    print(json.dumps(result))


def run_worker(kind: str, backend: str, folder: Path, args: argparse.Namespace) -> dict:
    command = [
        sys.executable,
        __file__,
        "--worker",
        kind,
        "--backend",
        backend,
        "--dir",
        str(folder),
        *[f"--{k.replace('_', '-')}={getattr(args, k)}" for k in _PARAMS],
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{backend} {kind} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--vocab", type=int, default=30_522)
    p.add_argument("--nnz", type=int, default=100)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument(
        "--local-queries", type=int, default=30, help="queries for qdrant-local (it is slow)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backends", default=",".join(BACKENDS))
    p.add_argument("--worker", choices=("data", "build", "query"), help=argparse.SUPPRESS)
    p.add_argument("--backend", help=argparse.SUPPRESS)
    p.add_argument("--dir", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return

    info = _common.machine()
    for dist in ("qdrant-client", "qdrant-edge-py"):
        info[dist] = _common._version(dist)
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="ragkit-qdrant-bench-") as tmp:
        root = Path(tmp)
        run_worker("data", "-", root / "-", args)
        for backend in args.backends.split(","):
            folder = root / backend
            print(f"{backend}: building…", file=sys.stderr)
            results[backend] = run_worker("build", backend, folder, args)
            print(f"{backend}: querying…", file=sys.stderr)
            results[backend] |= run_worker("query", backend, folder, args)

    columns = [
        "backend",
        "build s",
        "load s",
        "RSS MB",
        "disk MB",
        "dense p50/p95",
        "filtered 1% p50/p95",
        "sparse p50/p95",
        "hybrid p50/p95",
        "recall@10",
    ]

    def pair(r: dict[str, Any], mode: str) -> str:
        return f"{r[mode + '_p50_ms']:.2f} / {r[mode + '_p95_ms']:.2f}"

    rows = [
        [
            name,
            f"{r['build_s']:.2f}",
            f"{r['load_s']:.3f}",
            f"{r['rss_mb']:.0f}",
            f"{r['disk_mb']:.0f}",
            pair(r, "dense"),
            pair(r, "filtered"),
            pair(r, "sparse"),
            pair(r, "hybrid"),
            f"{r['recall_at_10']:.3f}",
        ]
        for name, r in results.items()
    ]
    title = (
        f"{args.n:,} × {args.dim} unit vectors + sparse (~{args.nnz} nnz, vocab {args.vocab:,}); "
        f"{args.queries} single queries, k={K}; latencies in ms"
    )
    _common.print_table(title, columns, rows, caption=_common.machine_line(info))
    print(_common.markdown_table(columns, rows))
    params = {k: getattr(args, k) for k in _PARAMS}
    path = _common.write_result(
        "qdrant_backends",
        {"machine": info, "params": params, "k": K, "depth": DEPTH, "results": results},
    )
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
