"""Real faults during ``ragkit reindex``: SIGKILL at random points, a full disk, a read-only
workspace. Each must leave the last committed generation intact and let the next run finish."""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import ragkit
from ragkit.cli.app import app

runner = CliRunner()

# A child that reindexes with a numpy-only encoder: it starts in a fraction of a second (no
# torch), so twenty kills fit in the test's time.
CHILD = textwrap.dedent(
    """
    import hashlib, re, sys
    import numpy as np
    import ragkit
    from ragkit.pipelines.reindex import reindex

    class Words:
        special_tokens = 0
        id = "whitespace-v1"
        def count(self, texts):
            return [len(t.split()) for t in texts]
        def offsets(self, text):
            return [m.span() for m in re.finditer(r"\\S+", text)]

    class Hashing:
        name, dim, batch_size, max_seq_length = "hash-64", 64, 16, 32
        query_prompt = document_prompt = ""
        tokens = Words()
        fingerprint = {"kind": "hashing", "dim": 64, "id": "hashing-64-v1"}
        def _encode(self, texts):
            out = np.zeros((len(texts), self.dim), dtype=np.float32)
            for row, text in enumerate(texts):
                for word in re.findall(r"\\w+", text.lower()):
                    out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1
            return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        encode_queries = encode_documents = _encode

    kit = ragkit.open(sys.argv[1], encoder=Hashing(), create=True)
    if len(sys.argv) > 3:
        kit.ingest(sys.argv[3], commit_every=int(sys.argv[2]))
    else:
        report = reindex(kit, commit_every=int(sys.argv[2]), wait=30)
        print("OK", report.run_id, report.doctor_ok)
    """
)
WORDS = [
    "backup",
    "restore",
    "snapshot",
    "disk",
    "storage",
    "pool",
    "sqlite",
    "index",
    "query",
    "network",
    "dns",
    "ssh",
]


def _write(corpus: Path, i: int, version: int) -> None:
    path = corpus / f"d{i % 4}" / f"f{i:03d}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = " ".join(WORDS[(i * 7 + version + n) % len(WORDS)] for n in range(120))
    path.write_text(f"# File {i} v{version}\n\n{text} file{i} version{version}\n", "utf-8")


def _state(ws: Path, script: Path) -> dict[str, object]:
    """The store's chunks by file, after checking the indexes hold exactly them, read
    with the child's encoder (its fingerprint names the collection)."""
    code = (
        f"import sys; exec(open({str(script)!r}).read().split('kit = ragkit.open')[0]);"
        "kit = ragkit.open(sys.argv[1], encoder=Hashing(), create=True); c = kit.collection();"
        "ids = sorted(kit.store.all_chunk_ids().tolist());"
        "assert sorted(c.load_dense().ids().tolist()) == ids;"
        "assert sorted(c.load_sparse(kit.sparse_channel).ids().tolist()) == ids;"
        "d = kit.doctor(quick=True); assert d.ok, d.to_dict();"
        "rows = kit.store._query('SELECT file_path, ordinal, text FROM chunks d JOIN documents"
        " USING(doc_id)');"
        "print(repr(sorted(map(tuple, rows))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(ws)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return {"chunks": out.stdout}


@pytest.mark.slow
def test_sigkill_at_twenty_random_points_of_a_reindex(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD, encoding="utf-8")
    corpus, ws = tmp_path / "corpus", tmp_path / "ws"
    for i in range(120):
        _write(corpus, i, 0)
    run = [sys.executable, str(script), str(ws), "8"]
    assert subprocess.run([*run, str(corpus)], timeout=120).returncode == 0
    rng = random.Random(20)

    def edit(round_: int) -> None:
        for i in rng.sample(range(140), 12):  # changes, additions and deletions to redo
            if i < 120 and rng.random() < 0.25:
                (corpus / f"d{i % 4}" / f"f{i:03d}.md").unlink(missing_ok=True)
            else:
                _write(corpus, i, round_ + 1)

    # Kill points are drawn within the measured length of one such run (process start
    # included), so they land inside runs on a fast idle machine and on a loaded one alike.
    edit(-1)
    started = time.monotonic()
    assert subprocess.run(run, capture_output=True, timeout=120).returncode == 0
    length = time.monotonic() - started
    killed = 0
    for round_ in range(20):
        edit(round_)
        child = subprocess.Popen(run, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.1, 0.9) * length)
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            killed += 1
        child.wait()
    assert killed >= 5, f"only {killed} of 20 runs were still going when killed"
    finish = subprocess.run(run, capture_output=True, text=True, timeout=120)
    assert finish.returncode == 0 and "OK" in finish.stdout, finish.stderr
    fresh = tmp_path / "fresh"
    assert subprocess.run([*run[:2], str(fresh), "4096", str(corpus)], timeout=120).returncode == 0
    got = _state(ws, script)
    assert got == _state(fresh, script)  # nothing lost, nothing duplicated
    with ragkit.open(ws, create=False) as kit:
        statuses = [r["status"] for r in kit.store.runs(limit=200)]
        assert statuses[:2] == ["ok", "ok"] and "running" not in statuses
        assert statuses.count("crashed") >= killed  # outer and inner rows of killed runs


