"""`predict`: label every spectrum of a dataset with the ensemble mean and spread.

Output (FITS table, one row per dataset row, in dataset order): CNAME, any carried catalogue
columns, then `<LABEL>_CNN` (ensemble mean) and `E_<LABEL>_CNN` (standard deviation over the
kept networks) per label; with `noise_draws` > 0 also `E_<LABEL>_NOISE` (the noise-propagated
uncertainty, `uncertainty.noise_sigma`) and `E_<LABEL>_TOTAL` (added in quadrature, with
`E_<LABEL>_MODEL`, the model-error term, when `starlabel calibrate` measured one for the bundle).
Spectra with non-finite flux get NaN labels and a warning naming them.
With a similarity map (`map_path`), INNER and OUTLIER columns say whether each spectrum lies
near the training set and whether it is unlike any other: spectra that are on the map take
its flags, new ones are placed onto it (`SimilarityMap.flag`) without recomputing the map.
With `model_spectra` (an engine name, or "auto"), the model spectrum at each star's predicted labels
goes to <out stem>_model.h5 and CHI2_<SETUP>, DOMAIN_CHI2, DOMAIN_FLAG and MODEL_FLAG columns say
whether the spectrum looks like its labels (`evaluation.domain`).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import shutil
import warnings
from pathlib import Path

import numpy as np
from astropy.table import Table
from tqdm.auto import tqdm

from ..io.atomic import atomic_path
from ..io.dataset import Dataset
from ..io.lock import output_lock
from ..model.ensemble import Ensemble, Prediction
from ..model.precision import choose as choose_precision
from ..scheduler import Parts, cached, connect, file_stamp, fingerprint, map_chunks, worker_threads
from ..scheduler import parse as parse_scheduler

log = logging.getLogger(__name__)

TASK_ROWS = 8192  # rows per Dask task (rounded to whole chunks): a few seconds of work per task


def label_rows(ens: Ensemble, ds: Dataset, rows: np.ndarray, chunk: int, noise_draws: int, seed: int,
               compile: bool, threads: int | None, update=None):
    """(mean, std, noise, bad rows) of the dataset `rows`, labelled `chunk` rows at a time.

    The noise draws of a chunk are seeded by [seed, its first row]: any caller that cuts the rows
    into the same chunks gets the same numbers; they use the dataset's /error where it has one.
    Rows with non-finite flux get NaN (listed in `bad`)."""
    names = ens.labels.names
    mean = np.full((len(rows), len(names)), np.nan)
    std = np.full((len(rows), len(names)), np.nan)
    noise = np.full((len(rows), len(names)), np.nan)
    bad = []
    done = 0
    draws = noise_draws > 0
    for r, flux, *extra in ds.iter_chunks(chunk, rows=rows, mask=draws, error=draws):
        ok = np.isfinite(flux).all(1)
        bad += r[~ok].tolist()
        if ok.any():
            mask, error = extra if draws else (None, None)
            p = ens.predict(flux[ok], noise_draws, seed=[seed, int(r[0])], mask=None if mask is None else mask[ok],
                            error=None if error is None else error[ok], compile=compile, threads=threads)
            mean[done : done + len(r)][ok] = p.mean
            std[done : done + len(r)][ok] = p.std
            if noise_draws:
                noise[done : done + len(r)][ok] = p.noise
        done += len(r)
        if update is not None:
            update(len(r))
    return mean, std, noise, np.asarray(bad, dtype=np.int64)


def _rows_sha(rows) -> str:
    """sha256 of a row selection: part of a --scheduler job's fingerprint."""
    return hashlib.sha256(np.ascontiguousarray(rows, dtype="<i8").tobytes()).hexdigest()


def parts_dir(out) -> Path:
    """Where the finished blocks of a --scheduler run wait for the output table."""
    return Path(out).with_name(Path(out).name + ".parts")


def _label_block(model_dir, model_stamp, device, dataset, stamp, rows, chunk, noise_draws, seed, compile,
                 threads, precision="fp32") -> dict:
    """One Dask task: label a block of dataset rows with the (worker-cached) bundle, in the precision
    the driver chose."""
    ens = cached("ensemble", (tuple(model_stamp), device), lambda: Ensemble.load(model_dir, device=device))
    ens.precision = precision
    ds = cached("dataset", tuple(stamp), lambda: Dataset(dataset))
    mean, std, noise, bad = label_rows(ens, ds, rows, chunk, noise_draws, seed, compile, worker_threads(threads))
    return {"mean": mean, "std": std, "noise": noise, "bad": bad}


