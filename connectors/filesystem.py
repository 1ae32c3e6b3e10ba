"""Finding the files of a source directory.

The walk is deterministic (sorted) so that two ingests of the same tree see files in the same
order, and every file it cannot use is reported as a :class:`WalkFailure` instead of being
skipped silently, so a user can tell "ignored on purpose" from "broken".  A file of a type no
connector reads (a site's ``.css``, ``.svg``, images, fonts) is a :class:`WalkSkip`: reported and
counted, but not a failure, since a documentation folder is full of them.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ragkit.connectors.base import format_for_path, printable_path
from ragkit.errors import ConnectorError

__all__ = [
    "SKIPPED_DIRS",
    "FileEntry",
    "WalkFailure",
    "WalkSkip",
    "compile_glob",
    "walk_files",
]

# Dependency and cache folders hold thousands of files nobody means to search.
SKIPPED_DIRS = frozenset({"__pycache__", "node_modules"})

_LEAVES_ROOT = "symlink leaves the source root; not followed (use follow_symlinks)"


@dataclass(frozen=True, slots=True)
class FileEntry:
    """A loadable file: ``path`` is the real path, for opening; ``uri`` is its posix path
    relative to the walked root, escaped by :func:`printable_path` so that a name that is not
    valid UTF-8 still has a stable uri the store and the terminal accept."""

    path: Path
    uri: str
    size: int
    mtime_ns: int
    format: str


@dataclass(frozen=True, slots=True)
class WalkFailure:
    """A file or directory the walk found but cannot use, and why.

    ``forget``: what the index holds for this path must go (it became a symlink out of the
    root); any other failure keeps the last good version, so a file that is briefly unreadable
    does not vanish from search.
    """

    path: str
    reason: str
    forget: bool = False


@dataclass(frozen=True, slots=True)
class WalkSkip(WalkFailure):
    """A file of an unsupported type, found while walking a folder.

    A subclass, so that code which only knows failures still reports it; ingest counts it as
    skipped (per extension), or as a failure under ``strict``.  ``extension`` is the lower-case
    suffix (``.css``), or ``""`` for a name without one.
    """

    extension: str = ""


def compile_glob(pattern: str) -> re.Pattern[str]:
    """Compile an fnmatch-style glob for relative posix paths.

    ``*`` and ``?`` also match ``/`` (as in :mod:`fnmatch`), and ``**/`` also matches no
    directory at all, so ``*.md`` and ``**/*.md`` both match ``a.md`` and ``x/y/a.md``.
    """
    pattern = pattern.strip().removeprefix("./").lstrip("/")
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern[i] == "*":
            out.append(".*")
            i += 2 if pattern.startswith("**", i) else 1
        elif pattern[i] == "?":
            out.append(".")
            i += 1
        elif pattern[i] == "[":
            start = i + 1
            if start < len(pattern) and pattern[start] == "!":
                start += 1
            if start < len(pattern) and pattern[start] == "]":
                start += 1
            end = pattern.find("]", start)
            if end < 0:
                out.append(re.escape("["))
                i += 1
                continue
            body = pattern[i + 1 : end].replace("\\", "\\\\")
            out.append("[^" + body[1:] + "]" if body.startswith("!") else "[" + body + "]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out), re.S)


class _Matcher:
    def __init__(self, include: Sequence[str], exclude: Sequence[str]) -> None:
        self.include = [compile_glob(p) for p in include]
        self.exclude = [compile_glob(p) for p in exclude]
        # "drafts/**" excludes everything below drafts/, so the folder need not be read at all.
        self.exclude_dirs = [compile_glob(p) for p in exclude] + [
            compile_glob(p[:-3]) for p in exclude if p.rstrip().endswith("/**")
        ]

    def wants_file(self, rel: str) -> bool:
        return any(p.fullmatch(rel) for p in self.include) and not any(
            p.fullmatch(rel) for p in self.exclude
        )

    def prunes_dir(self, rel: str) -> bool:
        return any(p.fullmatch(rel) for p in self.exclude_dirs)


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _file_result(
    path: str, rel: str, st: os.stat_result, *, named: bool = False
) -> FileEntry | WalkFailure:
    """``named``: the file was given itself, not found in a folder, so an unsupported type is
    a failure (the user asked for that very file), not a skip."""
    if not stat.S_ISREG(st.st_mode):
        return WalkFailure(path, "not a regular file (device, FIFO or socket)")
    fmt = format_for_path(rel)
    if fmt is None:
        suffix = Path(rel).suffix
        reason = f"unsupported file type '{suffix}'" if suffix else "unsupported file type"
        reason += " (no extension)" if not suffix else ""
        if named:
            return WalkFailure(path, reason)
        return WalkSkip(path, reason, extension=suffix.lower())
    return FileEntry(Path(path), printable_path(rel), st.st_size, st.st_mtime_ns, fmt)


def _list_dir(path: str) -> list[str] | WalkFailure:
    try:
        with os.scandir(path) as entries:
            return sorted(entry.name for entry in entries)
    except OSError as exc:
        return WalkFailure(path, f"cannot list directory: {exc.strerror or exc}")


def _walk(
    root: str, root_real: str, root_key: tuple[int, int], matcher: _Matcher, follow: bool
) -> Iterator[FileEntry | WalkFailure]:
    visited = {root_key}
    names = _list_dir(root)
    if isinstance(names, WalkFailure):
        yield names
        return
    # Each frame: (directory path, its relative uri prefix, remaining names, enclosing dirs).
    stack = [(root, "", iter(names), (root_key,))]
    while stack:
        directory, prefix, remaining, ancestors = stack[-1]
        name = next(remaining, None)
        if name is None:
            stack.pop()
            continue
        if name.startswith("."):
            continue
        path = os.path.join(directory, name)
        rel = prefix + name
        try:
            st = os.lstat(path)
            is_link = stat.S_ISLNK(st.st_mode)
            if is_link:
                st = os.stat(path)
        except FileNotFoundError:
            yield WalkFailure(path, "dangling symlink: its target does not exist")
            continue
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                yield WalkFailure(path, "symlink loop: too many levels of symbolic links")
            else:
                yield WalkFailure(path, f"cannot stat: {exc.strerror or exc}")
            continue
        leaves_root = is_link and not _within(os.path.realpath(path), root_real)
        if stat.S_ISDIR(st.st_mode):
            if name in SKIPPED_DIRS or matcher.prunes_dir(rel):
                continue
            if leaves_root and not follow:
                yield WalkFailure(path, _LEAVES_ROOT, forget=True)
                continue
            key = (st.st_dev, st.st_ino)
            if key in ancestors:
                yield WalkFailure(path, "symlink loop: points back to an enclosing directory")
                continue
            if key in visited:
                yield WalkFailure(path, "directory already walked through another path; skipped")
                continue
            visited.add(key)
            children = _list_dir(path)
            if isinstance(children, WalkFailure):
                yield children
                continue
            stack.append((path, rel + "/", iter(children), (*ancestors, key)))
            continue
        if not matcher.wants_file(rel):
            continue
        if leaves_root and not follow:
            yield WalkFailure(path, _LEAVES_ROOT, forget=True)
            continue
        yield _file_result(path, rel, st)


def walk_files(
    root: Path,
    *,
    include: Sequence[str] = ("**/*",),
    exclude: Sequence[str] = (),
    follow_symlinks: bool = False,
) -> Iterator[FileEntry | WalkFailure]:
    """Yield the loadable files under ``root`` in sorted order, and a failure for each file
    that cannot be used (a :class:`WalkSkip` for one of an unsupported type).

    Hidden names, ``__pycache__`` and ``node_modules`` are skipped silently, and so is a
    directory whose own path matches an ``exclude`` pattern (``drafts`` or ``**/drafts``
    excludes everything below it, as in .gitignore).  A missing root
    raises :class:`ConnectorError` at call time, not at the first ``next()``, because it is
    a configuration error rather than a problem with one file.
    """
    root = Path(root)
    try:
        st = os.stat(root)
    except FileNotFoundError:
        reason = (
            "source root is a dangling symlink"
            if root.is_symlink()
            else "no such file or directory"
        )
        raise ConnectorError(str(root), reason) from None
    except OSError as exc:
        raise ConnectorError(str(root), f"cannot read source root: {exc.strerror or exc}") from exc
    if not stat.S_ISDIR(st.st_mode):
        return iter([_file_result(str(root), root.name, st, named=True)])
    matcher = _Matcher(include, exclude)
    return _walk(
        str(root), os.path.realpath(root), (st.st_dev, st.st_ino), matcher, follow_symlinks
    )
