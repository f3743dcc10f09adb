"""Atomic output: write to a temporary file beside the target, then rename.

A crash or Ctrl-C mid-write never leaves a half-written output under the final name. A process
killed outright (kill -9, power cut) cannot remove its temporary file: the next write of the same
output removes the temporaries of processes that are no longer alive (`remove_stale_temps`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import time
from pathlib import Path

log = logging.getLogger(__name__)


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine (one we may not signal counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


TEMP = re.compile(r"^\.(.+)\.tmp(\d+)$")
LISTING_TTL_S = 60.0  # how long a directory's list of temporaries is reused before it is read again
_listings: dict[Path, tuple[float, dict[str, list[Path]]]] = {}


def _temps_beside(directory: Path) -> dict[str, list[Path]]:
    """{target name: its `.NAME.tmp<pid>` files} in `directory`, read at most once per LISTING_TTL_S:
    a survey writes tens of thousands of files into one directory, and listing it before every write
    made writing it quadratic in its size."""
    now = time.monotonic()
    cached = _listings.get(directory)
    if cached is not None and now - cached[0] < LISTING_TTL_S:
        return cached[1]
    temps: dict[str, list[Path]] = {}
    with os.scandir(directory) as entries:
        for e in entries:
            m = TEMP.match(e.name)
            if m:
                temps.setdefault(m.group(1), []).append(directory / e.name)
    _listings[directory] = (now, temps)
    return temps


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Remove `.NAME.tmp<pid>` files beside `path` whose process is dead; returns what was removed.
    (A temporary left by a process that dies while this one runs is found within LISTING_TTL_S.)"""
    path = Path(path)
    removed = []
    try:
        temps = _temps_beside(path.parent) if path.parent.is_dir() else {}
    except OSError:
        return removed
    for p in temps.pop(path.name, []):
        pid = int(TEMP.match(p.name).group(2))
        if pid == os.getpid() or pid_alive(pid):
            continue
        try:
            size = p.stat().st_size
            p.unlink()
        except OSError:
            continue
        log.info("removed %s, left by an interrupted run (%.1f MB)", p, size / 1e6)
        removed.append(p)
    return removed


def ensure_dir(d: str | os.PathLike) -> Path:
    """mkdir -p that says "Not a directory" (not "File exists") when a regular file is in the way."""
    d = Path(d)
    for a in (d, *d.parents):
        if a.exists():
            if not a.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(a))
            break
    d.mkdir(parents=True, exist_ok=True)
    return d


def _umask() -> int:
    """This process's umask, read without changing it where Linux says it (/proc), else set and restored."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _plain_write_mode(path: Path) -> int:
    """The mode an ordinary open(path, "w") leaves: the existing file's, else 0o666 minus the umask.
    Why: safetensors ≥ 0.8.1 creates its files 0600 whatever the umask (safetensors issue #782), so
    model bundles written on a shared cluster account were unreadable by the rest of the survey team."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path; on success it replaces `path` in one rename, with the permissions a
    plain write would have left (`_plain_write_mode`)."""
    path = Path(path)
    ensure_dir(path.parent)
    remove_stale_temps(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        if tmp.exists():
            os.chmod(tmp, _plain_write_mode(path))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path: str | os.PathLike, obj, **dumps_kw) -> Path:
    """`obj` as JSON (json.dumps with `dumps_kw`), written atomically; returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, **dumps_kw))
    return path
