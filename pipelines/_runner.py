"""The job runner: every writer job (ingest, repair, finetune's registration, tune-fusion's
config write; reindex and migrate next) runs inside ``with job(workspace, kind, params)``.

One place owns what each job used to do for itself, so no job can get it half right:

- **the writer lock**, taken once by the outermost job (``wait`` seconds, then
  :class:`~ragkit.errors.WorkspaceLockedError`, which the CLI turns into exit code 75) and let go
  when it ends, by an exception or Ctrl-C too. A job started inside another job's block (a
  reindex that runs an ingest) reuses the outer job's lock instead of waiting for itself;
- **the store's schema upgrade**, applied under the lock before anything else writes;
- **crashed runs**: a process killed outright (SIGKILL, power loss) leaves its ``runs`` row
  ``running``. The next outermost job, holding the lock, marks each such row of this host whose
  process is gone as ``crashed``. Rows of other hosts are left alone: their processes cannot be
  looked at from here;
- **the runs row**: kind, parameters (with anything named like a secret masked), counts from
  :meth:`Job.outcome`, start and end time, and status ``ok``/``partial``/``failed`` (error
  saved; Ctrl-C is ``interrupted``). A nested job is its own row whose ``parent_id`` names the
  outer run, so each step's counts and failure stay visible, and a failure of the inner job
  fails the outer one too (the exception passes through it);
- **Qdrant aliases**, pointed where the store's aliases point
  (:func:`ragkit.qdrant_aliases.follow_store_aliases`; a Qdrant that cannot be reached is a
  warning, not a failed job), in case a process died between a
  cutover's store transaction and its Qdrant alias call; what changed is :attr:`Job.followed`;
- **run history**, pruned at the start of each outermost job to ``[runs] keep`` rows and
  ``keep_days`` days; a row still ``running`` is never pruned;
- **checkpoints**: :meth:`Job.checkpoint` / :meth:`Job.resume_point` keep JSON values in the
  ``checkpoints`` table under the job's kind, so the next run of that kind resumes where a
  failed or killed one stopped. Written inside a store transaction, a checkpoint commits with
  the work it describes. They are cleared when a run of that kind ends without an exception
  (``ok`` or ``partial``: the pass is complete, its per-item failures are in its report).

Jobs run on one thread: an inner job is one started inside an outer job's block.
"""

from __future__ import annotations

import json
import os
import socket
import weakref
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragkit.qdrant_aliases import follow_store_aliases_or_warn

if TYPE_CHECKING:
    from ragkit.workspace import Workspace

__all__ = ["Job", "Runner", "job", "public_params", "runner_for"]

#: Parts of a parameter name that mark its value as a secret: it is recorded as ``"***"``.
SECRET_NAME_PARTS = ("api_key", "apikey", "token", "password", "passwd", "secret")
MASK = "***"


@dataclass
class Job:
    """A job in progress: its ``runs`` row, outcome and checkpoints."""

    kind: str
    run_id: int
    params: dict[str, Any]
    parent_id: int | None
    _runner: Runner = field(repr=False)
    status: str = "ok"
    stats: dict[str, Any] = field(default_factory=dict)
    #: Qdrant aliases this (outermost) job moved to follow the store's at its start
    followed: list[str] = field(default_factory=list)

    def outcome(self, ok: bool, stats: dict[str, Any]) -> None:
        """What the job did: ``partial`` when some items failed, and the counts to record."""
        self.status = "ok" if ok else "partial"
        self.stats = stats

    def checkpoint(self, key: str, value: Any) -> None:
        """Remember how far the job got (any JSON value), for the next run of this kind."""
        self._runner.workspace.store.set_checkpoint(self.kind, key, json.dumps(value))

    def resume_point(self, key: str, default: Any = None) -> Any:
        """The value a previous, unfinished run of this kind saved under ``key``."""
        value = self._runner.workspace.store.get_checkpoint(self.kind, key)
        return default if value is None else json.loads(value)

    def job(
        self, kind: str, params: Mapping[str, Any] | None = None
    ) -> AbstractContextManager[Job]:
        """An inner job under this one's lock (the same as calling :func:`job` meanwhile)."""
        return self._runner.job(kind, params)

    @contextmanager
    def unlocked(self, wait: float = 365 * 86400.0) -> Iterator[None]:
        """Let other writers in for the block's length: the lock is released, and taken
        again (waiting up to ``wait`` seconds) when the block ends. For a long job that does
        most of its work outside the store (a migration's backfill encodes unlocked and
        commits locked), so an ingest meanwhile is not refused. Only the outermost job may
        do this, and it must re-read whatever another writer may have changed."""
        runner = self._runner
        if runner.current is not self or len(runner._active) != 1:
            raise RuntimeError("only the outermost job, with no inner job running, may unlock")
        runner.workspace.lock.release()
        try:
            yield
        finally:
            runner.workspace.lock.acquire(wait=wait)


