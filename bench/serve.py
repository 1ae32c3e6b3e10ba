"""Serving under load: latency and throughput of ``ragkit serve`` per mode and client count.

    python bench/serve.py [--dataset DIR] [--limit 3000] [--seconds 8] [--clients 4 16]
                          [--workspace WS] [--screenshot docs/serve-page.png]

Builds a workspace with the default encoder from the first ``--limit`` documents of a BEIR
corpus (each written out as ``<title>.md``), or from the shipped sample corpus when the dataset
is absent, serves it with ``ragkit serve`` in a child process on a free loopback port, and runs closed-loop clients
(threads, one httpx connection each, every client sends its next query when the last one is
answered) for ``--seconds`` per (mode, clients) cell, with the dev queries as texts. Latency is
client-side (request sent to JSON parsed); the server's own ``took_ms`` is reported beside it.

A last phase re-ingests the corpus after rewriting 5% of the files, in a thread of this
process (a cron job on the same machine), while 4 clients send hybrid queries: it counts
errors and incomplete answers and reports the latency while the ingest competes for the CPU.

Everything is bounded by time and stays on 127.0.0.1. On a shared machine the load average
(printed) moves the numbers: compare runs made at a similar load.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common

_common.offline()

SAMPLE = _common.REPO_ROOT / "examples" / "sample-corpus"
MODES = ("dense", "sparse", "hybrid")
K = 10


def corpus_folder(dataset: Path, limit: int, root: Path) -> tuple[Path, list[str]]:
    """Files to ingest and query texts: the BEIR corpus written out, or the sample corpus."""
    if not _common.is_beir(dataset):
        print(f"{dataset} is not a BEIR folder: using {SAMPLE}")
        texts = ["restore a file from a snapshot", "rotate ssh keys", "sqlite wal mode"]
        return SAMPLE, texts * 20
    docs = root / "docs"
    docs.mkdir(parents=True, exist_ok=True)
    for doc in _common.iter_corpus(dataset, limit):
        name = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in doc["_id"])[:80]
        (docs / f"{name}.md").write_text(f"# {doc['title']}\n\n{doc['text']}\n", encoding="utf-8")
    texts = []
    with open(dataset / "queries.jsonl", encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            if record.get("split", "dev") == "dev":
                texts.append(record["text"])
            if len(texts) >= 300:
                break
    return docs, texts


def load(url: str, texts: list[str], *, mode: str, clients: int, seconds: float) -> dict[str, Any]:
    """Closed-loop clients for ``seconds``; latencies of the answers, errors counted."""
    import httpx

    latencies: list[float] = []
    server_ms: list[float] = []
    errors: list[str] = []
    incomplete = 0
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(offset: int) -> None:
        nonlocal incomplete
        with httpx.Client(base_url=url, timeout=60) as http:
            n = offset
            while time.monotonic() < deadline:
                body = {"text": texts[n % len(texts)], "k": K, "mode": mode}
                started = time.perf_counter()
                try:
                    response = http.post("/query", json=body)
                    answer = response.json()
                except (httpx.HTTPError, ValueError) as exc:
                    with lock:
                        errors.append(repr(exc))
                    continue
                took = 1000 * (time.perf_counter() - started)
                with lock:
                    if response.status_code != 200:
                        errors.append(f"{response.status_code}: {answer.get('message')}")
                    else:
                        latencies.append(took)
                        server_ms.append(answer["took_ms"])
                        incomplete += len(answer["hits"]) != K
                n += clients

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    row: dict[str, Any] = {
        "mode": mode,
        "clients": clients,
        "queries": len(latencies),
        "qps": round(len(latencies) / elapsed, 1),
        "errors": len(errors),
        "incomplete": incomplete,
        "first_errors": errors[:3],
    }
    if latencies:
        row |= {
            "p50_ms": round(statistics.median(latencies), 1),
            "p95_ms": round(_common.percentile(latencies, 95), 1),
            "p99_ms": round(_common.percentile(latencies, 99), 1),
            "server_p50_ms": round(statistics.median(server_ms), 1),
        }
    return row


@contextlib.contextmanager
def ragkit_serve(ws: Path) -> Iterator[str]:
    """``ragkit serve`` in its own process (as deployed), on a loopback port; the clients and
    the re-ingest run in this one, so they do not share the server's GIL."""
    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    exe = Path(sys.executable).parent / "ragkit"
    command = [str(exe), "serve", "-w", str(ws), "--port", str(port), "--concurrency", "16"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ragkit serve did not start: {server.stderr.read()[-2000:]!r}")
            time.sleep(0.25)
        httpx.post(f"{url}/query", json={"text": "warm up", "k": K}, timeout=60)
        yield url
    finally:
        server.terminate()
        server.wait(30)


def rewrite_some(folder: Path, fraction: float) -> int:
    files = sorted(folder.glob("*.md"))
    chosen = files[:: max(1, round(1 / fraction))]
    for path in chosen:
        path.write_text(path.read_text(encoding="utf-8") + "\nUpdated entry.\n", encoding="utf-8")
    return len(chosen)


def screenshot(url: str, path: Path, text: str) -> None:
    from urllib.parse import quote

    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        print("no chromium on PATH: no screenshot")
        return
    subprocess.run(
        [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1100,900",
            "--virtual-time-budget=15000",
            f"--screenshot={path}",
            f"{url}/?q={quote(text)}&k=4",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    print(f"screenshot: {path}")


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0])
    p.set_defaults(limit=3000)
    p.add_argument("--seconds", type=float, default=8.0, help="per (mode, clients) cell")
    p.add_argument("--clients", type=int, nargs="+", default=[4, 16])
    p.add_argument("--workspace", type=Path, help="reuse (or build here) instead of a temp dir")
    p.add_argument("--screenshot", type=Path, help="save the search page's screenshot here")
    p.add_argument("--screenshot-query", default="real-time strategy game")
    args = p.parse_args()

    import ragkit

    root = Path(tempfile.mkdtemp(prefix="ragkit-serve-bench-"))
    if args.workspace:  # the corpus beside it, so a rerun re-ingests the same files
        root = args.workspace.resolve().parent / "serve-bench"
    try:
        docs, texts = corpus_folder(args.dataset, args.limit, root)
        ws = args.workspace or root / "ws"
        with ragkit.open(ws) as kit:
            started = time.perf_counter()
            report = kit.ingest(docs)
            built = time.perf_counter() - started
            chunks = kit.store.counts()["chunks"]
        print(f"workspace: {chunks:,} chunks ({report.files_new} new files) in {built:.1f} s")
        rows = []
        with ragkit_serve(ws) as url:
            if args.screenshot:
                screenshot(url, args.screenshot, args.screenshot_query)
            for clients in args.clients:
                for mode in MODES:
                    rows.append(load(url, texts, mode=mode, clients=clients, seconds=args.seconds))
                    print(rows[-1])
            changed = rewrite_some(docs, 0.05) if docs != SAMPLE else 0
            ingest_s: list[float] = []

            def reingest() -> None:
                with ragkit.open(ws) as writer:
                    t = time.perf_counter()
                    writer.ingest(docs)
                    ingest_s.append(time.perf_counter() - t)

            writer = threading.Thread(target=reingest)
            writer.start()
            during = load(url, texts, mode="hybrid", clients=4, seconds=args.seconds * 2)
            writer.join()
            during |= {"mode": "hybrid during re-ingest", "files_changed": changed}
            during["ingest_s"] = round(ingest_s[0], 1) if ingest_s else None
            rows.append(during)
            print(during)
    finally:
        if not args.workspace:
            shutil.rmtree(root, ignore_errors=True)

    info = _common.machine()  # its load average: the one at the end, too
    load_now = [round(x, 2) for x in os.getloadavg()]
    columns = ["mode", "clients", "queries", "q/s", "p50 ms", "p95 ms", "p99 ms", "server p50"]
    columns += ["errors", "incomplete"]
    keys = ["mode", "clients", "queries", "qps", "p50_ms", "p95_ms", "p99_ms", "server_p50_ms"]
    cells = [[r.get(key) for key in [*keys, "errors", "incomplete"]] for r in rows]
    caption = (
        f"{chunks:,} chunks, k={K}, {args.seconds:g} s per cell; load avg {load_now} at the end"
    )
    _common.print_table("ragkit serve under load", columns, cells, caption=caption)
    print(_common.markdown_table(columns, cells))
    print(_common.machine_line(info))
    path = _common.write_result(
        "serve", {"machine": info, "chunks": chunks, "rows": rows, "load_avg_end": load_now}
    )
    print(f"results: {path}")


if __name__ == "__main__":
    main()
