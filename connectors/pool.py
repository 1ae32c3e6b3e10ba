"""Parse untrusted files in worker processes under per-file limits of time and memory.

A parser stuck for minutes in hostile HTML, or one that needs GBs for a file, cannot be stopped
from inside the process that runs it; a worker process can be killed. Each worker parses one file
at a time with :func:`ragkit.connectors.parse_bytes` under ``RLIMIT_AS`` (a ``MemoryError``
becomes a per-file failure), and a worker that overruns the wall-time limit is killed and
replaced. Every failure comes back as a :class:`~ragkit.errors.ConnectorError` naming the file,
so the batch goes on with the next one.

Workers are fresh interpreters (``subprocess`` + fork/exec, never a bare ``fork``: the parent may
hold torch threads), started on first use and reused for the life of the pool, so their start-up
is paid once per ingest, not once per file. They are not started through ``multiprocessing``'s
spawn context because that re-imports the caller's ``__main__``: a user script calling
``kit.ingest()`` without an ``if __name__ == "__main__"`` guard would ingest again in every
worker. ``submit`` returns a future and blocks while ``max_pending`` files are in flight, so a
pipelined ingest can parse ahead on several workers with bounded memory.

Files queued while a worker was busy go to it together, up to ``batch_files`` (and
``batch_bytes``) in one message, so the round trip to the worker is paid once per batch rather
than once per file. The worker still answers each file as soon as it is parsed and the time
limit restarts with each answer, so the limits stay per file: the file a worker was killed on
is the first one it had not answered, and the rest of its batch goes to the next worker.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, Pipe, wait
from pathlib import Path

from ragkit.connectors.base import LoadOptions, LoadResult, human_size
from ragkit.errors import ConnectorError

__all__ = ["ParsePool"]

# Runs in the worker. Importing the ``ragkit`` package runs its __init__, which loads the whole
# workspace (torch included, >1 s); a worker needs only the connectors, so it registers the
# package without running it, after taking the parent's sys.path so it finds the same code.
_BOOTSTRAP = """\
import importlib.util, sys
from multiprocessing.connection import Connection
conn = Connection(int(sys.argv[1]))
sys.path[:] = conn.recv()
spec = importlib.util.find_spec("ragkit")
sys.modules["ragkit"] = importlib.util.module_from_spec(spec)
from ragkit.connectors._pool_worker import serve
serve(conn, int(sys.argv[2]))
"""
_START_TIMEOUT_S = 120.0
_CLOSE_GRACE_S = 2.0
_BATCH_FILES = 32
_BATCH_BYTES = 4 * 1024**2


@dataclass
class _Task:
    data: bytes
    fmt: str
    path: Path
    uri: str
    options: LoadOptions
    future: Future[LoadResult] = field(default_factory=Future)


@dataclass
class _Worker:
    process: subprocess.Popen[bytes]
    conn: Connection
    started: float
    ready: bool = False
    #: the files sent and not answered yet, in the order the worker parses them
    tasks: deque[_Task] = field(default_factory=deque)
    deadline: float = float("inf")

    @property
    def task(self) -> _Task | None:
        """The file being parsed (the first one not answered)."""
        return self.tasks[0] if self.tasks else None


class ParsePool:
    """A few worker processes that parse files under wall-time and memory limits.

    ``timeout_s`` counts from the moment a worker receives a file; ``memory_bytes`` is the
    address space a parse may add to a worker (measured after its imports, so the limit means
    the same whatever the interpreter maps at start). ``0`` switches either limit off.
    """

    def __init__(
        self,
        *,
        max_workers: int = 1,
        timeout_s: float = 30.0,
        memory_bytes: int = 2 * 1024**3,
        max_pending: int | None = None,
        batch_files: int = _BATCH_FILES,
    ) -> None:
        self.max_workers = max(1, max_workers)
        self.batch_files = max(1, batch_files)
        self.timeout_s = timeout_s
        self.memory_bytes = memory_bytes
        self._slots = threading.Semaphore(max_pending or 2 * self.max_workers)
        self._queue: deque[_Task] = deque()
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._wake_reader, self._wake_writer = Pipe(duplex=False)
        self._thread: threading.Thread | None = None
        self._closed = False
        self.workers_started = 0
        self.batches_sent = 0

    @classmethod
    def for_options(
        cls, options: LoadOptions, *, max_workers: int = 1, max_pending: int | None = None
    ) -> ParsePool:
        return cls(
            max_workers=max_workers,
            timeout_s=options.parse_timeout_s,
            memory_bytes=options.parse_memory_bytes,
            max_pending=max_pending,
        )

    def __enter__(self) -> ParsePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- public API -------------------------------------------------------------------------
    def submit(
        self, data: bytes, *, fmt: str, path: Path, uri: str, options: LoadOptions
    ) -> Future[LoadResult]:
        """Queue one file; the future holds its :class:`LoadResult` or a ``ConnectorError``."""
        self._slots.acquire()
        task = _Task(data, fmt, Path(path), uri, options)
        task.future.add_done_callback(lambda _: self._slots.release())
        with self._lock:
            if self._closed:
                self._slots.release()
                raise RuntimeError("ParsePool is closed")
            self._queue.append(task)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ragkit-parse", daemon=True)
                self._thread.start()
        self._wake()
        return task.future

    def parse(
        self, data: bytes, *, fmt: str, path: Path, uri: str, options: LoadOptions
    ) -> LoadResult:
        """Parse one file and wait for it (the ingest's one-file-at-a-time use)."""
        return self.submit(data, fmt=fmt, path=path, uri=uri, options=options).result()

    def worker_pids(self) -> list[int]:
        with self._lock:
            return [w.process.pid for w in self._workers]

    def close(self) -> None:
        """Stop every worker (killing a busy one) and fail what was still queued; idempotent,
        and safe from ``finally`` after a KeyboardInterrupt: no worker outlives the pool."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._wake()
        if self._thread is not None:
            self._thread.join()
        for worker in self._workers:
            busy = worker.task is not None
            if busy:
                _fail(worker.tasks.popleft(), "ingest stopped while the file was being parsed")
            self._queue.extendleft(reversed(worker.tasks))
            self._stop(worker, kill=busy)
        self._workers.clear()
        for task in self._queue:
            _fail(task, "ingest stopped before the file was parsed")
        self._queue.clear()
        self._wake_reader.close()
        self._wake_writer.close()

    # -- the dispatcher thread --------------------------------------------------------------
    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # closed: the dispatcher is gone already
            self._wake_writer.send_bytes(b"")

    def _run(self) -> None:
        while True:
            with self._lock:
                if self._closed:
                    return
                self._dispatch()
                busy = [w for w in self._workers if w.task is not None or not w.ready]
            deadline = min((w.deadline for w in busy), default=float("inf"))
            timeout = None if deadline == float("inf") else max(0.0, deadline - time.monotonic())
            ready = wait([self._wake_reader, *(w.conn for w in busy)], timeout)
            if self._wake_reader in ready:
                while self._wake_reader.poll():
                    self._wake_reader.recv_bytes()
            with self._lock:
                for worker in busy:
                    if worker.conn in ready:
                        self._receive_all(worker)
                    elif time.monotonic() >= worker.deadline:
                        self._expire(worker)

    def _dispatch(self) -> None:
        idle = [w for w in self._workers if w.ready and w.task is None]
        while self._queue and idle:
            worker, tasks = idle.pop(), self._next_batch()
            if not tasks:
                continue
            try:
                worker.conn.send([(t.fmt, str(t.path), t.uri, t.options) for t in tasks])
                for task in tasks:
                    worker.conn.send_bytes(task.data)
            except OSError:  # the worker died while idle: not these files' fault, try another
                self._queue.extendleft(reversed(tasks))
                self._retire(worker, None, "")
                continue
            worker.tasks.extend(tasks)
            worker.deadline = _deadline(self.timeout_s)
            self.batches_sent += 1
        starting = sum(1 for w in self._workers if not w.ready)
        while len(self._workers) < self.max_workers and starting < len(self._queue):
            self._workers.append(self._start())
            starting += 1

    def _start(self) -> _Worker:
        parent, child = Pipe()
        process = subprocess.Popen(
            [sys.executable, "-c", _BOOTSTRAP, str(child.fileno()), str(self.memory_bytes)],
            pass_fds=(child.fileno(),),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        child.close()
        parent.send(list(sys.path))
        self.workers_started += 1
        started = time.monotonic()
        return _Worker(process, parent, started, deadline=started + _START_TIMEOUT_S)

    def _next_batch(self) -> list[_Task]:
        """Queued files for one worker: up to ``batch_files``, and past the first file no more
        than ``_BATCH_BYTES`` (a large file travels alone)."""
        tasks: list[_Task] = []
        size = 0
        while self._queue and len(tasks) < self.batch_files:
            task = self._queue[0]
            if tasks and size + len(task.data) > _BATCH_BYTES:
                break
            self._queue.popleft()
            if not (task.future.running() or task.future.set_running_or_notify_cancel()):
                continue  # cancelled while queued
            tasks.append(task)
            size += len(task.data)
        return tasks

    def _receive_all(self, worker: _Worker) -> None:
        """Every answer the worker has sent so far (a batch's answers often arrive together)."""
        while worker in self._workers and self._receive(worker):
            if not worker.conn.poll():
                return

    def _receive(self, worker: _Worker) -> bool:
        """Take one message; False when the worker was retired."""
        try:
            kind, payload = worker.conn.recv()
        except (EOFError, OSError):
            self._retire(worker, worker.task, self._death_reason(worker))
            return False
        if kind == "ready":
            worker.ready, worker.deadline = True, float("inf")
            return True
        if not worker.tasks:
            return True
        task = worker.tasks.popleft()
        # The time limit is per file: the next file of the batch starts now.
        worker.deadline = _deadline(self.timeout_s) if worker.tasks else float("inf")
        if kind == "ok":
            task.future.set_result(payload)
        elif kind == "memory":
            # A worker that ran out of address space may be left fragmented: replace it.
            self._retire(worker, task, self._memory_reason())
            return False
        else:
            _fail(task, payload)
        return True

    def _expire(self, worker: _Worker) -> None:
        if worker.task is None:
            self._retire(worker, None, "")
            for task in self._queue:
                _fail(task, "could not start a parse worker within 120 s")
            self._queue.clear()
            return
        self._retire(
            worker,
            worker.tasks.popleft(),
            f"took longer than {self.timeout_s:g} s to parse; raise [ingest] parse_timeout in "
            "ragkit.toml if the file is legitimate",
        )

    def _retire(self, worker: _Worker, task: _Task | None, reason: str) -> None:
        """Kill ``worker``, fail ``task`` with ``reason`` and queue again the files of its
        batch it had not reached; a new worker starts on demand."""
        self._stop(worker, kill=True)
        self._workers.remove(worker)
        if task is not None:
            _fail(task, reason)
        self._queue.extendleft(reversed([t for t in worker.tasks if t is not task]))
        worker.tasks.clear()
        if not worker.ready and task is None and reason:
            for queued in self._queue:  # it died while starting: so would the next one
                _fail(queued, f"the parse worker could not start ({reason})")
            self._queue.clear()

    def _stop(self, worker: _Worker, *, kill: bool) -> None:
        if not kill:
            try:
                worker.conn.send(None)
                worker.process.wait(_CLOSE_GRACE_S)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait()
        worker.conn.close()

    def _death_reason(self, worker: _Worker) -> str:
        try:
            code = worker.process.wait(_CLOSE_GRACE_S)
        except subprocess.TimeoutExpired:
            code = None
        if code is not None and code < 0:
            how = f"killed by signal {-code}"
            if -code == 9 and self.memory_bytes:
                how += f" (the system may have run out of memory; {self._memory_reason()})"
            return f"the parser crashed ({how})"
        return f"the parser crashed (exit code {code})"

    def _memory_reason(self) -> str:
        return (
            f"needed more than {human_size(self.memory_bytes)} of memory to parse; raise "
            "[ingest] parse_memory_mib in ragkit.toml or split the file"
        )


def _deadline(timeout_s: float) -> float:
    return time.monotonic() + timeout_s if timeout_s > 0 else float("inf")


def _fail(task: _Task, reason: str) -> None:
    if not task.future.done() and (
        task.future.running() or task.future.set_running_or_notify_cancel()
    ):
        task.future.set_exception(ConnectorError(str(task.path), reason))
