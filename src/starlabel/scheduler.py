"""Running a stage's chunks on a Dask cluster (`--scheduler local[:N]|ADDRESS|FILE|none`).

`connect(spec)` turns the option into a `distributed.Client` (or None: the stage runs in this
process, exactly as without Dask):

- ``none`` or nothing: no Dask.
- ``local`` / ``local:N``: a `LocalCluster` of N single-threaded worker processes on this machine
  (default: the cores this process may use, `cores.usable_cores`), shut down when the stage ends.
- ``tcp://host:port`` (any ``scheme://``) or ``host:port``: a running scheduler, e.g. one started
  by dask-jobqueue's `SLURMCluster` or by ``dask scheduler``; left running afterwards.
- the path of a scheduler file (``dask scheduler --scheduler-file scheduler.json``): the same.
- a `Client` object (Python API): used as it is.

`map_chunks(client, fn, tasks, parts=...)` runs `fn(*task)` for every task on the cluster, each
retried `retries` times when it raises, and yields the results in task order. With a `Parts`
store every finished result is written to disk as soon as it arrives (before it is yielded), so a
stage that is interrupted, or whose chunk failed for good, redoes only the missing chunks when
it is run again. A task's result is a dict of numpy arrays and JSON values (stored as .npz,
never pickled).

Workers must see the stage's input files under the same paths (a shared file system on a
cluster); results travel back to the process that started the stage, which writes the output.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
from collections import deque
from pathlib import Path

import numpy as np

from .cores import usable_cores
from .io.atomic import atomic_path, ensure_dir

log = logging.getLogger(__name__)

RETRIES = 2
_ADDRESS = re.compile(r"^[\w.\-]+:\d+$")


def parse(spec) -> tuple[str, object]:
    """('none', None) | ('local', N) | ('address', 'tcp://…') | ('file', path) | ('client', Client)."""
    if spec is None:
        return "none", None
    if not isinstance(spec, (str, os.PathLike)):
        return "client", spec
    s = str(spec).strip()
    if s.lower() in ("", "none"):
        return "none", None
    m = re.fullmatch(r"local(?::(\d+))?", s, flags=re.IGNORECASE)
    if m:
        n = int(m.group(1)) if m.group(1) else usable_cores()
        if n < 1:
            raise ValueError(f"--scheduler {s}: a local cluster needs at least 1 worker")
        return "local", n
    if "://" in s:
        return "address", s
    if Path(s).is_file():
        return "file", s
    if _ADDRESS.match(s):
        return "address", f"tcp://{s}"
    raise ValueError(f"--scheduler {s!r} is neither 'none', 'local[:N]', a scheduler address (tcp://host:port) "
                     "nor an existing scheduler file")


@contextlib.contextmanager
def connect(spec):
    """Yield a `distributed.Client` for `spec` (see the module docstring), or None for no Dask."""
    kind, value = parse(spec)
    if kind == "none":
        yield None
        return
    if kind == "client":
        yield value
        return
    from distributed import Client, LocalCluster

    if kind == "local":
        log.info("starting a local Dask cluster of %d single-threaded worker processes", value)
        import dask

        # Dask's nanny starts each worker with MALLOC_TRIM_THRESHOLD_=65536, which also switches off
        # glibc's adaptive mmap threshold: torch's megabyte-sized activations are then mmap'ed and
        # page-faulted afresh at every layer, and CPU inference ran 1.6x slower (1021 -> 655
        # spectra/s, benchmarks/bench_dask_predict.py, 2026-11-30). Workers keep glibc's defaults.
        # Any earlier Dask cluster of this process leaves the variable in os.environ, where the new
        # workers would inherit it: it is kept out of the environment while this cluster runs.
        inherited = os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)
        try:
            with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}), \
                    LocalCluster(n_workers=value, threads_per_worker=1, processes=True, dashboard_address=":0",
                                 silence_logs=logging.WARNING) as cluster, Client(cluster) as client:
                yield client
        finally:
            if inherited is not None:
                os.environ["MALLOC_TRIM_THRESHOLD_"] = inherited
        return
    try:
        client = Client(scheduler_file=value) if kind == "file" else Client(value, timeout="30s")
    except OSError as e:
        raise ValueError(f"--scheduler {spec}: cannot reach the Dask scheduler ({e})") from e
    with client:
        log.info("connected to the Dask scheduler at %s (%d workers)", client.scheduler.address,
                 len(client.scheduler_info().get("workers", {})))
        yield client


def n_workers(client) -> int:
    """Worker threads of the cluster (at least 1): how many tasks run at once."""
    try:
        return max(1, sum(w.get("nthreads", 1) for w in client.scheduler_info()["workers"].values()))
    except Exception:  # noqa: BLE001 -- an unusual client: assume one
        return 1


def worker_threads(threads: int | None = None) -> int:
    """Torch threads for one task on a Dask worker: `threads`, else OMP_NUM_THREADS (which Dask's
    nanny sets to 1 in every worker process: the cluster's parallelism is its tasks), else 1."""
    if threads:
        return int(threads)
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS") or 1))
    except ValueError:
        return 1


_WORKER_CACHE: dict = {}  # per worker process: what its tasks load once (a bundle, a dataset's catalogue)


def cached(kind: str, key, load):
    """`load()` once per worker process and `key`: the worker keeps one object of each `kind`, so a
    task finds the bundle its predecessors loaded, and another bundle replaces it."""
    if (kind, key) not in _WORKER_CACHE:
        for k in [k for k in _WORKER_CACHE if k[0] == kind]:
            del _WORKER_CACHE[k]
        _WORKER_CACHE[(kind, key)] = load()
    return _WORKER_CACHE[(kind, key)]


def fingerprint(obj) -> str:
    """sha256 of a JSON-able description of a job: parts of another job are never reused."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def file_stamp(path) -> list:
    """Resolved path, size and modification time of a file: enough to notice it was rewritten."""
    p = Path(path).resolve()
    st = p.stat()
    return [str(p), st.st_size, st.st_mtime_ns]


class Parts:
    """Finished chunk results of one job, kept in a directory until the output is written.

    `key` describes the job (`fingerprint`); a directory left by a job with another key is emptied
    first, so a changed input or setting never picks up stale parts."""

    def __init__(self, directory, key: str):
        self.dir = Path(directory)
        self.key = key
        stamp = self.dir / "job.json"
        if self.dir.is_dir():
            try:
                old = json.loads(stamp.read_text()).get("key")
            except (OSError, ValueError):
                old = None
            if old != key:
                log.info("%s holds the parts of another job: starting afresh", self.dir)
                shutil.rmtree(self.dir)
        ensure_dir(self.dir)
        if not stamp.exists():
            with atomic_path(stamp) as tmp:
                tmp.write_text(json.dumps({"key": key}))

    def path(self, i: int) -> Path:
        return self.dir / f"part{i:06d}.npz"

    def has(self, i: int) -> bool:
        return self.path(i).is_file()

    def save(self, i: int, result: dict) -> None:
        arrays = {k: np.asarray(v) for k, v in result.items() if isinstance(v, np.ndarray)}
        other = {k: v for k, v in result.items() if not isinstance(v, np.ndarray)}
        with atomic_path(self.path(i)) as tmp, open(tmp, "wb") as f:
            np.savez(f, __json__=np.array(json.dumps(other)), **arrays)

    def load(self, i: int) -> dict:
        with np.load(self.path(i), allow_pickle=False) as z:
            out = {k: z[k] for k in z.files if k != "__json__"}
            out.update(json.loads(str(z["__json__"])))
        return out

    def done(self) -> list[int]:
        return sorted(int(p.stem[4:]) for p in self.dir.glob("part*.npz"))

    def remove(self) -> None:
        """Called once the output is written: the parts are no longer needed."""
        shutil.rmtree(self.dir, ignore_errors=True)


def map_chunks(client, fn, tasks, parts: Parts | None = None, retries: int = RETRIES, window: int | None = None):
    """Yield `fn(*task)` for each task, in order, computed on `client`'s workers (in this process
    when `client` is None). Tasks whose part is on disk are not run again. At most `window` results
    (default 2 per worker thread + 2) are in flight or waiting to be yielded, so the memory of the
    process stays bounded whatever the number of tasks. A task that still raises after `retries`
    retries raises here; the parts finished before are kept."""
    n = len(tasks)
    have = set(parts.done()) if parts is not None else set()
    if have:
        log.info("%d of %d chunks were finished by an earlier run: not redone", len(have & set(range(n))), n)
    if client is None:
        for i in range(n):
            if i in have:
                yield parts.load(i)
                continue
            r = fn(*tasks[i])
            if parts is not None:
                parts.save(i, r)
            yield r
        return
    from distributed import wait

    window = window or 2 * n_workers(client) + 2
    queue = deque(i for i in range(n) if i not in have)
    futures: dict[int, object] = {}
    ready: dict[int, dict] = {}

    def top_up():
        while queue and len(futures) + len(ready) < window:
            i = queue.popleft()
            futures[i] = client.submit(fn, *tasks[i], retries=retries, pure=False)

    try:
        for i in range(n):
            if i in have:
                yield parts.load(i)
                continue
            top_up()
            while i not in ready:
                wait(list(futures.values()), return_when="FIRST_COMPLETED")
                failed = []
                for j in [j for j, f in futures.items() if f.done()]:
                    f = futures.pop(j)
                    if f.status != "finished":
                        failed.append(f)
                        continue
                    r = f.result()
                    if parts is not None:  # on disk at once: a later failure does not lose it
                        parts.save(j, r)
                    ready[j] = r
                if failed:
                    failed[0].result()  # the task's own exception, once its retries are spent
                top_up()
            yield ready.pop(i)
    finally:
        if futures:
            client.cancel(list(futures.values()))
