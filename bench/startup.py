"""Startup cost: wall time of each command entry point, in a fresh process every run.

    python bench/startup.py [--dataset DIR] [--limit 200] [--runs 5] [--workspace WS]

Every row is a new Python process (the cost a user pays once per command), the median of
``--runs`` runs; ``python -c pass`` is the floor every other row stands on. ``ragkit status``
and ``ragkit query`` run against a workspace built once with the default encoder from the
first ``--limit`` documents of a BEIR corpus (written out as ``.txt`` files, ingested with
``ragkit ingest``), or against ``--workspace``. The "torch" column says whether the process
had imported torch (and sentence-transformers) by the time it exited: a command that never
encodes should not pay for them.

The second table splits the first query of a cold process into its phases, each timed inside
one process (median over the runs): importing ragkit and the CLI, opening the workspace,
loading the encoder (which imports torch and sentence-transformers), its weights fingerprint
(checked against the collection's before any search), encoding the query, and searching
(loading the committed index generation, dense + sparse search, fusion, rows).

On a shared machine the load drifts between runs: compare medians, and rerun when the
load average printed under the table is high.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common

_common.offline()

QUERY = "how do I back up files to a remote server"

# Runs a command in this process and reports, at exit, which heavy stacks it had imported.
_PROBE = """
import atexit, os, sys
def _report():
    heavy = [m for m in ("torch", "sentence_transformers") if m in sys.modules]
    os.write(2, ("\\nSTARTUP_PROBE " + ",".join(heavy) + "\\n").encode())
atexit.register(_report)
argv = sys.argv[1:]
if argv[0] == "-c":
    exec(compile(argv[1], "<probe>", "exec"), {"__name__": "__main__"})
else:
    sys.argv = ["ragkit", *argv]
    from ragkit.cli.app import main
    main()
"""

# The phases of a cold first query, timed inside one process.
_PHASES = """
import json, sys, time
t0 = time.perf_counter()
import ragkit
from ragkit.cli import app  # what the console script imports before the command runs
t1 = time.perf_counter()
kit = ragkit.open(sys.argv[1], create=False)
t2 = time.perf_counter()
encoder = kit.encoder
t3 = time.perf_counter()
encoder.fingerprint
t4 = time.perf_counter()
vectors = encoder.encode_queries([sys.argv[2]])
t5 = time.perf_counter()
hits = kit.query_many([sys.argv[2]], k=5, query_vectors=vectors)[0]
t6 = time.perf_counter()
assert hits, "the query found nothing"
print(json.dumps({"import ragkit + cli": t1 - t0, "open workspace": t2 - t1,
                  "load encoder": t3 - t2, "encoder fingerprint": t4 - t3,
                  "encode query": t5 - t4, "search": t6 - t5, "total": t6 - t0}))
"""


def _ragkit_exe() -> str:
    exe = Path(sys.executable).with_name("ragkit")
    return str(exe) if exe.exists() else shutil.which("ragkit") or "ragkit"


def _run(argv: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return seconds


def _heavy_imports(argv: list[str]) -> str:
    """Which of torch / sentence-transformers the command's process imported."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True, check=False
    )
    lines = [line for line in done.stderr.splitlines() if line.startswith("STARTUP_PROBE")]
    if done.returncode != 0 or not lines:
        return f"? (exit {done.returncode})"
    return lines[-1].removeprefix("STARTUP_PROBE").strip() or "no"


def build_workspace(dataset: Path, limit: int, root: Path) -> Path:
    docs = root / "docs"
    docs.mkdir(parents=True)
    for i, doc in enumerate(_common.iter_corpus(dataset, limit)):
        body = f"{doc['title']}\n\n{doc['text']}\n" if doc["title"] else doc["text"] + "\n"
        (docs / f"{i:05d}.txt").write_text(body, encoding="utf-8")
    ws = root / "ws"
    subprocess.run(
        [_ragkit_exe(), "ingest", str(docs), "-w", str(ws), "--json"],
        check=True,
        capture_output=True,
    )
    return ws


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0])
    p.set_defaults(limit=200)
    p.add_argument("--runs", type=int, default=5, help="runs per row (the median is shown)")
    p.add_argument("--workspace", type=Path, default=None, help="an existing workspace to use")
    args = p.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="ragkit-startup-"))
    try:
        ws = args.workspace or build_workspace(args.dataset, args.limit, tmp)
        py, exe = sys.executable, _ragkit_exe()
        rows_spec: list[tuple[str, list[str], list[str] | None]] = [
            ("python -c pass", [py, "-c", "pass"], None),
            ("import ragkit", [py, "-c", "import ragkit"], ["-c", "import ragkit"]),
            (
                "import ragkit.errors",
                [py, "-c", "import ragkit.errors"],
                ["-c", "import ragkit.errors"],
            ),
            (
                "import ragkit.connectors",
                [py, "-c", "import ragkit.connectors"],
                ["-c", "import ragkit.connectors"],
            ),
            ("ragkit --help", [exe, "--help"], ["--help"]),
            ("ragkit status -w WS", [exe, "status", "-w", str(ws)], ["status", "-w", str(ws)]),
            (
                "ragkit query … -w WS (cold)",
                [exe, "query", QUERY, "-w", str(ws), "--json"],
                ["query", QUERY, "-w", str(ws), "--json"],
            ),
        ]
        timings: dict[str, list[float]] = {name: [] for name, _, _ in rows_spec}
        phases: list[dict[str, float]] = []
        for _ in range(args.runs):  # interleaved, so a load spike hits every row alike
            for name, argv, _probe in rows_spec:
                timings[name].append(_run(argv))
            out = subprocess.run(
                [py, "-c", _PHASES, str(ws), QUERY], capture_output=True, text=True, check=True
            )
            phases.append(json.loads(out.stdout.strip().splitlines()[-1]))

        base = statistics.median(timings["python -c pass"])
        rows, results = [], []
        for name, _argv, probe in rows_spec:
            median = statistics.median(timings[name])
            heavy = _heavy_imports(probe) if probe else "–"
            rows.append(
                [name, f"{median:.2f}", f"{median - base:+.2f}", f"{min(timings[name]):.2f}", heavy]
            )
            results.append(
                {"entry": name, "median_s": median, "runs_s": timings[name], "heavy": heavy}
            )
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        _common.print_table(
            f"startup · median of {args.runs} runs · fresh process each",
            ["entry point", "wall s", "over python", "min s", "torch / ST imported"],
            rows,
            caption=f"{_common.machine_line()}\nload average at the end: {load}",
        )
        phase_rows = [
            [name, f"{statistics.median(p[name] for p in phases):.2f}"] for name in phases[0]
        ]
        _common.print_table(
            "first query of a cold process, by phase (median s)", ["phase", "s"], phase_rows
        )
        path = _common.write_result(
            "startup",
            {
                "workspace_docs": None if args.workspace else args.limit,
                "runs": args.runs,
                "entries": results,
                "query_phases_s": {name: [p[name] for p in phases] for name in phases[0]},
            },
        )
        print(f"results: {path}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