class Runner:
    """Runs the jobs of one workspace; get it with :func:`runner_for`, so that nested jobs of
    the workspace, whoever starts them, share one stack and one lock."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self._active: list[Job] = []

    @property
    def current(self) -> Job | None:
        return self._active[-1] if self._active else None

    @contextmanager
    def job(
        self, kind: str, params: Mapping[str, Any] | None = None, *, wait: float = 0.0
    ) -> Iterator[Job]:
        """Run the block as job ``kind``. ``wait``: seconds to wait for another writer's lock
        (ignored by an inner job, which already holds it)."""
        if self._active:
            yield from self._run(kind, params)
            return
        lock = self.workspace.lock
        lock.acquire(wait=wait)
        try:
            self.workspace.store.upgrade()  # an older store's tables, brought up to date
            self._reap_crashed()
            self._prune_history()
            followed = follow_store_aliases_or_warn(self.workspace)
            yield from self._run(kind, params, followed)
            # A job may have made an alias (a first ingest makes its collection's default)
            follow_store_aliases_or_warn(self.workspace)
        finally:
            lock.release()

    def _run(
        self, kind: str, params: Mapping[str, Any] | None, followed: list[str] | None = None
    ) -> Iterator[Job]:
        store = self.workspace.store
        recorded = public_params(dict(params or {}))
        parent = self.current
        parent_id = parent.run_id if parent else None
        run_id = store.start_run(kind, os.getpid(), socket.gethostname(), recorded, parent_id)
        job = Job(kind, run_id, recorded, parent_id, self, followed=followed or [])
        self._active.append(job)
        _IN_PROCESS.add((str(store.path), run_id))
        try:
            yield job
        except KeyboardInterrupt:
            store.finish_run(run_id, "failed", job.stats, "interrupted")
            raise
        except BaseException as exc:
            store.finish_run(run_id, "failed", job.stats, f"{type(exc).__name__}: {exc}")
            raise
        finally:
            self._active.remove(job)
            _IN_PROCESS.discard((str(store.path), run_id))
        store.clear_checkpoints(kind)
        store.finish_run(run_id, job.status, job.stats, None)

    def _prune_history(self) -> None:
        """Keep the runs table to ``[runs] keep`` / ``keep_days``: done here, under the lock
        and after reaping, so a scheduled job bounds its own history and a dead run's row is
        ``crashed`` (prunable) rather than ``running`` (never pruned) by now."""
        settings = self.workspace.config.runs
        self.workspace.store.prune_runs(keep=settings.keep, keep_days=settings.keep_days)

    def _reap_crashed(self) -> None:
        """Mark ``crashed`` the runs of this host left ``running`` by a process that is gone.
        Called under the lock with no job of this runner active, so a row with this very pid
        that no job of this process runs is a dead process's whose pid was reused (common in
        containers)."""
        host, me = socket.gethostname(), os.getpid()
        store = self.workspace.store
        for run_id, pid, run_host in store.running_runs():
            if run_host != host or pid is None or (str(store.path), run_id) in _IN_PROCESS:
                continue  # another host's, or a job of this process that let the lock go
            if pid == me or not process_alive(pid):
                store.mark_crashed(
                    [run_id], f"process {pid} on {host} ended without finishing this run"
                )


#: (store path, run id) of every job running in this process, whichever workspace object
#: runs it: a job that let its lock go (:meth:`Job.unlocked`) is alive, not crashed
_IN_PROCESS: set[tuple[str, int]] = set()

_runners: weakref.WeakKeyDictionary[Workspace, Runner] = weakref.WeakKeyDictionary()


def runner_for(workspace: Workspace) -> Runner:
    """The workspace's runner (one per ``Workspace`` object)."""
    runner = _runners.get(workspace)
    if runner is None:
        runner = _runners[workspace] = Runner(workspace)
    return runner


def job(
    workspace: Workspace,
    kind: str,
    params: Mapping[str, Any] | None = None,
    *,
    wait: float = 0.0,
) -> AbstractContextManager[Job]:
    """``with job(workspace, "ingest", params, wait=...) as run:`` — see :meth:`Runner.job`."""
    return runner_for(workspace).job(kind, params, wait=wait)


def public_params(params: Any) -> Any:
    """``params`` as JSON-ready values, with the value of every key named like a secret
    (``*api_key*``, ``*token*``, ``*password*``, ``*secret*``) masked, at any depth: a runs row
    is read by whoever can read the store."""
    if isinstance(params, Mapping):
        return {
            str(key): MASK if _secret_name(str(key)) else public_params(value)
            for key, value in params.items()
        }
    if isinstance(params, list | tuple | set | frozenset):
        return [public_params(value) for value in params]
    if isinstance(params, Path):
        return str(params)
    if params is None or isinstance(params, bool | int | float | str):
        return params
    return str(params)


def _secret_name(key: str) -> bool:
    name = key.lower().replace("-", "_")
    return any(part in name for part in SECRET_NAME_PARTS)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host; a zombie (killed, not yet waited for) is not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): the signal test is all there is
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"
