"""The producer half of a pipelined ingest: files are read, parsed and chunked ahead of the
encoder, on a thread of their own, into a queue bounded by chunks.

One source at a time, a producer thread walks the folder, reads and hashes each file once
(:func:`read_source_bytes`), sends the files that need parsing to the worker pool ahead of time
(the pool sends them to a worker several per round trip, each under its own time and memory
limits) and chunks what comes back. It hands :class:`FileWork` items over in walk order through
a :class:`Handoff` that holds at most ``[ingest] pipeline_chunks`` chunks (a file counts its
chunks, at least one): when it is full the producer waits, so the memory ahead of the encoder
is bounded by that depth plus the file bytes in flight to the pool (``_AHEAD_BYTES``, or one
file larger than that).

The producer never touches the store: the main thread stages, encodes and commits every item
exactly as a serial ingest does (:mod:`ragkit.pipelines.ingest`), so crash safety, the report
and the progress events are the same. With ``pipeline_chunks = 0`` the same producer runs on
the main thread, one file after another.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from ragkit.chunking import Chunker
from ragkit.connectors import LoadOptions, LoadResult, read_source_bytes
from ragkit.connectors.base import UnsafeSourceError
from ragkit.connectors.filesystem import FileEntry, WalkFailure
from ragkit.connectors.pool import ParsePool
from ragkit.errors import ConnectorError
from ragkit.pipelines.ingest_stage import ChunkedFile, chunk_file
from ragkit.store import FileRecord

__all__ = ["AHEAD_FILES", "FileProducer", "FileWork", "Handoff", "Walked", "run_ahead"]

T = TypeVar("T")
Entry = FileEntry | WalkFailure

#: files read and sent to the pool ahead of the one being chunked, and their bytes at most
AHEAD_FILES = 64
_AHEAD_BYTES = 32 * 1024**2
_POLL_S = 0.1  # how often a producer waiting on the pool looks whether it should stop


@dataclass
class Walked:
    """The walk of the source is done: every entry it found, in order (they follow)."""

    entries: list[Entry]


@dataclass
class FileWork:
    """What one walk entry became before staging. ``unchanged``: not parsed, because its size
    and mtime, or else its content hash, match the store's ``known`` record. ``error``: why it
    could not be read or parsed. ``chunked``: its documents chunked as if the store held none
    of them (new files only), or the ConnectorError a chunk cap raised."""

    entry: Entry
    known: FileRecord | None = None
    record: FileRecord | None = None
    unchanged: bool = False
    result: LoadResult | None = None
    error: Exception | None = None
    chunked: ChunkedFile | ConnectorError | None = None

    @property
    def weight(self) -> int:
        """Its share of the handoff's depth: its chunks, at least one."""
        if isinstance(self.chunked, ChunkedFile):
            return max(1, self.chunked.chunk_count)
        return 1


@dataclass
class _Ahead:
    work: FileWork
    future: Future[LoadResult] | None = None
    size: int = 0


class FileProducer:
    """Turns one source's walk into :class:`FileWork` items, in walk order."""

    def __init__(
        self,
        source: str,
        root: Path,
        *,
        follow_symlinks: bool,
        known: dict[str, FileRecord],
        options: LoadOptions,
        pool: ParsePool,
        chunkers: Callable[[], dict[str, Chunker] | None],
    ) -> None:
        """``chunkers()``: what to chunk new files with (asked when the first one is parsed),
        or None to leave the chunking to the main thread."""
        self.source, self.root, self.follow_symlinks = source, root, follow_symlinks
        self.known, self.options, self.pool = known, options, pool
        self.chunkers = chunkers
        self.stopped: Callable[[], bool] = lambda: False

    def items(
        self, walk: Iterable[Entry], stopped: Callable[[], bool] | None = None
    ) -> Iterator[Walked | FileWork]:
        """``stopped``: asked between files and while waiting on the pool, to end early."""
        self.stopped = stopped or self.stopped
        entries = list(walk)
        yield Walked(entries)
        ahead: deque[_Ahead] = deque()
        in_flight = 0
        for entry in entries:
            if self.stopped():
                return
            item = self._start(entry)
            ahead.append(item)
            in_flight += item.size
            while ahead and (
                ahead[0].future is None
                or ahead[0].future.done()
                or len(ahead) > AHEAD_FILES
                or in_flight > _AHEAD_BYTES
            ):
                done = ahead.popleft()
                in_flight -= done.size
                yield self._finish(done)
        while ahead:
            yield self._finish(ahead.popleft())

    def _start(self, entry: Entry) -> _Ahead:
        """Read and hash the file, and send it to the pool when it needs parsing."""
        if isinstance(entry, WalkFailure):  # a skip too: the main thread reports both
            return _Ahead(FileWork(entry))
        known = self.known.get(entry.uri)
        work = FileWork(entry, known)
        if known and known.size == entry.size and known.mtime_ns == entry.mtime_ns:
            work.unchanged = True
            return _Ahead(work)
        try:
            # Read once: the bytes hashed are the bytes parsed, even if the file changes meanwhile.
            data = read_source_bytes(
                entry.path,
                self.options.max_file_bytes,
                root=self.root,
                follow_symlinks=self.follow_symlinks,
            )
            content_hash = hashlib.blake2b(data, digest_size=16).hexdigest()
            work.record = FileRecord(
                self.source, entry.uri, entry.size, entry.mtime_ns, content_hash, entry.format
            )
            if known and known.content_hash == content_hash:
                work.unchanged = True  # only the mtime moved
                return _Ahead(work)
            future = self.pool.submit(
                data, fmt=entry.format, path=entry.path, uri=entry.uri, options=self.options
            )
        except (UnsafeSourceError, ConnectorError, OSError) as exc:
            work.error = exc
            return _Ahead(work)
        return _Ahead(work, future, len(data))

    def _finish(self, ahead: _Ahead) -> FileWork:
        """Wait for the parse and chunk a new file's documents."""
        work = ahead.work
        if ahead.future is None:
            return work
        try:
            work.result = self._wait(ahead.future)
        except ConnectorError as exc:
            work.error = exc
            return work
        chunkers = self.chunkers() if work.known is None else None
        if chunkers is not None:
            try:
                work.chunked = chunk_file(
                    chunkers,
                    self.options,
                    self.source,
                    work.entry.uri,  # type: ignore[union-attr]
                    work.result.documents,
                    {},
                )
            except ConnectorError as exc:
                work.chunked = exc
        return work

    def _wait(self, future: Future[LoadResult]) -> LoadResult:
        while True:
            try:
                return future.result(timeout=_POLL_S)
            except FutureTimeout:
                if self.stopped():
                    raise _Stopped from None


