"""Encoding on Ray against encoding in process, on this machine, at equal cores.

    python bench/distributed.py [--dataset DIR] [--limit 2000] [--repeats 3] [--cpus 2]

The first ``--limit`` documents of a BEIR corpus (title + text) go through
``encode_into_cache`` into a fresh store, with the default encoder (all-MiniLM-L6-v2), once per
engine and repeat; the table shows medians. Rows:

- in-process: today's loop, torch on ``--cpus`` threads.
- ray, 1 actor: one actor with ``--cpus`` torch threads.
- ray, 2 actors: two actors with ``--cpus / 2`` threads each.

A local Ray cluster of ``--cpus`` CPUs is started once before timing; each Ray run includes
its actors' start (worker processes importing torch and loading the model), which an ingest
pays once per commit batch, so the overhead column is the honest per-job cost. The overhead is
``ray seconds / in-process seconds - 1``. Skips, saying why, when the dataset or ray is absent.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common


def main() -> int:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--cpus", type=int, default=2)
    p.set_defaults(limit=2000)
    args = p.parse_args()
    if not _common.is_beir(args.dataset):
        print(f"skipped: no BEIR corpus at {args.dataset}")
        return 0
    try:
        import ray
    except ImportError:
        print("skipped: ray is not installed (pip install 'ragkit[ray]')")
        return 0
    _common.offline()
    import torch

    from ragkit.compute import InProcessEngine
    from ragkit.compute.ray_engine import RayEngine
    from ragkit.config import ComputeConfig, EncoderConfig
    from ragkit.embedding_cache import encode_into_cache
    from ragkit.encoders.registry import load_encoder
    from ragkit.store import Store

    docs = list(_common.iter_corpus(args.dataset, args.limit))
    texts = {f"{i:08x}": f"{d.get('title', '')}\n{d['text']}" for i, d in enumerate(docs)}
    config = EncoderConfig()
    encoder = load_encoder(config)
    model_fp = encoder.fingerprint["id"]
    torch.set_num_threads(args.cpus)
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)

    def ray_engine(actors: int) -> RayEngine:
        compute = ComputeConfig(
            engine="ray", actors=actors, threads_per_actor=max(1, args.cpus // actors)
        )
        return RayEngine(compute, config)

    engines = {
        "in-process": InProcessEngine,
        "ray, 1 actor": lambda: ray_engine(1),
        "ray, 2 actors": lambda: ray_engine(2),
    }
    seconds: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(args.repeats):
        for name, make in engines.items():  # interleaved: load drift hits every row alike
            with tempfile.TemporaryDirectory() as tmp:
                store = Store(Path(tmp) / "store.sqlite")
                store.encode_engine = make()
                started = time.perf_counter()
                vectors = encode_into_cache(encoder, store, model_fp, texts)
                seconds[name].append(time.perf_counter() - started)
                store.close()
            assert len(vectors) == len(texts)
    ray.shutdown()

    base = statistics.median(seconds["in-process"])
    rows = []
    for name, values in seconds.items():
        median = statistics.median(values)
        rows.append(
            [
                name,
                _common.fmt_seconds(median),
                _common.fmt_rate(len(texts), median),
                f"{median / base - 1:+.0%}" if name != "in-process" else "",
                " ".join(f"{v:.1f}" for v in values),
            ]
        )
    columns = ["engine", "median", "texts/s", "overhead", "runs (s)"]
    title = f"{len(texts)} texts, {args.cpus} cores, {args.repeats} repeats"
    _common.print_table(title, columns, rows)
    print(_common.machine_line())
    print(_common.markdown_table(columns, rows))
    _common.write_result(
        "distributed", {"texts": len(texts), "cpus": args.cpus, "seconds": seconds}
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
