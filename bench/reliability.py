"""Reliability probe: hostile inputs, kill -9, concurrent writers and readers, damaged workspaces.

    python bench/reliability.py --quick          # < 3 minutes on 2 loaded cores
    python bench/reliability.py                  # full: more kills, the 50 MB line, 150k divs
    python bench/reliability.py --json           # the results as JSON on stdout
    python bench/reliability.py --only inputs,damage --keep /tmp/probe

Everything happens in a temporary folder. Each ``ragkit`` command runs in its own child process
(forked from this one after ragkit, torch and the parsers were imported, so a command costs
tenths of a second instead of seconds of imports), with its stdout and stderr captured, a
wall-clock timeout (a hang is a failure, not a hang of the probe), its peak RSS read from
``wait4`` and, for the input cases, an address-space limit (``RLIMIT_AS``). The child calls the
very entry point the ``ragkit`` executable calls; an exception escaping it is printed as a
traceback, as the interpreter would. The races "swapped between walk and read" cannot be timed
from outside, so those cases install a hook in the child first (see ``_hook``).

The encoder is a tiny ``StaticEmbedding`` (the one the test suite builds) saved to a folder that
``[encoder] model`` names, so the probe measures robustness, not encoding speed
(``--encoder default`` uses the shipped all-MiniLM-L6-v2 instead). Exit code 0 only if every
case passes. See docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import resource
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common
import _reliability_cases as cases

_common.offline()

GIB, MIB = 1024**3, 1024**2
TRACEBACK = "Traceback (most recent call last)"
WORDS = [
    "backup", "restore", "snapshot", "disk", "storage", "zfs", "pool", "raid", "sqlite", "wal",
    "index", "vacuum", "query", "git", "rebase", "merge", "commit", "branch", "shell", "find",
    "network", "dns", "dhcp", "subnet", "router", "ssh", "key", "systemd", "timer", "cron",
    "docker", "container", "python", "package", "venv", "monitoring", "alert", "certificate",
    "tls", "encryption", "password", "linux", "server", "apple", "banana", "cherry", "grape",
]  # fmt: skip


# -- child processes ------------------------------------------------------------------------------
@dataclass
class Outcome:
    rc: int | None
    seconds: float
    maxrss_mib: float
    stdout: str
    stderr: str
    timed_out: bool = False
    killed_by: int | None = None

    @property
    def traceback(self) -> bool:
        return TRACEBACK in self.stderr or TRACEBACK in self.stdout

    def json(self) -> Any:
        try:
            return json.loads(self.stdout)
        except ValueError:
            return None

    def trouble(self, allowed: tuple[int, ...]) -> str:
        """Why this run is not acceptable, or ''."""
        if self.timed_out:
            return f"hung (killed after {self.seconds:.0f}s)"
        if self.killed_by is not None:
            return f"killed by signal {self.killed_by}"
        if self.traceback:
            return "traceback: " + _last_line(self.stderr)
        if self.rc not in allowed:
            return f"exit {self.rc}: " + _last_line(self.stderr or self.stdout)
        return ""


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return (lines[-1] if lines else "")[:160]


class Child:
    """A forked child running ``fn(*args)``; ``wait`` enforces the timeout."""

    def __init__(
        self, fn: Callable[..., Any], *args: Any, cwd: Path | None = None, mem_limit: int = 0
    ) -> None:
        # closed by wait(): the files outlive this call, so no with-block
        self.out = tempfile.TemporaryFile()  # noqa: SIM115
        self.err = tempfile.TemporaryFile()  # noqa: SIM115
        sys.stdout.flush()
        sys.stderr.flush()
        self.started = time.perf_counter()
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                os.dup2(self.out.fileno(), 1)
                os.dup2(self.err.fileno(), 2)
                if cwd is not None:
                    os.chdir(cwd)
                if mem_limit:
                    resource.setrlimit(resource.RLIMIT_AS, (mem_limit, mem_limit))
                result = fn(*args)
                code = result if isinstance(result, int) else 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)

    def wait(self, timeout: float) -> Outcome:
        deadline = self.started + timeout
        timed_out = False
        while True:
            pid, status, usage = os.wait4(self.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                timed_out = True
                self.kill()
                _, status, usage = os.wait4(self.pid, 0)
                break
            time.sleep(0.01)
        seconds = time.perf_counter() - self.started
        killed = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        rc = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
        return Outcome(
            rc,
            seconds,
            usage.ru_maxrss / 1024,
            _read(self.out),
            _read(self.err),
            timed_out,
            None if timed_out else killed,
        )


def _read(handle: Any) -> str:
    handle.seek(0)
    text = handle.read().decode("utf-8", "replace")
    handle.close()
    return text


def _cli(argv: list[str], hook: str = "", target: str = "") -> None:
    if hook:
        _hook(hook, target)
    from ragkit.cli.app import app

    app(args=argv, prog_name="ragkit")


def _hook(spec: str, target: str) -> None:
    """Swap ``target`` right after the walk yields it (``walk:``) or right after ingest's
    ``os.stat`` of it returns, before the ``open`` (``stat:``): the races a real folder loses."""
    import ragkit.connectors.base as base
    import ragkit.pipelines.ingest as ingest

    when, action = spec.split(":")
    done: list[str] = []

    def due(path: object) -> bool:
        hit = target in os.fsdecode(os.fspath(path)) and not done  # type: ignore[arg-type]
        if hit:
            done.append(action)
        return hit

    if when == "walk":
        walk = ingest.walk_files

        def walk_files(*args: Any, **kwargs: Any) -> Any:
            for entry in walk(*args, **kwargs):
                yield entry
                if due(entry.path):
                    cases.swap(Path(entry.path), action)

        ingest.walk_files = walk_files  # type: ignore[assignment]
    else:
        real_stat = os.stat

        class _Os:
            def __getattr__(self, name: str) -> Any:
                return getattr(os, name)

            @staticmethod
            def stat(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
                result = real_stat(path, *args, **kwargs)
                if due(path):
                    cases.swap(Path(path), action)
                return result

        base.os = _Os()  # type: ignore[assignment]


@dataclass
class Probe:
    """Paths, settings and the results of every case."""

    root: Path
    model: str
    quick: bool
    timeout: float
    mem_limit: int
    heavy_factor: float = 4.0
    baseline_mib: float = 0.0
    results: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def run(
        self, argv: list[str], *, cwd: Path | None = None, timeout: float | None = None, **kw: Any
    ) -> Outcome:
        child = Child(_cli, argv, kw.get("hook", ""), kw.get("target", ""), cwd=cwd,
                      mem_limit=kw.get("mem_limit", 0))  # fmt: skip
        return child.wait(timeout or self.timeout)

    def workspace(self, path: Path) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        if self.model != "default":
            (path / "ragkit.toml").write_text(f'[encoder]\nmodel = "{self.model}"\n')
        return path

    def record(self, category: str, name: str, problems: list[str], **detail: Any) -> None:
        self.results.setdefault(category, []).append(
            {"case": name, "ok": not problems, "problems": problems, **detail}
        )


# -- corpora and store reads ----------------------------------------------------------------------
def good_files(folder: Path, prefix: str, n: int, seed: int) -> dict[str, tuple[str, str]]:
    """``n`` small files in five formats; returns ``{name: (marker word, sentence)}``."""
    rng = random.Random(seed)
    out = {}
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        marker = f"{prefix.replace('-', '')}n{i}marker"
        sentence = " ".join(rng.sample(WORDS, 12))
        kind = ("txt", "md", "html", "csv", "jsonl")[i % 5]
        text = f"{marker} {sentence}"
        body = {
            "txt": f"{text}\n",
            "md": f"# Notes {i}\n\n{text}\n",
            "html": f"<html><body><h1>Page {i}</h1><p>{text}</p></body></html>",
            "csv": f"id,text\nrow{i},{text}\n",
            "jsonl": json.dumps({"id": f"r{i}", "text": text}) + "\n",
        }[kind]
        name = f"good-{prefix}-{i}.{kind}"
        (folder / name).write_text(body, encoding="utf-8")
        out[name] = (marker, sentence)
    return out


def chunk_texts(ws: Path) -> list[tuple[str, int, str]]:
    """(file path, ordinal, text) of every chunk, read with plain sqlite3."""
    db = sqlite3.connect(f"file:{ws / 'store.sqlite'}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT d.file_path, c.ordinal, c.text FROM chunks c JOIN documents d USING(doc_id)"
        ).fetchall()
    finally:
        db.close()
    return sorted(rows)


def leaked(ws: Path, needle: str) -> list[str]:
    """Workspace files whose bytes contain ``needle``."""
    data = needle.encode()
    return [str(p.relative_to(ws)) for p in ws.rglob("*") if p.is_file() and data in p.read_bytes()]


def _query_hits(outcome: Outcome) -> list[str]:
    """The files of the hits (a csv or jsonl record's uri is ``file#record``)."""
    hits = outcome.json()
    return [h.get("uri", "").split("#")[0] for h in hits] if isinstance(hits, list) else []


def _files_of(rows: list[tuple[str, int, str]], tag: str) -> str:
    return " ".join(" ".join(text.split()) for path, _, text in rows if f"bad-{tag}" in path)


def _documents_of(ws: Path, tag: str) -> int:
    db = sqlite3.connect(f"file:{ws / 'store.sqlite'}?mode=ro", uri=True)
    try:
        sql = "SELECT COUNT(*) FROM documents WHERE file_path LIKE ?"
        return int(db.execute(sql, (f"%bad-{tag}%",)).fetchone()[0])
    finally:
        db.close()


# -- 1. bad inputs beside good files ----------------------------------------------------------------
@dataclass
class _Run:
    """One ingest of a folder holding some input cases and three good files."""

    outcome: Outcome
    ws: Path
    goods: dict[str, tuple[str, str]]
    trouble: str = ""
    report: dict[str, Any] = field(default_factory=dict)
    rows: list[tuple[str, int, str]] = field(default_factory=list)


def _ingest_group(probe: Probe, group: list[cases.InputCase], folder: Path) -> _Run:
    docs, outside = folder / "docs", folder / "outside"
    goods = good_files(docs, folder.name, 3, seed=len(probe.results.get("inputs", [])))
    outside.mkdir()
    for case in group:
        if case.special:
            cases.build_special(case, docs, outside)
        elif case.build is not None:
            case.build(docs / case.filename())
    ws = probe.workspace(folder / "ws")
    argv = ["ingest", str(docs), "-w", str(ws), "--json"]
    one = group[0] if len(group) == 1 else None
    timeout = probe.timeout * (probe.heavy_factor if one and one.heavy else 1)
    if one and one.hook:  # a race either hangs or takes a second
        timeout = probe.timeout / 2
    if one and one.special == "reswap":  # the first ingest sees a file, the second a symlink
        probe.run(argv, timeout=timeout)
        cases.swap(docs / one.filename(), "passwd")
    outcome = probe.run(
        argv, timeout=timeout, hook=one.hook if one else "", target=f"bad-{one.tag}" if one else "",
        mem_limit=probe.mem_limit,
    )  # fmt: skip
    run = _Run(outcome, ws, goods, outcome.trouble((0, 3)))
    size = sum(p.stat().st_blocks * 512 for p in docs.rglob("*") if p.is_file())
    bound = probe.baseline_mib + 512 + 20 * size / MIB
    if not run.trouble and outcome.maxrss_mib > bound and probe.baseline_mib:
        run.trouble = f"peak RSS {outcome.maxrss_mib:,.0f} MiB > bound {bound:,.0f} MiB"
    if not run.trouble:
        report = outcome.json()
        if isinstance(report, dict):
            run.report = report
        else:
            run.trouble = "no JSON report on stdout"
    if not run.trouble:
        try:
            run.rows = chunk_texts(ws)
        except sqlite3.Error as exc:
            run.trouble = f"store unreadable: {exc}"
    return run


def _batch_problems(probe: Probe, run: _Run) -> list[str]:
    """What is wrong with the batch as a whole: exit code, good files, queries."""
    problems = []
    failures = run.report["failures"]
    if (run.outcome.rc == 3) != bool(failures):
        problems.append(f"exit {run.outcome.rc} with {len(failures)} failures listed")
    if other := [f["path"] for f in failures if "/good-" in f["path"]]:
        problems.append(f"good files failed: {other[:3]}")
    paths = {path for path, _, _ in run.rows}
    if missing := [name for name in run.goods if name not in paths]:
        problems.append(f"{len(missing)} good files not in the store")
    name, (marker, _) = next(iter(run.goods.items()))
    query = probe.run(["query", marker, "-w", str(run.ws), "-k", "3", "--json"])
    if why := query.trouble((0,)):
        problems.append(f"query after ingest: {why}")
    elif name not in _query_hits(query):
        problems.append("a good file is not found by its marker word")
    return problems


def _judge(case: cases.InputCase, run: _Run) -> list[str]:
    problems = []
    failures = [f for f in run.report["failures"] if f"bad-{case.tag}" in f["path"]]
    warned = [p for p in run.report["problems"] if f"bad-{case.tag}" in p]
    if any(not f["reason"].strip() for f in failures):
        problems.append("failure listed without a reason")
    if case.contains and any("empty" in f["reason"] for f in failures):
        problems.append(f"reported as {failures[0]['reason']!r}, but it holds text")
    text = _files_of(run.rows, case.tag)
    lost = [w for w in case.contains if w not in text]
    if case.expect == "reject" and not (failures or warned):
        problems.append("not listed as a failure" + (" (ingested)" if text else " (vanished)"))
    if case.expect == "reject" and text and not failures:
        problems.append("ingested text from a file that should be rejected")
    if case.expect == "skip":  # an unsupported type in a folder: counted as skipped, not failed
        if failures or text:
            problems.append("listed as a failure" if failures else "ingested")
        elif not run.report.get("files_skipped"):
            problems.append("not counted as skipped")
    if case.expect == "ingest" and (failures or lost):
        problems.append(f"failed: {failures[0]['reason']}" if failures else f"text lost: {lost}")
    if case.expect in ("lossless", "warn") and not failures and not warned:
        if not text:
            problems.append("no chunks, no failure, no warning (silently dropped)")
        elif case.expect == "warn":
            problems.append("text guessed or dropped without a warning")
        elif lost:
            problems.append(f"text silently lost: {lost}")
        elif case.min_docs and _documents_of(run.ws, case.tag) < case.min_docs:
            problems.append(f"records merged into fewer than {case.min_docs} documents, silently")
    for needle in case.absent:
        if needle == "@passwd":
            if where := leaked(run.ws, cases.passwd_marker()):
                problems.append(f"/etc/passwd content leaked into {where}")
        elif needle in text:
            problems.append(f"{needle!r} kept in chunk text")
    return problems


def _probe_group(probe: Probe, group: list[cases.InputCase], label: str) -> None:
    """Ingest the group in one batch; if the batch itself fails, split it to find the culprits
    (a case's outcome is judged only in a batch that finished)."""
    run = _ingest_group(probe, group, probe.root / "inputs" / label)
    if run.trouble and len(group) > 1:
        half = len(group) // 2
        _probe_group(probe, group[:half], label + "a")
        _probe_group(probe, group[half:], label + "b")
        return
    batch = [run.trouble] if run.trouble else _batch_problems(probe, run)
    for case in group:
        problems = batch + ([] if run.trouble else _judge(case, run))
        probe.record(
            "inputs", f"{case.fmt}: {case.title}", problems, tag=case.tag, note=case.note,
            batch=label, seconds=round(run.outcome.seconds, 2),
            peak_rss_mib=round(run.outcome.maxrss_mib),
        )  # fmt: skip


def run_inputs(probe: Probe) -> None:
    """Light cases go in batches of eight (split when a batch fails); heavy cases, and the
    races that need a hook, run alone. Then everything light and 50 good files in one ingest."""
    all_cases = [c for c in cases.input_cases(full=not probe.quick) if not c.full_only]
    (probe.root / "inputs").mkdir()
    docs = probe.root / "inputs" / "baseline" / "docs"
    good_files(docs, "base", 3, seed=0)
    ws = probe.workspace(docs.parent / "ws")
    first = probe.run(["ingest", str(docs), "-w", str(ws), "--json"], timeout=120)
    probe.baseline_mib = first.maxrss_mib  # peak RSS of a child ingesting three good files
    if why := first.trouble((0,)):
        probe.record("inputs", "baseline: 3 good files", [why])
    alone = [c for c in all_cases if c.heavy or c.hook or c.special == "reswap"]
    light = [c for c in all_cases if c not in alone]
    for i in range(0, len(light), 8):
        _probe_group(probe, light[i : i + 8], f"g{i // 8:02d}")
    for case in alone:
        _probe_group(probe, [case], case.tag)
    _mixed_batch(probe, light)


def _mixed_batch(probe: Probe, chosen: list[cases.InputCase]) -> None:
    """Every light bad input and 50 good files in one folder, one ingest: the README's promise."""
    folder = probe.root / "inputs" / "mixed"
    docs = folder / "docs"
    goods = good_files(docs, "mixed", 50, seed=99)
    outside = folder / "outside"
    outside.mkdir()
    for case in chosen:
        if case.special:
            cases.build_special(case, docs, outside)
        elif case.build is not None:
            case.build(docs / case.filename())
    ws = probe.workspace(folder / "ws")
    outcome = probe.run(
        ["ingest", str(docs), "-w", str(ws), "--json"], timeout=probe.timeout * 4,
        mem_limit=probe.mem_limit,
    )  # fmt: skip
    problems = []
    if why := outcome.trouble((0, 3)):
        problems.append(why)
    try:
        paths = {path for path, _, _ in chunk_texts(ws)}
        if missing := [name for name in goods if name not in paths]:
            problems.append(f"{len(missing)} of {len(goods)} good files not in the store")
        else:
            found = Child(_find_markers, ws, goods).wait(probe.timeout * 2)
            if why := found.trouble((0,)):
                problems.append(f"queries: {why}")
            elif lost := found.json():
                problems.append(f"{len(lost)} good files not found by their marker: {lost[:3]}")
    except sqlite3.Error as exc:
        problems.append(f"store unreadable: {exc}")
    if where := leaked(ws, cases.passwd_marker()):
        problems.append(f"/etc/passwd content leaked into {where}")
    probe.record(
        "inputs", f"mixed batch: {len(chosen)} bad + {len(goods)} good files in one ingest",
        problems, seconds=round(outcome.seconds, 2),
    )  # fmt: skip


def _find_markers(ws: Path, goods: dict[str, tuple[str, str]]) -> None:
    import ragkit

    with ragkit.open(ws, create=False) as kit:
        lost = [name for name, (marker, _) in goods.items()
                if name not in [h.uri.split("#")[0] for h in kit.query(marker, k=3)]]  # fmt: skip
    print(json.dumps(lost))


# -- 2. kill -9 during ingest ---------------------------------------------------------------------
def _state(ws: Path) -> tuple[list[tuple[str, int, str]], int]:
    """The chunk texts and the number of duplicate (document, ordinal) rows."""
    db = sqlite3.connect(f"file:{ws / 'store.sqlite'}?mode=ro", uri=True)
    try:
        dupes = db.execute(
            "SELECT COUNT(*) - COUNT(DISTINCT doc_id || ':' || ordinal) FROM chunks"
        ).fetchone()[0]
    finally:
        db.close()
    return chunk_texts(ws), dupes


def run_kills(probe: Probe, kills: int, files: int) -> None:
    base = probe.root / "kills"
    corpus = base / "corpus"
    good_files(corpus, "kill", files, seed=7)
    argv = ["ingest", "docs", "-w", "ws", "--json", "--commit-every", "16"]

    ref = base / "reference"
    shutil.copytree(corpus, ref / "docs")
    probe.workspace(ref / "ws")
    clean = probe.run(argv, cwd=ref, timeout=probe.timeout * 6)
    if why := clean.trouble((0,)):
        probe.record("kill -9", "reference ingest", [why])
        return
    expected, _ = _state(ref / "ws")
    rng = random.Random(1)
    for i in range(kills):
        run = base / f"run{i:02d}"
        shutil.copytree(corpus, run / "docs")
        probe.workspace(run / "ws")
        at = rng.uniform(0.02, 0.9) * clean.seconds
        problems = []
        for _ in range(5):  # an ingest faster than the reference: kill earlier, in a fresh one
            child = Child(_cli, argv, cwd=run)
            time.sleep(max(0.0, at - (time.perf_counter() - child.started)))
            child.kill()
            if child.wait(5).killed_by is not None:
                break
            shutil.rmtree(run / "ws")
            probe.workspace(run / "ws")
            at /= 2
        else:
            problems.append(f"every ingest finished before its kill (last at {at:.2f}s)")
        again = probe.run(argv, cwd=run, timeout=probe.timeout * 6)
        if why := again.trouble((0,)):
            problems.append(f"re-run: {why}")
        else:
            problems += _compare(probe, run / "ws", expected)
        probe.record("kill -9", f"kill at {at:.2f}s of {clean.seconds:.2f}s", problems,
                     at=round(at, 3))  # fmt: skip


def _compare(probe: Probe, ws: Path, expected: list[tuple[str, int, str]]) -> list[str]:
    problems = []
    try:
        got, dupes = _state(ws)
    except sqlite3.Error as exc:
        return [f"store unreadable: {exc}"]
    if dupes:
        problems.append(f"{dupes} duplicate chunks")
    if got != expected:
        missing, extra = len(set(expected) - set(got)), len(set(got) - set(expected))
        problems.append(f"differs from a fresh ingest: {missing} chunks missing, {extra} extra")
    doctor = probe.run(["doctor", "-w", str(ws), "--json"])
    if why := doctor.trouble((0,)):
        problems.append(f"doctor: {why} {_doctor_problems(doctor)}")
    return problems


def _doctor_problems(outcome: Outcome) -> list[str]:
    report = outcome.json()
    if not isinstance(report, dict):
        return []
    checks = list(report.get("store", []))
    for collection in report.get("collections", []):
        checks += collection.get("checks", [])
    return [f"{c['name']}: {c['detail']}"[:120] for c in checks if c.get("status") == "problem"]


# -- 3. concurrency -------------------------------------------------------------------------------
def _query_loop(ws: Path, stop: Path, queries: list[tuple[str, str]]) -> None:
    """Query until ``stop`` exists: the cached reader and, every 10th query, a fresh one."""
    import ragkit

    stats: dict[str, Any] = {"queries": 0, "errors": [], "misses": 0, "generations": set()}
    kit = ragkit.open(ws, create=False)
    while not stop.exists() or stats["queries"] < 5:
        marker, name = queries[stats["queries"] % len(queries)]
        try:
            if stats["queries"] % 10 == 9:
                with ragkit.open(ws, create=False) as fresh:
                    hits = fresh.query(marker, k=3)
            else:
                hits = kit.query(marker, k=3)
            if name not in [h.uri.split("#")[0] for h in hits]:
                stats["misses"] += 1
            collection = kit.collection()
            stats["generations"].add(collection.record.generation if collection else 0)
        except Exception as exc:
            stats["errors"].append(f"{type(exc).__name__}: {exc}"[:200])
        stats["queries"] += 1
    kit.close()
    stats["generations"] = len(stats["generations"])
    print(json.dumps(stats))


def run_concurrency(probe: Probe, files: int) -> None:
    base = probe.root / "concurrency"
    goods = good_files(base / "docs", "conc", 20, seed=3)
    good_files(base / "more", "more", files, seed=4)
    good_files(base / "other", "other", 3, seed=5)
    ws = probe.workspace(base / "ws")
    first = probe.run(["ingest", "docs", "-w", "ws", "--json"], cwd=base)
    if why := first.trouble((0,)):
        probe.record("concurrency", "first ingest", [why])
        return
    stop = base / "stop"
    queries = [(marker, name) for name, (marker, _) in goods.items()]
    reader = Child(_query_loop, ws, stop, queries)
    writer = Child(_cli, ["ingest", "more", "-w", "ws", "--json", "--commit-every", "8"], cwd=base)
    deadline = time.perf_counter() + probe.timeout
    while not (ws / "write.lock").read_bytes().startswith(b"pid"):
        if time.perf_counter() > deadline:
            break
        time.sleep(0.02)
    # The running writer records its new source in ragkit.toml once it holds the lock: take the
    # snapshot after that, so only a refused writer could change it afterwards.
    while b"more" not in (ws / "ragkit.toml").read_bytes() and time.perf_counter() < deadline:
        time.sleep(0.02)
    toml = (ws / "ragkit.toml").read_bytes()
    second = [
        ("second ingest (new path) exits 75", ["ingest", "other", "-w", "ws"]),
        ("second ingest (configured sources) exits 75", ["ingest", "-w", "ws"]),
        ("doctor --repair while ingesting exits 75", ["doctor", "--repair", "-w", "ws"]),
    ]
    for title, argv in second:
        outcome = probe.run(argv, cwd=base)
        problems = [why] if (why := outcome.trouble((75,))) else []
        if "another ragkit job" not in outcome.stderr + outcome.stdout:
            problems.append("no clear message naming the other job")
        if (ws / "ragkit.toml").read_bytes() != toml:
            problems.append("ragkit.toml changed by the refused writer")
            toml = (ws / "ragkit.toml").read_bytes()
        probe.record("concurrency", title, problems)
    doctor = probe.run(["doctor", "-w", "ws", "--json"], cwd=base)
    probe.record("concurrency", "doctor (read-only) while ingesting", [
        f"{why} {_doctor_problems(doctor)}" for why in [doctor.trouble((0,))] if why])  # fmt: skip
    cli_problems = []
    for marker, name in queries[:5]:
        query = probe.run(["query", marker, "-w", "ws", "-k", "3", "--json"], cwd=base)
        if why := query.trouble((0,)):
            cli_problems.append(why)
        elif name not in _query_hits(query):
            cli_problems.append(f"{name} not found")
    probe.record("concurrency", "5 `ragkit query` runs while ingesting", cli_problems)
    done = writer.wait(probe.timeout * 6)
    stop.touch()
    loop = reader.wait(probe.timeout * 2)
    probe.record("concurrency", "the running ingest finishes", [
        why for why in [done.trouble((0,))] if why])  # fmt: skip
    stats = loop.json() if not loop.trouble((0,)) else None
    problems = [] if stats else [f"query loop: {loop.trouble((0,))}"]
    if stats:
        if stats["errors"]:
            problems.append(f"{len(stats['errors'])} errors, first: {stats['errors'][0]}")
        if stats["misses"]:
            problems.append(f"{stats['misses']} queries missed their file")
        if stats["generations"] < 2:
            problems.append("no commit happened during the query loop (ingest too short)")
    probe.record("concurrency", "Python queries during the ingest: 0 errors", problems,
                 **({k: stats[k] for k in ("queries", "generations")} if stats else {}))  # fmt: skip


# -- 4. damaged workspaces ------------------------------------------------------------------------
def run_damage(probe: Probe) -> None:
    base = probe.root / "damage"
    goods = good_files(base / "docs", "dmg", 50, seed=11)
    healthy = probe.workspace(base / "healthy")
    first = probe.run(["ingest", str(base / "docs"), "-w", str(healthy), "--json"])
    if why := first.trouble((0,)):
        probe.record("damaged workspace", "healthy workspace", [why])
        return
    # everything in the main file: damage to it must not be masked by a WAL copy of the pages
    db = sqlite3.connect(healthy / "store.sqlite")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    name, (marker, sentence) = next(iter(goods.items()))
    for case in cases.damage_cases():
        ws = base / case.tag
        shutil.copytree(healthy, ws)
        case.damage(ws)
        problems = []
        w = ["-w", str(ws)]
        for argv in (["query", marker, *w, "--json"], ["status", *w]):
            if (outcome := probe.run(argv)).traceback:
                problems.append(f"{argv[0]}: traceback: {_last_line(outcome.stderr)}")
        if case.sparse_only:
            dense = probe.run(["query", sentence, *w, "--mode", "dense", "-k", "3", "--json"])
            if why := dense.trouble((0,)):
                problems.append(f"dense query: {why}")
            elif name not in _query_hits(dense):
                problems.append("dense query does not find its file")
        doctor = probe.run(["doctor", *w, "--json"])
        if why := doctor.trouble((case.doctor,)):
            problems.append(f"doctor: {why}" if doctor.rc != 0 else "doctor says healthy")
        repair = probe.run(["doctor", "--repair", *w, "--json"])
        if repair.traceback:
            problems.append(f"repair: traceback: {_last_line(repair.stderr)}")
        elif case.repairable:
            after = probe.run(["doctor", *w, "--json"])
            query = probe.run(["query", marker, *w, "-k", "3", "--json"])
            if why := after.trouble((0,)):
                problems.append(f"after repair, doctor: {why} {_doctor_problems(after)[:2]}")
            if why := query.trouble((0,)):
                problems.append(f"after repair, query: {why}")
            elif name not in _query_hits(query):
                problems.append("after repair, query does not find its file")
        elif repair.rc == 0:
            problems.append("repair claims success on a workspace it cannot repair")
        probe.record("damaged workspace", case.title, problems, tag=case.tag)


# -- 5. workspace consistency ---------------------------------------------------------------------
def run_consistency(probe: Probe) -> None:
    """One folder named two ways is one source; a new tokenizer is a new encoder."""
    base = probe.root / "consistency"
    good_files(base / "docs", "cons", 10, seed=21)
    probe.workspace(base / "ws")
    problems = []
    for arg in ("docs", str(base / "docs"), "./docs/"):
        if why := probe.run(["ingest", arg, "-w", "ws", "--json"], cwd=base).trouble((0,)):
            problems.append(f"ingest {arg}: {why}")
    rows = chunk_texts(base / "ws")
    if len(rows) != len(set((path, text) for path, _, text in rows)):
        copies = len(rows) - len(set((path, text) for path, _, text in rows))
        problems.append(f"{copies} chunks stored twice (the folder became a second source)")
    probe.record("consistency", "one folder ingested by relative and absolute path", problems)
    problems = []
    turned = base / "docs" / "good-cons-0.txt"
    turned.write_bytes(b"\x00\x01binary now" * 100)
    again = probe.run(["ingest", "docs", "-w", "ws", "--json"], cwd=base)
    if why := again.trouble((3,)):
        problems.append(f"re-ingest: {why}")
    if "good-cons-0.txt" not in {path for path, _, _ in chunk_texts(base / "ws")}:
        problems.append("its last good version left the store")
    probe.record("consistency", "a file that turns bad keeps its last good version", problems)
    if probe.model == "default":
        return
    model = base / "tiny-model"
    shutil.copytree(probe.model, model)
    ws = base / "ws-tokenizer"
    ws.mkdir()
    (ws / "ragkit.toml").write_text(f'[encoder]\nmodel = "{model}"\n')
    problems = []
    first = probe.run(["ingest", "docs", "-w", str(ws), "--json"], cwd=base)
    tokenizer = json.loads((model / "tokenizer.json").read_text())
    tokenizer["normalizer"] = None  # no lowercasing: same weights, other token ids
    (model / "tokenizer.json").write_text(json.dumps(tokenizer))
    again = probe.run(["ingest", "docs", "-w", str(ws), "--json"], cwd=base)
    query = probe.run(["query", "backup", "-w", str(ws), "--json"], cwd=base)
    report = again.json() if not again.trouble((0, 3)) else None
    if why := first.trouble((0, 3)):  # (0, 3): the folder holds the file that turned bad
        problems.append(f"first ingest: {why}")
    elif query.traceback:
        problems.append("query: traceback")
    elif not (report and report["chunks_encoded"]) and query.rc == 0:
        problems.append("tokenizer changed, vectors kept and queries answered with them")
    probe.record("consistency", "tokenizer changed under the same model folder", problems)


# -- the tiny encoder, output, main ---------------------------------------------------------------
def _save_tiny_model(folder: Path) -> None:
    """The test suite's tiny StaticEmbedding (tests/conftest.py), saved as a model folder."""
    sys.path.insert(0, str(_common.REPO_ROOT / "tests"))
    from conftest import build_tiny_model

    build_tiny_model().save(str(folder))


def _warm_imports() -> None:
    """Import what every command needs once, here, so each forked child starts warm."""
    import importlib

    for name in ("torch", "faiss", "sentence_transformers", "ragkit.cli.app", "ragkit.doctor",
                 "ragkit.pipelines.ingest", "ragkit.pipelines.repair"):  # fmt: skip
        importlib.import_module(name)
    for module in ("docx", "html", "jsonl", "markdown", "pdf", "tabular", "txt"):
        importlib.import_module(f"ragkit.connectors.{module}")


CATEGORIES = ("inputs", "kill -9", "concurrency", "damaged workspace", "consistency")


def summary(results: dict[str, list[dict[str, Any]]]) -> list[list[Any]]:
    rows = []
    for category in CATEGORIES:
        got = results.get(category, [])
        if got:
            passed = sum(r["ok"] for r in got)
            rows.append([category, len(got), passed, len(got) - passed])
    total = [r for rs in results.values() for r in rs]
    passed = sum(r["ok"] for r in total)
    rows.append(["all", len(total), passed, len(total) - passed])
    return rows


def print_results(results: dict[str, list[dict[str, Any]]]) -> None:
    for category in CATEGORIES:
        got = results.get(category, [])
        if not got:
            continue
        failed = [r for r in got if not r["ok"]]
        rows = [[r["case"], "; ".join(r["problems"])] for r in failed]
        title = (
            f"{category}: {len(got)} tried, {len(got) - len(failed)} passed, {len(failed)} failed"
        )
        notes = [f"{r['case']}: {r['note']}" for r in got if r.get("note")]
        if rows:
            _common.print_table(title, ["failing case", "what went wrong"], rows,
                                caption="; ".join(notes) or None)  # fmt: skip
        else:
            print(f"\n{title}" + (f" ({'; '.join(notes)})" if notes else ""))
    columns = ["category", "tried", "handled correctly", "failed"]
    _common.print_table("ragkit reliability probe", columns, summary(results))
    print()
    print(_common.markdown_table(columns, summary(results)))


def main() -> None:
    p = _common.argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer kills and files (< 3 minutes)")
    p.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    p.add_argument(
        "--only", default="", help="comma-separated: inputs,kill,concurrency,damage,consistency"
    )
    p.add_argument("--kills", type=int, default=None, help="kill -9 rounds (default 10 / 40)")
    p.add_argument(
        "--timeout", type=float, default=0, help="seconds per command (default 20 quick, 60)"
    )
    p.add_argument("--encoder", default="tiny", help="'tiny' (default), 'default' or a model")
    p.add_argument("--keep", type=Path, default=None, help="build in DIR and keep it")
    args = p.parse_args()
    only = {name.strip() for name in args.only.split(",") if name.strip()}
    kills = args.kills if args.kills is not None else (10 if args.quick else 40)
    started = time.perf_counter()
    _warm_imports()

    with tempfile.TemporaryDirectory(prefix="ragkit-reliability-") as tmp:
        root = args.keep or Path(tmp)
        if args.keep:
            shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True, exist_ok=True)
        model = args.encoder
        if model == "tiny":
            model = str(root / "tiny-model")
            if why := Child(_save_tiny_model, Path(model)).wait(300).trouble((0,)):
                raise SystemExit(f"cannot build the tiny encoder: {why}")
        timeout = args.timeout or (20.0 if args.quick else 60.0)
        probe = Probe(root, model, args.quick, timeout, 4 * GIB, 1.0 if args.quick else 4.0)
        steps = [
            ("inputs", lambda: run_inputs(probe)),
            ("kill", lambda: run_kills(probe, kills, 600 if args.quick else 1200)),
            ("concurrency", lambda: run_concurrency(probe, 200 if args.quick else 400)),
            ("damage", lambda: run_damage(probe)),
            ("consistency", lambda: run_consistency(probe)),
        ]
        for name, step in steps:
            if not only or name in only:
                began = time.perf_counter()
                step()
                if not args.json:
                    print(f"{name}: {time.perf_counter() - began:.1f}s", file=sys.stderr)
        try:
            _make_writable(root)
        finally:
            if args.keep is None:
                shutil.rmtree(root, ignore_errors=True)
    seconds = time.perf_counter() - started
    results = probe.results
    payload = {
        "mode": "quick" if args.quick else "full",
        "seconds": round(seconds, 1),
        "encoder": args.encoder,
        "summary": [
            dict(zip(["category", "tried", "passed", "failed"], r, strict=True))
            for r in summary(results)
        ],
        "results": results,
    }
    path = _common.write_result("reliability" + ("-quick" if args.quick else ""), dict(payload))
    if args.json:
        print(json.dumps({**payload, "machine": _common.machine()}, indent=2, default=str))
    else:
        print_results(results)
        print(f"\n{seconds:.0f}s; wrote {path.relative_to(_common.REPO_ROOT)}")
    sys.exit(0 if all(r["ok"] for rs in results.values() for r in rs) else 1)


def _make_writable(root: Path) -> None:
    """chmod 000 files and FIFOs must not stop the clean-up."""
    for path in root.rglob("*"):
        if not path.is_symlink():
            with contextlib.suppress(OSError):
                path.chmod(0o755)


if __name__ == "__main__":
    main()
