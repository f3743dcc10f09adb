"""`predict` on a local Dask cluster (issue 15 §3): throughput with 1 and 2 workers, and peak memory
per worker over up to 10⁶ spectra.

    .venv/bin/python benchmarks/bench_dask_predict.py                # the documented run: 10⁶ spectra, 8 networks
    .venv/bin/python benchmarks/bench_dask_predict.py --n 100000 --members 1 --workers 0,1,2  # ≈ 6 min, 2 cores
    .venv/bin/python benchmarks/bench_dask_predict.py --source h5 --n 20000 --members 1  # via the predict stage

The bundle: `--members` paper-architecture networks (the paper kept 8) fitted for one epoch on 256
mock spectra -- the weights do not change the cost of a prediction, so no long training is needed.

The spectra (`--source`):

* ``generate`` (default): generated on the fly inside each Dask task from a seed, `--chunk` spectra
  at a time (`--block` per task), never written anywhere: 48 mock-survey spectra
  (`starlabel.mock_spectra`, made once per worker) times a random continuum tilt, plus Gaussian
  noise at S/N 20-150, drawn from numpy's generator seeded by [seed, first row]. Each task returns
  the ensemble mean of its spectra; the tasks go through `starlabel.scheduler.map_chunks` (the
  machinery of `predict --scheduler`: retries, ordered results, bounded number in flight). 10⁶
  spectra would be 35 GB as float32 on the 8669-pixel grid; this needs no disk.
* ``h5``: the same spectra written first, chunk by chunk, into a chunked HDF5 dataset
  (`io.dataset.DatasetWriter`, `--n` × 8669 × 4 bytes on disk, in --workdir), then labelled by the
  real stage, `starlabel.predict(..., scheduler=client, chunk=--chunk, task_rows=--block)`.

For each worker count (`--workers 1,2`) a fresh local cluster of single-threaded worker processes is
started as `--scheduler local:N` starts it (`starlabel.scheduler.connect`), every worker runs one
warm-up task (bundle loaded, first predictions), then the timed run labels all `--n` spectra
(`--workers 0`: the same work without Dask, in this process with one torch thread, for the cost of
Dask itself). Printed per worker count: spectra/s (and spectra/s per model = spectra × members / s),
and per worker the peak resident memory (the kernel's VmHWM of the worker process) after the warm-up
and at the end -- flat memory means the end figure does not grow with `--n` -- plus the driver's own
peak. The date and the load (`uptime`) are printed with the figures: the machine may be shared.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

N_TEMPLATES = 48


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "load " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def peak_rss() -> int:
    """This process's peak resident memory in bytes: VmHWM of /proc/self/status, the high-water mark of
    its own address space. (ru_maxrss would not do: a worker process started by fork + exec inherits
    the peak of the process that started it.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # not Linux: the best there is


def templates(seed: int) -> np.ndarray:
    from starlabel import mock_spectra

    flux, _ = mock_spectra(N_TEMPLATES, seed=seed, snr=1e6)
    return flux


def generate(tmpl: np.ndarray, start: int, stop: int, seed: int) -> np.ndarray:
    """Spectra start..stop-1: a template (row % 48), a gentle continuum tilt and noise, from [seed, start]."""
    rng = np.random.default_rng([seed, start])
    n, p = stop - start, tmpl.shape[1]
    tilt = 1.0 + rng.uniform(-0.01, 0.01, (n, 1)) * np.linspace(-1, 1, p, dtype=np.float32)
    snr = rng.uniform(20, 150, (n, 1)).astype(np.float32)
    flux = tmpl[np.arange(start, stop) % len(tmpl)] * tilt.astype(np.float32)
    flux += rng.standard_normal((n, p), dtype=np.float32) / snr
    return flux


def label_generated(model_dir: str, start: int, stop: int, seed: int, chunk: int) -> dict:
    """One Dask task: generate and label spectra start..stop-1, `chunk` at a time."""
    from starlabel.model.ensemble import Ensemble
    from starlabel.scheduler import cached, worker_threads

    ens = cached("ensemble", model_dir, lambda: Ensemble.load(model_dir, device="cpu"))
    tmpl = cached("templates", seed, lambda: templates(seed))
    out = [ens.predict(generate(tmpl, a, min(stop, a + chunk), seed), threads=worker_threads()).mean
           for a in range(start, stop, chunk)]
    return {"mean": np.concatenate(out).astype(np.float32)}


def make_bundle(path: Path, members: int, seed: int) -> Path:
    from starlabel import Ensemble, mock_spectra, preset

    flux, labels = mock_spectra(256, seed=seed + 1)
    ens = Ensemble.fit(flux, labels, names=("TEFF", "LOGG", "FE_H", "MG_FE", "AL_FE"),
                       config=preset("paper", runs=members, keep=members, max_epochs=1), seed=seed)
    return ens.save(path)


def write_store(path: Path, n: int, seed: int, chunk: int) -> Path:
    from astropy.table import Table

    from starlabel.grid import Grid
    from starlabel.io.dataset import DatasetWriter

    tmpl = templates(seed)
    with DatasetWriter(path, Grid.default(), {"bench": "bench_dask_predict"}, chunk_rows=chunk) as w:
        for a in range(0, n, chunk):
            f = generate(tmpl, a, min(n, a + chunk), seed)
            w.append(f, np.zeros(f.shape, np.uint8))
        return w.close(Table({"CNAME": [f"B{i:07d}" for i in range(n)]}))


def reset_peak() -> None:
    """Restart this process's VmHWM from its current RSS (Linux >= 4.0), so that making the bundle
    does not count in the in-process reference."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def run_here(args, bundle: Path, store: Path | None) -> dict:
    """The reference without Dask: the same work in this process, one torch thread."""
    import torch

    from starlabel.scheduler import map_chunks

    torch.set_num_threads(1)
    reset_peak()
    label_generated(str(bundle), 0, args.chunk, args.seed, args.chunk)  # warm-up, as on the workers
    rss_warm = {"here": peak_rss()}
    t0 = time.perf_counter()
    if store is None:
        tasks = [(str(bundle), a, min(args.n, a + args.block), args.seed, args.chunk)
                 for a in range(0, args.n, args.block)]
        done = sum(len(r["mean"]) for r in map_chunks(None, label_generated, tasks))
    else:
        from astropy.table import Table

        from starlabel.stages.predict import predict

        out = predict(bundle, store, Path(args.workdir) / "labels0.fits", chunk=args.chunk, progress=False,
                      threads=1)
        done = len(Table.read(out))
    wall = time.perf_counter() - t0
    assert done == args.n, (done, args.n)
    return {"workers": 0, "wall": wall, "rate": args.n / wall, "rss_warm": rss_warm, "rss_end": {"here": peak_rss()}}


def run(n_workers: int, args, bundle: Path, store: Path | None) -> dict:
    from starlabel.scheduler import connect

    if n_workers == 0:
        return run_here(args, bundle, store)

    from starlabel.scheduler import map_chunks

    with connect(f"local:{n_workers}") as client:  # the cluster `--scheduler local:N` starts
        # warm-up: each worker loads the bundle (and templates) and predicts one small block
        warm = [client.submit(label_generated, str(bundle), 0, args.chunk, args.seed, args.chunk, pure=False,
                              workers=[w]) for w in client.scheduler_info()["workers"]]
        client.gather(warm)
        if store is not None:
            from starlabel.stages.predict import predict

            predict(bundle, store, Path(args.workdir) / "warm.fits", rows=np.arange(args.chunk), chunk=args.chunk,
                    progress=False, scheduler=client, task_rows=args.block)
        rss_warm = client.run(peak_rss)
        t0 = time.perf_counter()
        if store is None:
            tasks = [(str(bundle), a, min(args.n, a + args.block), args.seed, args.chunk)
                     for a in range(0, args.n, args.block)]
            done = sum(len(r["mean"]) for r in map_chunks(client, label_generated, tasks))
        else:
            from astropy.table import Table

            from starlabel.stages.predict import predict

            out = predict(bundle, store, Path(args.workdir) / f"labels{n_workers}.fits", chunk=args.chunk,
                          progress=False, scheduler=client, task_rows=args.block)
            done = len(Table.read(out))
        wall = time.perf_counter() - t0
        rss_end = client.run(peak_rss)
    assert done == args.n, (done, args.n)
    return {"workers": n_workers, "wall": wall, "rate": args.n / wall, "rss_warm": rss_warm, "rss_end": rss_end}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="spectra to label (default 10⁶)")
    ap.add_argument("--members", type=int, default=8, help="networks in the bundle (default 8, as the paper kept)")
    ap.add_argument("--workers", default="1,2",
                    help="worker counts to time (default 1,2; 0 = no Dask: the same work in this process, one thread)")
    ap.add_argument("--source", choices=("generate", "h5"), default="generate")
    ap.add_argument("--chunk", type=int, default=512, help="spectra per prediction call (as predict --chunk)")
    ap.add_argument("--block", type=int, default=8192, help="spectra per Dask task (as predict's task_rows)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", help="where the bundle (and the HDF5 store) go (default: a temporary directory)")
    args = ap.parse_args()
    tmp = None
    if args.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_dask_")
        args.workdir = tmp.name
    work = Path(args.workdir)
    print(f"date {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; {uptime()}; {os.cpu_count()} CPUs")
    t = time.perf_counter()
    bundle = make_bundle(work / "bundle", args.members, args.seed)
    print(f"bundle: {args.members} paper-architecture networks (1 epoch on 256 mock spectra), "
          f"{time.perf_counter() - t:.1f} s")
    store = None
    if args.source == "h5":
        t = time.perf_counter()
        store = write_store(work / "store.h5", args.n, args.seed, args.chunk)
        print(f"store: {store} ({store.stat().st_size / 1e9:.2f} GB, chunks of {args.chunk} rows) written in "
              f"{time.perf_counter() - t:.1f} s")
    print(f"{args.n} spectra ({args.source}), --chunk {args.chunk}, {args.block} spectra per task")
    for n in (int(x) for x in args.workers.split(",")):
        r = run(n, args, bundle, store)
        warm = ", ".join(f"{v / 1e6:.0f}" for v in r["rss_warm"].values())
        end = ", ".join(f"{v / 1e6:.0f}" for v in r["rss_end"].values())
        who = "no Dask, in this process" if n == 0 else f"{n} worker(s)"
        print(f"{who}: {r['wall']:.1f} s, {r['rate']:.0f} spectra/s ({r['rate'] * args.members:.0f} "
              f"spectra/s per model); peak RSS per worker after warm-up [{warm}] MB, at the end [{end}] MB; "
              f"{uptime()}")
    print(f"driver peak RSS {peak_rss() / 1e6:.0f} MB" + (" (since the in-process reference)" if "0" in
                                                          args.workers.split(",") else ""))
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
