"""Hostile sources: names that are not valid UTF-8, files swapped for FIFOs or symlinks
between the walk and the read, one folder under several spellings, and config writes by a job
that never ran.

Every file operation here is real (FIFOs, symlinks, renames); a swap "after the walk" is made by
wrapping only the walk that ingest calls, so the read that follows meets the swapped file.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

import ragkit
from ragkit.cli.app import app
from ragkit.config import WorkspaceConfig
from ragkit.connectors import read_source_bytes, walk_files
from ragkit.connectors.filesystem import FileEntry
from ragkit.errors import ConfigError, ConnectorError
from ragkit.lock import WorkspaceLock
from ragkit.pipelines import ingest as ingest_module
from ragkit.pipelines.sources import resolve_sources

FIXTURE_V1 = Path(__file__).parent / "fixtures" / "workspace-v1"
SECRET = "zeta epsilon delta secret words from outside the root"


def bounded(call: Callable[[], object], seconds: float = 10.0) -> object:
    """Run ``call`` in a thread so that a regression that blocks fails the test, not CI."""
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # handed to the test thread below
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still blocked after {seconds}s"
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome.get("value")


def swap_after_walk(monkeypatch: pytest.MonkeyPatch, swap: Callable[[], None]) -> None:
    """Make ingest's walk list the tree first and then run ``swap`` before any file is read."""
    real_walk = ingest_module.walk_files

    def walk_then_swap(*args: object, **kwargs: object) -> Iterator[object]:
        entries = list(real_walk(*args, **kwargs))  # type: ignore[arg-type]
        swap()
        return iter(entries)

    monkeypatch.setattr(ingest_module, "walk_files", walk_then_swap)


def texts(kit: ragkit.Workspace) -> str:
    rows = kit.store._query("SELECT text FROM chunks")
    return "\n".join(row[0] for row in rows)


# -- 1. names that are not valid UTF-8 ------------------------------------------------------
def make_undecodable(folder: Path, name: bytes, content: bytes) -> None:
    fd = os.open(os.fsencode(folder) + b"/" + name, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, content)
    finally:
        os.close(fd)


def test_undecodable_names_get_a_stable_printable_uri(workspace, docs) -> None:  # type: ignore[no-untyped-def]
    make_undecodable(docs, b"bad\xe9\xff.txt", b"banana split with quince\n")
    make_undecodable(docs, b"rows\xe9.csv", b"title,text\nq,quince jam recipe\n")
    report = workspace.ingest(docs)
    assert report.ok, report.failures
    assert report.files_new == 5
    uris = set(workspace.store._query("SELECT path FROM files"))
    assert {row[0] for row in uris} >= {"bad\\xe9\\xff.txt", "rows\\xe9.csv"}
    hit = workspace.query("banana split quince", k=1)[0]
    assert hit.uri == "bad\\xe9\\xff.txt" and hit.title == "bad\\xe9\\xff"
    again = workspace.ingest(docs)  # the same escaping every run: nothing re-read or deleted
    assert (again.files_unchanged, again.files_deleted, again.files_new) == (5, 0, 0)


def test_escaping_is_lossless(tmp_path: Path) -> None:
    make_undecodable(tmp_path, b"a\xe9.md", b"x\n")
    (tmp_path / "a\\xe9.md").write_text("y\n", encoding="utf-8")  # the escape, spelled out
    (tmp_path / "tab\there.md").write_text("z\n", encoding="utf-8")
    entries = [e for e in walk_files(tmp_path) if isinstance(e, FileEntry)]
    assert sorted(e.uri for e in entries) == ["a\\\\xe9.md", "a\\xe9.md", "tab\\x09here.md"]
    assert all(e.path.exists() for e in entries)  # the real path is kept for opening


def test_undecodable_failure_is_reported_printably(workspace, docs) -> None:  # type: ignore[no-untyped-def]
    make_undecodable(docs, b"empty\xff.txt", b"")
    report = workspace.ingest(docs)
    assert report.files_new == 3
    assert [f.path for f in report.failures] == [str(docs) + "/empty\\xff.txt"]
    assert "empty file" in report.failures[0].reason
    # what --json prints and the runs row keeps: no lone surrogates anywhere
    json.dumps(report.to_dict(), ensure_ascii=False).encode("utf-8")
    (stats,) = workspace.store._query("SELECT stats_json FROM runs")
    assert "empty\\\\xff.txt" in stats[0]