def _label_on_cluster(client, model_dir, device, ds, rows, out, chunk, noise_draws, seed, compile, threads,
                      task_rows, update, n_labels, precision="fp32"):
    """`label_rows` over blocks of whole chunks on a Dask cluster, resumable through `OUT.parts/`."""
    if isinstance(model_dir, Ensemble):
        if model_dir.path is None:
            raise ValueError("predicting on a Dask cluster needs a saved bundle: the workers load it from disk")
        model_dir = model_dir.path
    model_dir = Path(model_dir).resolve()
    block = max(1, task_rows // chunk) * chunk
    stamp = file_stamp(ds.path)
    model_stamp = file_stamp(model_dir / "manifest.json")  # a retrained bundle is loaded afresh
    tasks = [(str(model_dir), model_stamp, device, stamp[0], stamp, rows[i : i + block], chunk, noise_draws, seed,
              compile, threads, precision) for i in range(0, len(rows), block)]
    key = fingerprint({"model": model_stamp, "dataset": stamp,
                       "rows": _rows_sha(rows),
                       "chunk": chunk, "block": block, "noise_draws": noise_draws, "seed": seed, "compile": compile,
                       "precision": precision})
    parts = Parts(parts_dir(out), key)
    results = []
    for task, res in zip(tasks, map_chunks(client, _label_block, tasks, parts=parts)):
        r = task[5]
        results.append(res)
        update(len(r))
    if not results:
        empty = np.empty((0, n_labels))
        return empty, empty, empty, np.empty(0, np.int64)
    return (*(np.concatenate([r[k] for r in results]) for k in ("mean", "std", "noise")),
            np.concatenate([r["bad"] for r in results]).astype(np.int64))


def _place_block(map_path, map_stamp, dataset, stamp, rows, chunk) -> dict:
    """One Dask task: place a block of dataset rows onto the (worker-cached) map, `chunk` at a time."""
    from ..similarity import SimilarityMap

    m = cached("map", tuple(map_stamp), lambda: SimilarityMap.load(map_path))
    ds = cached("dataset", tuple(stamp), lambda: Dataset(dataset))
    out = {"INNER": [], "OUTLIER": []}
    for i in range(0, len(rows), chunk):
        placed = m.flag(np.nan_to_num(ds.read(rows[i : i + chunk]), nan=1.0))
        for k in out:
            out[k].append(np.asarray(placed[k], bool))
    return {k: np.concatenate(v) if v else np.zeros(0, bool) for k, v in out.items()}


def _place_on_cluster(client, map_path, ds, rows, out, chunk, task_rows):
    """`place` for `map_flags`: the new spectra placed in blocks of whole chunks (so in the same groups
    as in one process) on a Dask cluster, resumable through `OUT.parts/map/`."""
    block = max(1, task_rows // chunk) * chunk
    map_stamp, stamp = file_stamp(map_path), file_stamp(ds.path)

    def place(new):
        r = rows[new]
        tasks = [(map_stamp[0], map_stamp, stamp[0], stamp, r[i : i + block], chunk) for i in range(0, len(r), block)]
        key = fingerprint({"map": map_stamp, "dataset": stamp, "chunk": chunk, "block": block,
                           "rows": _rows_sha(r)})
        res = list(map_chunks(client, _place_block, tasks, parts=Parts(parts_dir(out) / "map", key)))
        return {k: np.concatenate([x[k] for x in res]).astype(bool) for k in ("INNER", "OUTLIER")}

    return place


def map_flags(map_path, cnames: np.ndarray, read_flux, chunk: int = 2048, place=None) -> dict[str, np.ndarray]:
    """INNER / OUTLIER for each CNAME: taken from the map when it holds the spectrum, else placed on it.

    `read_flux(positions)` returns the flux of the given positions in `cnames`. `place(positions)`,
    when given, places all new spectra instead ({"INNER", "OUTLIER"} for those positions, in
    order; `_place_on_cluster`)."""
    from ..io.tables import index_of
    from ..similarity import SimilarityMap

    m = SimilarityMap.load(map_path)
    j = index_of(cnames, np.asarray(m.table["CNAME"]).astype(str))
    flags = {k: np.zeros(len(cnames), bool) for k in ("INNER", "OUTLIER")}
    known = j >= 0
    for k in flags:
        flags[k][known] = np.asarray(m.table[k], bool)[j[known]]
    new = np.flatnonzero(~known)
    if place is not None and len(new):
        placed = place(new)
        for k in flags:
            flags[k][new] = placed[k]
    for i in range(0, len(new) if place is None else 0, chunk):
        pos = new[i : i + chunk]
        placed = m.flag(read_flux(pos))
        for k in flags:
            flags[k][pos] = placed[k]
    if len(new):
        log.info("placed %d spectra that are not on %s onto the map", len(new), map_path)
    return flags


def _locked(stage):
    """Run `stage(…, out, …)` holding the lock of `out`: a second process writing it is refused."""

    @functools.wraps(stage)
    def run(model_dir, dataset_path, out, *args, **kwargs):
        with output_lock(out):
            return stage(model_dir, dataset_path, out, *args, **kwargs)

    return run


@_locked
def predict(model_dir, dataset_path, out, carry=(), chunk: int = 512, rows=None,
            progress: bool = True, map_path=None, compile: bool = False, noise_draws: int = 0, seed: int = 0,
            device=None, threads: int | None = None, precision: str = "fp32", model_spectra: str | None = None,
            domain_threshold: float | None = None, scheduler=None, task_rows: int = TASK_ROWS):
    """Write the labels of `dataset_path` (optionally only `rows`) to the FITS table `out`.

    Returns the path. Memory stays bounded by `chunk` spectra at a time. `compile` runs the
    first convolution block through torch.compile (≈1.5× faster on a CPU, a few seconds to
    compile: worth it from about 10⁵ spectra × models). `noise_draws` noisy copies per spectrum
    and network give the noise-propagated uncertainty (each draw costs one more prediction);
    the draws are seeded by `seed` and each chunk's first row: the same command gives the same numbers.
    `device`: torch device (default CUDA when present); `threads`: CPU worker threads (default: the
    usable cores). `precision`: fp32, or bf16 / fp16 / auto — mixed precision only where it keeps the
    labels of the first ≤ 256 spectra within 1 K / 0.001 dex of fp32 (`model.precision.choose`).
    `model_spectra`: "onelayer", "emulator" or "auto" (`mock.model_spectra.default_engine`)
    adds the domain score (`evaluation.domain.domain_check`; `domain_threshold`: its reduced-χ² limit).
    `scheduler` (`starlabel.scheduler.connect`: 'local[:N]', an address, a scheduler
    file or a Client) labels blocks of `task_rows` rows (a whole number of chunks, so the noise
    draws are the same) on a Dask cluster, each worker loading the bundle once, and places the
    spectra that are not on the map (`map_path`) there too; finished blocks are kept in `OUT.parts/`
    until the table is written, so a rerun redoes only the missing ones."""
    if noise_draws < 0:
        raise ValueError(f"noise_draws must be 0 or more, got {noise_draws}")
    parse_scheduler(scheduler)  # a bad --scheduler fails before any work
    ens = model_dir if isinstance(model_dir, Ensemble) else Ensemble.load(model_dir, device=device)
    ds = Dataset(dataset_path)
    ens.check_grid(ds.grid, source=str(ds.path))
    carry = [c for c in carry if c and c != "CNAME"]
    if "MISSING_SETUP" in ds.catalogue.colnames and "MISSING_SETUP" not in carry:
        carry.append("MISSING_SETUP")  # a star labelled from one setup says so
    missing = [c for c in ["CNAME", *carry] if c not in ds.catalogue.colnames]
    if missing:
        raise KeyError(f"{ds.path} catalogue has no column(s) {missing} to carry")
    rows = np.arange(len(ds)) if rows is None else np.sort(np.asarray(rows))
    if precision != "fp32":
        sample = ds.read(rows[:256])
        ens.precision = choose_precision(ens, sample[np.isfinite(sample).all(1)], precision)
    names = ens.labels.names
    cnames = np.asarray(ds.catalogue["CNAME"]).astype(str)
    flags = None
    with connect(scheduler) as client:
        with tqdm(total=len(rows), desc="predict", unit="spectra", disable=not progress) as bar:
            if client is None:
                mean, std, noise, bad = label_rows(ens, ds, rows, chunk, noise_draws, seed, compile, threads,
                                                   bar.update)
            else:
                mean, std, noise, bad = _label_on_cluster(client, model_dir, device, ds, rows, out, chunk,
                                                          noise_draws, seed, compile, threads, task_rows, bar.update,
                                                          len(names), ens.precision)
        if map_path is not None:
            place = None if client is None else _place_on_cluster(client, map_path, ds, rows, out, chunk, task_rows)
            flags = map_flags(map_path, cnames[rows], lambda pos: np.nan_to_num(ds.read(rows[pos]), nan=1.0), chunk,
                              place)
    bad_all = cnames[bad].tolist()
    if bad_all:
        warnings.warn(f"{len(bad_all)} spectra with non-finite flux get NaN labels: {', '.join(bad_all)}",
                      stacklevel=2)
    labels = Prediction(tuple(names), mean, std, noise if noise_draws else None, ens.model_error).to_table()
    table = Table()
    table["CNAME"] = cnames[rows]
    for c in carry:
        table[c] = ds.catalogue[c][rows]
    for c in labels.colnames:
        table[c] = labels[c]
    if flags is not None:
        table["INNER"], table["OUTLIER"] = flags["INNER"], flags["OUTLIER"]
    if model_spectra:
        from ..evaluation import domain

        labels_in = domain.label_table(labels, names, ds.catalogue[rows])
        cols = domain.domain_check(ds, labels_in, rows, domain.model_spectra_path(out), engine=model_spectra,
                                   threshold=domain.DEFAULT_THRESHOLD if domain_threshold is None else domain_threshold,
                                   chunk=chunk, progress=progress)
        for c in cols.colnames:
            table[c] = cols[c]
        table.meta.update(cols.meta)  # MSENGINE (and MSGRIDPT: the emulator's grid points)
    table.meta["MODEL"] = str(ens.path)[-68:]
    table.meta["PRECISN"] = ens.precision
    table.meta["DATASET"] = str(ds.path)[-68:]
    out_path = out
    with atomic_path(out) as tmp:
        table.write(tmp, format="fits")
    if scheduler is not None:  # the output is written: the finished blocks are no longer needed
        shutil.rmtree(parts_dir(out), ignore_errors=True)
    log.info(f"labelled {len(rows) - len(bad_all)} of {len(rows)} spectra"
             + (f" ({len(bad_all)} with non-finite flux got NaN)" if bad_all else ""))
    return out_path