class _Stopped(Exception):
    """The consumer went away: the producer ends without handing anything more over."""


class Handoff(Generic[T]):
    """A queue between one producer and one consumer, bounded by the items' weights: ``put``
    waits while the items queued weigh ``depth`` or more (one item heavier than ``depth``
    still passes, alone). ``peak`` and ``producer_waits`` say how full it got."""

    def __init__(self, depth: int) -> None:
        self.depth = max(1, depth)
        self._items: deque[tuple[T, int]] = deque()
        self._weight = 0
        self._cond = threading.Condition()
        self._done = False
        self._error: BaseException | None = None
        self.stopped = False
        self.peak = 0
        self.producer_waits = 0

    def put(self, item: T, weight: int) -> None:
        with self._cond:
            while not self.stopped and self._items and self._weight + weight > self.depth:
                self.producer_waits += 1
                self._cond.notify_all()  # whoever watches the queue sees it full
                self._cond.wait()
            if self.stopped:
                raise _Stopped
            self._items.append((item, weight))
            self._weight += weight
            self.peak = max(self.peak, self._weight)
            self._cond.notify_all()

    def finish(self, error: BaseException | None = None) -> None:
        """No more items (``error``: the producer failed; the consumer raises it)."""
        with self._cond:
            self._done, self._error = True, error
            self._cond.notify_all()

    def stop(self) -> None:
        """The consumer is done (or failed): drop what is queued, wake a waiting producer."""
        with self._cond:
            self.stopped = True
            self._items.clear()
            self._weight = 0
            self._cond.notify_all()

    def items(self, idle: Callable[[], bool] | None = None) -> Iterator[T]:
        """Items in order; when none is ready, ``idle()`` runs first (and again while it
        returns True: it did some work meanwhile) before waiting for the producer."""
        while True:
            found, item = self._take(block=False)
            while not found and idle is not None and idle():
                found, item = self._take(block=False)
            if not found:
                found, item = self._take(block=True)
            if not found:
                return
            yield item  # type: ignore[misc]

    def _take(self, *, block: bool) -> tuple[bool, T | None]:
        with self._cond:
            while not self._items:
                if self._done:
                    if self._error is not None:
                        raise self._error
                    return False, None
                if not block:
                    return False, None
                self._cond.wait()
            item, weight = self._items.popleft()
            self._weight -= weight
            self._cond.notify_all()
            return True, item


@contextlib.contextmanager
def run_ahead(
    items: Callable[[Callable[[], bool]], Iterator[T]],
    *,
    depth: int,
    weight: Callable[[T], int],
) -> Iterator[Handoff[T]]:
    """Run ``items(stopped)`` on a producer thread into a :class:`Handoff` of ``depth``; on
    the way out (also on an exception or Ctrl-C in the consumer) the producer is stopped and
    joined, so no thread outlives the block."""
    handoff: Handoff[T] = Handoff(depth)

    def produce() -> None:
        produced = items(lambda: handoff.stopped)
        try:
            for item in produced:
                handoff.put(item, weight(item))
        except _Stopped:
            pass
        except BaseException as exc:  # handed to the consumer, which raises it
            handoff.finish(exc)
            return
        finally:
            with contextlib.suppress(_Stopped):
                produced.close()  # type: ignore[attr-defined]
        handoff.finish()

    thread = threading.Thread(target=produce, name="ragkit-ingest-producer", daemon=True)
    thread.start()
    try:
        yield handoff
    finally:
        handoff.stop()
        thread.join()
