"""walk_files: deterministic order, glob rules, hidden/skipped names, and every kind of bad entry."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ragkit.connectors import FileEntry, WalkFailure, walk_files
from ragkit.connectors.filesystem import compile_glob
from ragkit.errors import ConnectorError

LEAVES_ROOT = "symlink leaves the source root; not followed (use follow_symlinks)"


def touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"content of {name}\n", encoding="utf-8")


def uris(results: list[FileEntry | WalkFailure]) -> list[str]:
    return [r.uri for r in results if isinstance(r, FileEntry)]


def failures(results: list[FileEntry | WalkFailure], root: Path) -> list[tuple[str, str]]:
    return [
        (os.path.relpath(r.path, root), r.reason) for r in results if isinstance(r, WalkFailure)
    ]


def test_sorted_order_uris_and_stat_fields(tmp_path: Path) -> None:
    touch(tmp_path, "b.md", "a.txt", "sub/z.html", "sub/deeper/c.pdf", "c.csv", "sub/a.jsonl")
    results = list(walk_files(tmp_path))
    assert uris(results) == [
        "a.txt",
        "b.md",
        "c.csv",
        "sub/a.jsonl",
        "sub/deeper/c.pdf",
        "sub/z.html",
    ]
    entry = results[0]
    assert isinstance(entry, FileEntry)
    st = (tmp_path / "a.txt").stat()
    assert (entry.path, entry.size, entry.mtime_ns, entry.format) == (
        tmp_path / "a.txt",
        st.st_size,
        st.st_mtime_ns,
        "txt",
    )
    assert list(walk_files(tmp_path)) == results  # deterministic


def test_hidden_and_dependency_folders_are_skipped_silently(tmp_path: Path) -> None:
    touch(
        tmp_path,
        "keep.md",
        ".hidden.md",
        ".git/config.txt",
        "docs/.draft.md",
        "__pycache__/x.txt",
        "web/node_modules/pkg/readme.md",
        "web/index.html",
    )
    results = list(walk_files(tmp_path))
    assert uris(results) == ["keep.md", "web/index.html"]
    assert failures(results, tmp_path) == []


def test_include_and_exclude_globs(tmp_path: Path) -> None:
    touch(tmp_path, "a.md", "x/y/a.md", "x/b.txt", "drafts/d.md", "notes/drafts/e.md")
    for pattern in ("*.md", "**/*.md"):
        assert uris(list(walk_files(tmp_path, include=(pattern,)))) == [
            "a.md",
            "drafts/d.md",
            "notes/drafts/e.md",
            "x/y/a.md",
        ]
    assert uris(list(walk_files(tmp_path, include=("x/**",)))) == ["x/b.txt", "x/y/a.md"]
    assert uris(list(walk_files(tmp_path, exclude=("drafts/**",)))) == [
        "a.md",
        "notes/drafts/e.md",
        "x/b.txt",
        "x/y/a.md",
    ]
    assert uris(list(walk_files(tmp_path, exclude=("**/drafts", "*.txt")))) == ["a.md", "x/y/a.md"]


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("*.md", "a.md", True),
        ("*.md", "x/y/a.md", True),
        ("**/*.md", "a.md", True),
        ("**/*.md", "x/y/a.md", True),
        ("docs/**/*.md", "docs/a.md", True),
        ("docs/**/*.md", "docs/p/q/a.md", True),
        ("docs/**/*.md", "other/a.md", False),
        ("a?.txt", "ab.txt", True),
        ("a?.txt", "abc.txt", False),
        ("[!_]*.md", "_private.md", False),
        ("[!_]*.md", "public.md", True),
        ("[ab].md", "b.md", True),
        ("file[.md", "file[.md", True),
        ("./notes/*.txt", "notes/a.txt", True),
        ("*.MD", "a.md", False),
    ],
)
def test_glob_semantics(pattern: str, path: str, matches: bool) -> None:
    assert bool(compile_glob(pattern).fullmatch(path)) is matches


def test_unsupported_files_are_reported(tmp_path: Path) -> None:
    touch(tmp_path, "photo.xyz", "Makefile", "ok.md")
    results = list(walk_files(tmp_path))
    assert uris(results) == ["ok.md"]
    assert failures(results, tmp_path) == [
        ("Makefile", "unsupported file type (no extension)"),
        ("photo.xyz", "unsupported file type '.xyz'"),
    ]
    # Files excluded by the patterns are not reported at all.
    assert failures(list(walk_files(tmp_path, include=("*.md",))), tmp_path) == []


def test_symlink_leaving_root(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    touch(outside, "secret.md", "dir/inner.md")
    touch(root, "a.md")
    (root / "file-link.md").symlink_to(outside / "secret.md")
    (root / "dir-link").symlink_to(outside / "dir")
    results = list(walk_files(root))
    assert uris(results) == ["a.md"]
    assert failures(results, root) == [("dir-link", LEAVES_ROOT), ("file-link.md", LEAVES_ROOT)]
    followed = list(walk_files(root, follow_symlinks=True))
    assert uris(followed) == ["a.md", "dir-link/inner.md", "file-link.md"]
    assert failures(followed, root) == []


def test_symlinks_inside_root_are_followed(tmp_path: Path) -> None:
    touch(tmp_path, "docs/a.md")
    (tmp_path / "alias.md").symlink_to(tmp_path / "docs" / "a.md")
    assert uris(list(walk_files(tmp_path))) == ["alias.md", "docs/a.md"]


def test_symlink_loop_is_reported_once(tmp_path: Path) -> None:
    touch(tmp_path, "a/doc.md")
    (tmp_path / "a" / "loop").symlink_to(tmp_path / "a")
    (tmp_path / "a" / "up").symlink_to(tmp_path)
    (tmp_path / "self").symlink_to(tmp_path / "self")
    results = list(walk_files(tmp_path))
    assert uris(results) == ["a/doc.md"]
    reported = failures(results, tmp_path)
    assert [path for path, _ in reported] == ["a/loop", "a/up", "self"]
    assert all("symlink loop" in reason for _, reason in reported)
    # following symlinks out of the root must not turn the loop into an endless walk
    followed = list(walk_files(tmp_path / "a", follow_symlinks=True))
    assert uris(followed) == ["doc.md"]
    assert [path for path, _ in failures(followed, tmp_path / "a")] == ["loop", "up/a", "up/self"]


def test_dangling_symlink_and_fifo(tmp_path: Path) -> None:
    touch(tmp_path, "ok.txt")
    (tmp_path / "broken.md").symlink_to(tmp_path / "nowhere.md")
    os.mkfifo(tmp_path / "pipe.txt")
    results = list(walk_files(tmp_path))
    assert uris(results) == ["ok.txt"]
    assert failures(results, tmp_path) == [
        ("broken.md", "dangling symlink: its target does not exist"),
        ("pipe.txt", "not a regular file (device, FIFO or socket)"),
    ]


def test_missing_root_raises_at_call_time(tmp_path: Path) -> None:
    with pytest.raises(ConnectorError, match="no such file or directory"):
        walk_files(tmp_path / "missing")
    (tmp_path / "dangling-root").symlink_to(tmp_path / "missing")
    with pytest.raises(ConnectorError, match="dangling symlink"):
        walk_files(tmp_path / "dangling-root")


def test_single_file_root(tmp_path: Path) -> None:
    touch(tmp_path, "notes/only.md", "notes/blob.bin")
    (entry,) = walk_files(tmp_path / "notes" / "only.md")
    assert isinstance(entry, FileEntry)
    assert (entry.uri, entry.format, entry.path) == ("only.md", "md", tmp_path / "notes/only.md")
    (failure,) = walk_files(tmp_path / "notes" / "blob.bin")
    assert failure == WalkFailure(
        str(tmp_path / "notes" / "blob.bin"), "unsupported file type '.bin'"
    )


def test_root_given_through_a_symlink(tmp_path: Path) -> None:
    touch(tmp_path, "real/a.md")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    results = list(walk_files(tmp_path / "link"))
    assert uris(results) == ["a.md"]
    assert results[0].path == tmp_path / "link" / "a.md"  # type: ignore[union-attr]
