"""One writer per output: a lock file holding the writer's process id.

Two `starlabel train` (or `predict`) processes writing into the same --out would interleave their
checkpoints and renames. The lock is a file created with O_EXCL (atomic on local file systems);
a lock left by a process that is no longer alive (kill -9) is taken over with a message.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from .atomic import ensure_dir, pid_alive

log = logging.getLogger(__name__)


class LockedError(RuntimeError):
    """Another live process holds the output's lock."""


def lock_path_for(out, directory: bool) -> Path:
    """`OUT/.starlabel.lock` for an output directory, `.NAME.lock` beside an output file."""
    out = Path(out)
    return out / ".starlabel.lock" if directory else out.with_name(f".{out.name}.lock")


def _holder(lock: Path) -> int | None:
    try:
        text = lock.read_text().strip()
    except FileNotFoundError:
        return None
    try:
        return int(text)
    except ValueError:
        return -1  # half-written by a process killed between create and write: treat as dead


def _acquire(lock: Path, what: str) -> None:
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            pid = _holder(lock)
            if pid is None:
                continue  # released meanwhile: try again
            if pid > 0 and pid_alive(pid):
                raise LockedError(f"{what} is being written by another starlabel process (pid {pid}, "
                                  f"lock {lock}); wait for it to finish, or use another --out")
            log.warning("taking over the lock %s of process %s, which is no longer running", lock, pid)
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()
            continue
        try:
            os.write(fd, f"{os.getpid()}\n".encode())
        finally:
            os.close(fd)
        return
    raise LockedError(f"could not take the lock {lock} for {what}")


@contextlib.contextmanager
def output_lock(out, directory: bool = False):
    """Hold the lock of output `out` (a directory with `directory=True`, else a file) while writing."""
    out = Path(out)
    lock = lock_path_for(out, directory)
    ensure_dir(lock.parent)
    _acquire(lock, str(out))
    try:
        yield lock
    finally:
        if _holder(lock) == os.getpid():
            with contextlib.suppress(OSError):
                lock.unlink()
