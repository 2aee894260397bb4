"""One writer per workdir: an exclusive lock on `WORKDIR/.lock` held for a run's whole life.

The lock is an advisory `fcntl.flock` on the file, which holds the holder's process id. The
operating system releases it when the holder exits, however it exits, so a workdir left by a
killed run is free again at once; a run that finds the workdir locked fails before it reads or
writes anything else there, with `WorkdirLocked` naming the holder. Within one process the lock
is re-entrant (an experiment setting locks its workdir, then `fit` locks it again).

Multi-process runs (`jax.process_count() > 1`): process 0 is the only writer of a workdir, so
only process 0 takes the lock (the others' hosts may not even share its filesystem); it tells
the others whether it got it, and every process raises `WorkdirLocked` when it did not.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from pathlib import Path
from typing import Iterator

import jax
import numpy as np

from hparams_jax.errors import ConfigError

LOCK_NAME = ".lock"


class WorkdirLocked(RuntimeError):
    """Another process holds the workdir's lock (another run is writing there)."""

    def __init__(self, workdir: Path, pid: int | None):
        self.workdir, self.pid = workdir, pid
        holder = f"process {pid}" if pid is not None else "another process"
        super().__init__(
            f"workdir={str(workdir)!r} is in use by another run ({holder} holds "
            f"{workdir / LOCK_NAME}); wait for it to finish, stop it, or use another workdir.")


_held: dict[Path, list] = {}  # lock path -> [file descriptor, depth], for re-entrance
_guard = threading.Lock()


def _usable(workdir: Path, action: str, err: OSError) -> ConfigError:
    return ConfigError(f"workdir={str(workdir)!r} cannot be used: {action} failed "
                       f"({err.strerror or err}); it must be a folder this process can write.")


def _acquire(path: Path, workdir: Path) -> int:
    """Opens and locks `path`; retries when a releasing holder removed the file in between."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as err:
            raise _usable(workdir, f"creating {path.name}", err) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise WorkdirLocked(workdir, pid) from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # we locked a file its holder has just unlinked: take the new one


def _read_pid(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return int(text) if text.isdigit() else None


def _lock(workdir: Path) -> Path:
    if workdir.exists() and not workdir.is_dir():
        raise ConfigError(f"workdir={str(workdir)!r} cannot be used: it is a file, not a folder.")
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _usable(workdir, "creating the folder", err) from None
    path = (workdir / LOCK_NAME).resolve()
    with _guard:
        if path in _held:
            _held[path][1] += 1
            return path
        fd = _acquire(path, workdir)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as err:
            _release_fd(path, fd)
            raise _usable(workdir, f"writing {path.name}", err) from None
        _held[path] = [fd, 1]
    return path


def _release_fd(path: Path, fd: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # while still locked: a waiting opener then sees a new inode
    os.close(fd)


def _unlock(path: Path) -> None:
    with _guard:
        entry = _held[path]
        entry[1] -= 1
        if entry[1] == 0:
            del _held[path]
            _release_fd(path, entry[0])


@contextlib.contextmanager
def workdir_lock(workdir: str | os.PathLike) -> Iterator[Path]:
    """Holds the lock of `workdir` (created if missing) for the `with` block; yields the workdir.

    Args:
      workdir: the run's folder.

    Returns:
      A context manager whose `with` block holds the lock and receives the workdir as a `Path`.

    Raises:
      WorkdirLocked: another process holds the lock.
      ConfigError: `workdir` is not a folder this process can write (a file, under a file,
        read-only).

    Examples:
      >>> import tempfile
      >>> from hparams_jax.train import workdir_lock
      >>> with workdir_lock(tempfile.mkdtemp()) as workdir:
      ...     print(workdir.is_dir())
      True
    """
    workdir = Path(workdir)
    if jax.process_count() == 1:
        path = _lock(workdir)
    else:
        path, error = None, None
        if jax.process_index() == 0:
            try:
                path = _lock(workdir)
            except (WorkdirLocked, ConfigError) as err:
                error = err
        from jax.experimental import multihost_utils

        pid = error.pid if isinstance(error, WorkdirLocked) and error.pid else 0
        code = np.array([0 if error is None else 1 if isinstance(error, WorkdirLocked) else 2,
                         pid], np.int32)
        code = multihost_utils.broadcast_one_to_all(code)
        if error is not None:
            raise error
        if code[0] == 1:
            raise WorkdirLocked(workdir, int(code[1]) or None)
        if code[0] == 2:
            raise ConfigError(f"workdir={str(workdir)!r} cannot be used: process 0 could not "
                              "create or lock it.")
    try:
        yield workdir
    finally:
        if path is not None:
            _unlock(path)
