"""Query adapters: fit time on N pairs and apply cost per query, batch 1 and batch 64.

    python bench/adapters.py [--n 20000] [--in-dim 768] [--out-dim 384] [--seed 0]

Synthetic pairs of the same "texts" under two encoders: a latent Z, old = normalize(Z @ A +
noise), new = normalize(Z @ B + noise) with random A, B. Each kind is fitted on 80% of the
pairs; held-out cosine and recall@10 against the new space's own search (held-out queries over
all N documents) show what the time buys; the last row is the ceiling of that recall, the old
index searched with the old encoder's own query vectors (the two spaces rank differently). Apply times are the best of 7 runs of repeated calls on
one query (batch 1) or 64 queries (per query); "matmul" is ``x @ W`` alone for the batch-1
case, so the rest of the procrustes/affine time is the adapter's own overhead.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common


def unit(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)


def synthetic(n: int, in_dim: int, out_dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    latent = 64  # texts differ in a few directions; each encoder adds its own small noise
    z = rng.standard_normal((n, latent))
    old = z @ rng.standard_normal((latent, out_dim)) + 2.0 * rng.standard_normal((n, out_dim))
    new = z @ rng.standard_normal((latent, in_dim)) + 2.0 * rng.standard_normal((n, in_dim))
    return unit(new), unit(old)


def microseconds(call, x: np.ndarray, per: int, repeat: int = 2000) -> float:  # type: ignore[no-untyped-def]
    for _ in range(50):
        call(x)
    samples = []
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(repeat):
            call(x)
        samples.append((time.perf_counter() - start) / repeat)
    return min(samples) / per * 1e6  # the least disturbed run: the machine may be shared


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=20_000, help="pairs (default 20,000)")
    p.add_argument("--in-dim", type=int, default=768, help="the new encoder's dimension")
    p.add_argument("--out-dim", type=int, default=384, help="the old encoder's dimension")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    from ragkit.migration import ADAPTER_KINDS, adapter_recall, fit_adapter, split_holdout

    new, old = synthetic(args.n, args.in_dim, args.out_dim, args.seed)
    fit, held = split_holdout(args.n, 0.2, seed=args.seed)
    queries = held[:1000]
    one, batch = new[held[:1]].copy(), new[held[:64]].copy()
    rows = []
    for kind in ADAPTER_KINDS:
        adapter = fit_adapter(kind, new[fit], old[fit], seed=args.seed)
        cosine = float((adapter(new[held]) * old[held]).sum(axis=1).mean())
        recall = adapter_recall(adapter, queries_new=new[queries], docs_new=new, docs_old=old)
        weight = getattr(adapter, "weight", None)
        matmul = microseconds(lambda x, w=weight: x @ w, one, 1) if weight is not None else None
        rows.append(
            [
                kind,
                f"{adapter.fit_seconds:.2f}",
                f"{microseconds(adapter, one, 1):.1f}",
                f"{matmul:.1f}" if matmul is not None else None,
                f"{microseconds(adapter, batch, 64, repeat=200):.2f}",
                f"{cosine:.4f}",
                f"{recall:.3f}",
            ]
        )
    old_queries = old[queries]
    ceiling = adapter_recall(
        lambda x: old_queries, queries_new=new[queries], docs_new=new, docs_old=old
    )
    rows.append(["(old encoder's own queries)", None, None, None, None, "1.0000", f"{ceiling:.3f}"])
    columns = [
        "kind",
        f"fit s ({len(fit):,} pairs)",
        "µs/query b=1",
        "matmul µs b=1",
        "µs/query b=64",
        "held-out cos",
        "recall@10",
    ]
    title = f"query adapters {args.in_dim} -> {args.out_dim}, N = {args.n:,}"
    _common.print_table(title, columns, rows, caption=_common.machine_line())
    print(_common.markdown_table(columns, rows))


if __name__ == "__main__":
    main()