# -- a full disk and a read-only workspace (need mount: root in a container that allows it) --
def _mount(*args: str) -> str | None:
    """Run mount; the reason it cannot, or None."""
    if shutil.which("mount") is None:
        return "no mount command here"
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    return None if done.returncode == 0 else f"mount is not allowed here: {done.stderr.strip()}"


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _cli_workspace(ws: Path, model_dir: Path, docs: Path) -> None:
    ws.mkdir(exist_ok=True)
    (ws / "ragkit.toml").write_text(f'[encoder]\nmodel = "{model_dir}"\n', encoding="utf-8")
    result = runner.invoke(app, ["ingest", str(docs), "-w", str(ws)])
    assert result.exit_code == 0, result.output


def _served(ws: Path) -> tuple[int, list[str]]:
    with ragkit.open(ws, create=False) as kit:
        collection = kit.collection()
        assert collection is not None
        assert kit.doctor(quick=True).ok
        return collection.record.generation, [h.uri for h in kit.query("banana cherry", k=3)]


def test_a_full_disk_fails_clearly_and_keeps_the_previous_generation(
    tmp_path: Path, tiny_model, docs
) -> None:  # type: ignore[no-untyped-def]
    model_dir = tmp_path / "model"
    tiny_model.save(str(model_dir))
    disk = tmp_path / "disk"
    disk.mkdir()
    reason = _mount("-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk))
    if reason:
        pytest.skip(reason)
    try:
        ws = disk / "ws"
        _cli_workspace(ws, model_dir, docs)
        before = _served(ws)
        for i in range(40):
            (docs / f"more{i}.txt").write_text(f"lemon plum {i} " * 200, encoding="utf-8")
        filler = disk / "filler"
        with open(filler, "wb") as out:  # fill the disk to the last block
            try:
                while True:
                    out.write(b"\0" * 65536)
                    out.flush()
            except OSError:
                pass
            # room for the lock and the runs row, not for the batch: the commit itself fails
            out.truncate(max(0, out.tell() - 48 * 1024))
        result = runner.invoke(app, ["reindex", "-w", str(ws)])
        assert result.exit_code == 1, result.output
        assert "No space left" in result.stderr or "disk is full" in result.stderr
        filler.unlink()
        assert _served(ws) == before  # the last commit is what readers still get
        assert runner.invoke(app, ["reindex", "-w", str(ws)]).exit_code == 0
        assert _served(ws)[0] > before[0]
    finally:
        _umount(disk)


def test_a_read_only_workspace_fails_clearly_and_stays_queryable(
    tmp_path: Path, tiny_model, docs
) -> None:  # type: ignore[no-untyped-def]
    model_dir = tmp_path / "model"
    tiny_model.save(str(model_dir))
    ws, ro = tmp_path / "ws", tmp_path / "ws-ro"
    _cli_workspace(ws, model_dir, docs)
    before = _served(ws)
    ro.mkdir()
    reason = _mount("--bind", str(ws), str(ro))
    if reason:
        pytest.skip(reason)
    try:
        reason = _mount("-o", "remount,ro,bind", str(ro))
        if reason:
            pytest.skip(reason)
        (docs / "new.txt").write_text("lemon plum pear", encoding="utf-8")
        result = runner.invoke(app, ["reindex", "-w", str(ro)])
        assert result.exit_code == 1, result.output
        assert "error:" in result.stderr and "read-only" in result.stderr.lower()
    finally:
        _umount(ro)
    assert _served(ws) == before
