"""A run directory that is never lost or silently mixed: atomic writes, one run at a time, clean-up of
only what this invocation made, and interruption (Ctrl-C, SIGTERM, SLURM's pre-emption signal) that
stops at the end of an iteration instead of mid-write.

- :func:`write_bytes` / :func:`write_text`: write to a temporary file beside the target, flush it to
  disk and rename it over the target, so a crash or a full disk leaves the previous version (or
  nothing), never a truncated file; a failed write is a one-line :class:`OutputFault`.
- :class:`RunDirectory`: a lock file with the owner's pid and host (a second run into the same
  directory is refused; a lock whose owner is gone is taken over), and :meth:`RunDirectory.discard`,
  which removes the files this invocation created and never a directory or file that was there before.
- :class:`Interruption`: SIGINT / SIGTERM / SIGUSR2 set a flag the training loop reads after each
  iteration; the job then checkpoints and records status ``interrupted``.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import logging
import os
import signal
import socket
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

LOCK = ".node-lab.lock"
RESULTS = ("checkpoint.pt", "last.pt", "best.pt", "metrics.json", "history.csv", "eval.json")


class OutputFault(Exception):
    """A file node-lab had to write could not be written (full disk, read-only or missing folder,
    permissions): one line naming the path, the cause and the fix."""

    def __init__(self, path: Path | str, problem: str, fix: str) -> None:
        self.path, self.problem, self.fix = str(path), problem, fix
        super().__init__(self.message())

    def message(self) -> str:
        return f"{self.path}: {self.problem}; fix: {self.fix}"


def _describe(err: OSError) -> str:
    return err.strerror or str(err) or type(err).__name__


def _fix_for(err: OSError, key: str = "hydra.run.dir") -> str:
    elsewhere = f"{key}=<a writable folder> (or NODE_LAB_OUTPUTS=<folder>)"
    if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return f"free disk space, or write the run elsewhere: {elsewhere}"
    if err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"write the run to a writable place: {elsewhere}"
    return f"check the path, or write the run elsewhere: {elsewhere}"


def write_bytes(path: Path, data: bytes) -> None:
    """Atomically replace ``path`` with ``data`` (temporary file in the same folder, fsync, rename)."""
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as err:
        raise OutputFault(path, f"cannot write it ({_describe(err)}); the previous version, if any, is kept",
                          _fix_for(err)) from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode())


@contextlib.contextmanager
def atomic_open(path: Path):
    """``with atomic_open(path) as f: csv.writer(f)...``: a text buffer written atomically on exit."""
    buffer = io.StringIO(newline="")
    yield buffer
    write_text(path, buffer.getvalue())


def check_writable(path: Path, key: str = "hydra.run.dir") -> None:
    """Raise :class:`OutputFault` unless ``path`` (a folder, possibly not made yet; the value of config
    key ``key``) could be created and written: its nearest existing ancestor must be a folder node-lab
    can create entries in. Probes by creating and removing a temporary folder: nothing is left behind."""
    path = Path(path).absolute()
    source = f" (from NODE_LAB_OUTPUTS={os.environ['NODE_LAB_OUTPUTS']})" if os.environ.get("NODE_LAB_OUTPUTS") else ""
    ancestor = path
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputFault(f"{key}={path}", f"cannot be created: {ancestor} is a file, not a folder{source}",
                          f"{key}=<a folder> (or NODE_LAB_OUTPUTS=<folder>)")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".node-lab-probe-", dir=ancestor))
    except OSError as err:
        raise OutputFault(f"{key}={path}", f"cannot be written ({_describe(err)} in {ancestor}){source}",
                          _fix_for(err, key)) from None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def lock_owner(run_dir: Path) -> dict | None:
    """The live owner of ``run_dir``'s lock ({pid, host, started, ...}), or None if it is free or
    stale (its process is gone on this host, or it is the lock of this same SLURM job before a requeue)."""
    path = Path(run_dir) / LOCK
    try:
        owner = json.loads(path.read_text())
        pid = int(owner["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # no lock, or an unreadable one (a crash while writing it): free
    if owner.get("host") == socket.gethostname():
        return owner if pid != os.getpid() and _alive(pid) else None
    job = os.environ.get("SLURM_JOB_ID")
    if job and owner.get("slurm_job_id") == job:
        return None  # the same SLURM job, requeued on another node: its earlier run is gone
    return owner  # another machine's run: it cannot be checked from here, so it counts as live


class RunDirectory:
    """One invocation's hold on a run directory.

    ``snapshot`` (what the folder held before this invocation, top-level names; None: it did not
    exist) decides what :meth:`discard` may remove: only entries that were not there before.
    """

    def __init__(self, path: Path, snapshot: set[str] | None, records: dict[str, bytes] | None = None) -> None:
        self.path = Path(path)
        self.snapshot = snapshot
        self.records = records or {}  # .hydra/ files as they were: Hydra rewrites them before the job starts
        self.locked = False
        self.started = time.time()

    def acquire(self) -> None:
        """Take the lock or raise :class:`RunDirectoryBusy` naming the owner."""
        self.path.mkdir(parents=True, exist_ok=True)
        owner = lock_owner(self.path)
        if owner is not None:
            raise RunDirectoryBusy(self.path, owner)
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        if os.environ.get("SLURM_JOB_ID"):
            record["slurm_job_id"] = os.environ["SLURM_JOB_ID"]
        write_text(self.path / LOCK, json.dumps(record) + "\n")
        self.locked = True

    def release(self) -> None:
        if not self.locked:
            return
        self.locked = False
        try:
            owner = json.loads((self.path / LOCK).read_text())
            if int(owner.get("pid", -1)) == os.getpid():
                (self.path / LOCK).unlink()
        except (OSError, ValueError):
            pass

    def kept_results(self) -> bool:
        """Whether this invocation wrote results worth keeping (a checkpoint, metrics, a history)."""
        return any(self._written(name) for name in RESULTS)

    def _written(self, name: str) -> bool:
        try:
            return (self.path / name).stat().st_mtime >= self.started
        except OSError:
            return False

    def discard(self) -> list[str]:
        """Remove what this invocation created (nothing that was there before) and the folder itself
        if this invocation created it and it is then empty; returns the names removed."""
        import shutil

        if not self.path.is_dir():
            return []
        before = self.snapshot or set()
        removed = []
        for entry in sorted(self.path.iterdir()):
            if entry.name in before:
                continue
            try:
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
                removed.append(entry.name)
            except OSError:
                pass
        if self.records:  # the earlier run's record of its config, as it was (Hydra rewrote the folder)
            folder = self.path / ".hydra"
            for extra in (p for p in folder.iterdir() if f".hydra/{p.name}" not in self.records) if folder.is_dir() \
                    else ():
                try:
                    extra.unlink()
                except OSError:
                    pass
            for name, data in self.records.items():
                try:
                    (self.path / name).write_bytes(data)
                except OSError:
                    pass
        if self.snapshot is None:
            try:
                self.path.rmdir()  # only if empty: never a folder with something of the user's in it
            except OSError:
                pass
        return removed


class RunDirectoryBusy(OutputFault):
    def __init__(self, path: Path, owner: dict) -> None:
        where = f"pid {owner.get('pid')} on {owner.get('host')}, since {owner.get('started', '?')}"
        super().__init__(path, f"in use by another node-lab run ({where})",
                         f"wait for it, or choose another hydra.run.dir; if no run uses it, delete {Path(path) / LOCK}")


def snapshot(path: Path) -> set[str] | None:
    """Top-level names in ``path`` (None if it does not exist): what a run must never remove."""
    path = Path(path)
    try:
        return {p.name for p in path.iterdir()} if path.is_dir() else None
    except OSError:
        return set()


def records(path: Path) -> dict[str, bytes]:
    """The ``.hydra/`` files of an existing run directory (small YAMLs), to put back if a refused run
    had them rewritten."""
    folder = Path(path) / ".hydra"
    try:
        return {f".hydra/{p.name}": p.read_bytes() for p in folder.iterdir() if p.is_file()} if folder.is_dir() else {}
    except OSError:
        return {}


SIGNALS = {"SIGINT": 130, "SIGTERM": 143, "SIGUSR2": 140}  # name -> exit code (128 + number)


class Interruption:
    """While active (a context manager), SIGINT, SIGTERM and SIGUSR2 (submitit/SLURM's warning before
    pre-emption or the time limit) are recorded instead of killing the process: :attr:`requested`
    names the signal, the loop stops at the end of its iteration and the job checkpoints. A second
    Ctrl-C stops at once (Python's default)."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous: dict = {}

    def __call__(self) -> bool:
        return self.requested is not None

    @property
    def exit_code(self) -> int:
        return SIGNALS.get(self.requested or "", 1)

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.requested == "SIGINT" and name == "SIGINT":
            raise KeyboardInterrupt  # the second Ctrl-C: stop now
        self.requested = self.requested or name
        log.warning("%s received: stopping at the end of this iteration (checkpoint, then exit)", name)

    def __enter__(self) -> Interruption:
        import threading

        if threading.current_thread() is not threading.main_thread():
            return self  # signal handlers can only be set from the main thread (joblib workers run jobs there)
        for name in SIGNALS:
            sig = getattr(signal, name, None)
            if sig is not None:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()