def test_source_folder_whose_name_is_not_utf8_is_refused_up_front(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    folder = os.fsencode(tmp_path) + b"/src\xff"
    os.mkdir(folder)
    with pytest.raises(ConfigError, match="valid UTF-8"):
        workspace.ingest(os.fsdecode(folder))
    assert workspace.config.sources == []


# -- 2. a file swapped for a FIFO -----------------------------------------------------------
def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.txt")
    with pytest.raises(ConnectorError, match="not a regular file"):
        bounded(lambda: read_source_bytes(tmp_path / "pipe.txt", 1000, root=tmp_path))


def test_file_swapped_for_a_fifo_after_the_walk_fails_alone(workspace, docs, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    def swap() -> None:
        (docs / "fruit.txt").unlink()
        os.mkfifo(docs / "fruit.txt")

    swap_after_walk(monkeypatch, swap)
    report = bounded(lambda: workspace.ingest(docs))
    assert report.files_new == 2  # type: ignore[attr-defined]
    assert [Path(f.path).name for f in report.failures] == ["fruit.txt"]  # type: ignore[attr-defined]
    later = WorkspaceLock(workspace.root / "write.lock")  # the writer lock was let go
    later.acquire()
    later.release()


def test_fifo_swapped_in_between_check_and_open_never_blocks(tmp_path: Path) -> None:
    """A race between any check on the path and the open: only the descriptor can be trusted."""
    (tmp_path / "real.txt").write_text("plain text\n", encoding="utf-8")
    os.mkfifo(tmp_path / "pipe")
    stop = threading.Event()

    def flip() -> None:
        while not stop.is_set():
            os.link(tmp_path / "real.txt", tmp_path / "next")
            os.replace(tmp_path / "next", tmp_path / "doc.txt")
            os.link(tmp_path / "pipe", tmp_path / "next")
            os.replace(tmp_path / "next", tmp_path / "doc.txt")

    def read_many() -> None:
        for _ in range(3000):
            with contextlib.suppress(ConnectorError):  # refusing the FIFO is the right answer
                data = read_source_bytes(tmp_path / "doc.txt", 1000, root=tmp_path)
                assert data == b"plain text\n"

    flipper = threading.Thread(target=flip, daemon=True)
    flipper.start()
    try:
        bounded(read_many, seconds=30.0)
    finally:
        stop.set()
        flipper.join(5)
        with contextlib.suppress(OSError):  # a reader blocked in open() gets a writer and ends
            os.close(os.open(tmp_path / "pipe", os.O_WRONLY | os.O_NONBLOCK))


# -- 3. a file swapped for a symlink that leaves the root ----------------------------------
@pytest.fixture
def outside(tmp_path: Path) -> Path:
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text(SECRET + "\n", encoding="utf-8")
    return secret


def test_symlink_swapped_in_after_the_walk_is_not_read(
    workspace, docs, outside, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    workspace.ingest(docs)

    def swap() -> None:
        (docs / "fruit.txt").unlink()
        (docs / "fruit.txt").symlink_to(outside)

    os.utime(docs / "fruit.txt", ns=(1, 1))  # changed stat: ingest must read it again
    swap_after_walk(monkeypatch, swap)
    report = workspace.ingest(docs)
    assert "secret" not in texts(workspace)
    assert [Path(f.path).name for f in report.failures] == ["fruit.txt"]
    assert "outside the source root" in report.failures[0].reason
    assert "removed" in report.failures[0].reason
    assert report.documents_deleted == 1  # the old content went too
    assert "banana" not in texts(workspace)
    assert workspace.store.documents_of_file(workspace.config.sources[0].name, "fruit.txt") == {}


def test_path_that_became_a_link_outside_loses_its_old_content(workspace, docs, outside) -> None:  # type: ignore[no-untyped-def]
    workspace.ingest(docs)
    (docs / "fruit.txt").unlink()
    (docs / "fruit.txt").symlink_to(outside)
    report = workspace.ingest(docs)
    assert [Path(f.path).name for f in report.failures] == ["fruit.txt"]
    assert "removed from the index" in report.failures[0].reason
    assert report.documents_deleted == 1
    joined = texts(workspace)
    assert "banana" not in joined and "secret" not in joined
    assert workspace.store.counts()["files"] == 2


def test_followed_symlink_swapped_after_resolving_is_caught(tmp_path: Path, outside: Path) -> None:
    """With follow_symlinks the resolved target is opened with O_NOFOLLOW: a target that is
    itself replaced by a link is refused instead of followed."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "link.txt").symlink_to(outside)
    assert (
        read_source_bytes(root / "link.txt", 1000, root=root, follow_symlinks=True)
        == (SECRET + "\n").encode()
    )
    with pytest.raises(ConnectorError, match="outside the source root"):
        read_source_bytes(root / "link.txt", 1000, root=root)
    inner = root / "inner.txt"
    inner.write_text("inside\n", encoding="utf-8")
    (root / "alias.txt").symlink_to(inner)  # a link inside the root is read through its target
    assert read_source_bytes(root / "alias.txt", 1000, root=root) == b"inside\n"


def test_directory_swapped_for_a_link_below_the_root_is_caught(
    tmp_path: Path, outside: Path
) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "secret.txt").write_text("fine\n", encoding="utf-8")
    shutil.rmtree(root / "sub")
    (root / "sub").symlink_to(outside.parent)
    with pytest.raises(ConnectorError, match="outside the source root"):
        read_source_bytes(root / "sub" / "secret.txt", 1000, root=root)


# -- 4. one folder, several spellings -------------------------------------------------------
def test_relative_absolute_and_symlinked_spellings_are_one_source(
    workspace, docs, tmp_path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(docs.parent)
    first = workspace.ingest("docs")  # the old naming rule: the spelling given
    (tmp_path / "via").symlink_to(docs.parent)
    for spelling in (str(docs), str(tmp_path / "via" / "docs"), "./docs/", "docs/../docs"):
        again = workspace.ingest(spelling)
        assert (again.files_new, again.files_unchanged) == (0, 3), spelling
    assert first.files_new == 3
    assert [s.name for s in workspace.config.sources] == ["docs"]
    assert set(workspace.store.sources()) == {"docs"}
    assert workspace.store.counts()["documents"] == 3
    assert len(workspace.query("dog pear", k=10)) == len(set(workspace.store.all_chunk_ids()))
    saved = WorkspaceConfig.load(workspace.config_path)
    assert [(s.name, s.path) for s in saved.sources] == [("docs", os.path.realpath(docs))]


def test_a_v1_workspace_keeps_its_source_under_another_spelling(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """workspace-v1 names its source ``docs`` at the path it had then; here that folder is
    moved under tmp_path and the path in the copied config follows it, as a user's would."""
    shutil.copytree(FIXTURE_V1, tmp_path / "fx")
    docs = tmp_path / "fx" / "docs"
    config = WorkspaceConfig.load(tmp_path / "fx" / "ws" / "ragkit.toml")
    assert [(s.name, s.path) for s in config.sources] == [("docs", "/tmp/fx/docs")]
    config.sources[0].path = str(docs)
    config.save(tmp_path / "fx" / "ws" / "ragkit.toml")
    kit = ragkit.open(tmp_path / "fx" / "ws", create=False)
    (tmp_path / "link").symlink_to(tmp_path / "fx")
    monkeypatch.chdir(tmp_path)
    for spelling in ("link/docs", str(docs), "fx/docs/"):
        sources = resolve_sources(kit, [spelling], None, None, False)
        assert [s.name for s in sources] == ["docs"], spelling
    kit.close()


# -- 5. config is written only by a job that runs --------------------------------------------
def test_locked_ingest_adds_no_source(workspace, docs) -> None:  # type: ignore[no-untyped-def]
    before = workspace.config_path.read_bytes() if workspace.config_path.exists() else b""
    holder = WorkspaceLock(workspace.root / "write.lock")
    holder.acquire()
    try:
        result = CliRunner().invoke(app, ["ingest", str(docs), "--workspace", str(workspace.root)])
    finally:
        holder.release()
    assert result.exit_code == 75
    after = workspace.config_path.read_bytes() if workspace.config_path.exists() else b""
    assert after == before
    assert workspace.config.sources == []


def test_missing_path_is_refused_before_any_source_is_written(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="no such file or directory"):
        workspace.ingest(tmp_path / "nowhere")
    assert workspace.config.sources == [] and workspace.store.sources() == {}
    result = CliRunner().invoke(
        app, ["ingest", str(tmp_path / "nowhere"), "--workspace", str(workspace.root)]
    )
    assert result.exit_code == 1 and "nowhere" in result.output
    assert WorkspaceConfig.load(workspace.config_path).sources == []
