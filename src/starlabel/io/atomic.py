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


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Remove `.NAME.tmp<pid>` files beside `path` whose process is dead; returns what was removed."""
    path = Path(path)
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.tmp(\d+)$")
    removed = []
    try:
        candidates = list(path.parent.iterdir()) if path.parent.is_dir() else []
    except OSError:
        return removed
    for p in candidates:
        m = pattern.match(p.name)
        if m and int(m.group(1)) != os.getpid() and not pid_alive(int(m.group(1))):
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


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path; on success it replaces `path` in one rename."""
    path = Path(path)
    ensure_dir(path.parent)
    remove_stale_temps(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
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
