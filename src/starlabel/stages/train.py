"""`train`: the file-level stage around `Ensemble.fit`: read SETS.h5, fit, write the bundle.

`train(SETS.h5, MODEL_DIR)` trains on the SET == 'train' rows (see `model.train` for the loop and
`model.bundle` for the directory it writes). Checkpoints go to `MODEL_DIR/checkpoints`: running
the same command again after an interruption resumes there; other data or settings are refused.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..cores import configure_threads
from .. import exclusion
from ..io.columns import require_columns
from ..io.dataset import Dataset
from ..io.lock import output_lock
from ..labels import DEFAULT_LABELS, float_column, label_matrix
from ..model.config import preset as get_preset
from ..model.ensemble import Ensemble
from ..scheduler import connect, n_workers
from ..scheduler import parse as parse_scheduler

log = logging.getLogger(__name__)


def load_training_data(ds: Dataset, labels):
    """Flux, labels, CNAMEs and dataset rows of SET == 'train', without rows whose flux is non-finite
    or that have no label at all. A row missing some labels (NaN) stays: it trains on the others.

    Returns (flux, y, cnames, rows, n_dropped)."""
    cat = ds.catalogue
    require_columns(cat.colnames, ["CNAME", *labels], ds.path, f"to train on the labels {', '.join(labels)}")
    rows = ds.rows(SET="train") if "SET" in cat.colnames else np.arange(len(ds))
    if "SET" not in cat.colnames:
        log.info("%s has no SET column: training on all %d rows", ds.path.name, len(rows))
    if len(rows) == 0:
        raise ValueError(f"{ds.path} has no rows with SET == 'train'")
    y = label_matrix(cat[rows], labels)
    flux = ds.read(rows)
    ok_y = np.isfinite(y).any(1)
    ok_f = np.isfinite(flux).all(1)
    ok = ok_y & ok_f
    n_drop = int((~ok).sum())
    if n_drop:
        log.info("dropped %d of %d training rows: %d without any finite label %s, %d with non-finite flux",
                 n_drop, len(rows), int((~ok_y).sum()), list(labels), int((~ok_f).sum()))
    rows, y, flux = rows[ok], y[ok], flux[ok]
    missing = ~np.isfinite(y)
    if missing.any():
        log.info("%d training rows miss some labels (%s): they train on the others",
                 int(missing.any(1).sum()), ", ".join(f"{n} {int(k)}" for n, k in zip(labels, missing.sum(0)) if k))
    cnames = np.asarray(cat["CNAME"][rows]).astype(str)
    return flux, y, cnames, rows, n_drop


def label_weights(table, labels) -> np.ndarray:
    """(N, L) weights 1/E² from the E_<LABEL> columns, normalised to mean 1 per label. Labels
    without an error column, and stars with a missing or non-positive error (given the median
    weight), keep the plain mean squared error's say."""
    w = np.ones((len(table), len(labels)))
    for j, name in enumerate(labels):
        col = f"E_{name}"
        if col not in table.colnames:
            log.info("no %s column: %s is not weighted", col, name)
            continue
        e = float_column(table, col)
        good = np.isfinite(e) & (e > 0)
        if not good.any():
            log.info("%s has no positive finite errors: %s is not weighted", col, name)
            continue
        inv = np.where(good, 1.0 / np.where(good, e, 1.0) ** 2, np.nan)
        inv[~good] = np.median(inv[good])
        w[:, j] = inv / inv.mean()
    return w


def train(sets_path, out_dir, labels=DEFAULT_LABELS, runs: int | None = None, keep: int | None = None,
          preset: str = "quick", seed: int = 0, *, device=None, threads: int | None = None, callback=None,
          progress: bool = True, fused: bool = False, scheduler=None, exclude_windows=(), exclude_elements=(),
          exclude_halfwidth: float = exclusion.DEFAULT_HALFWIDTH, exclude_setups=None, **train_overrides) -> Path:
    """Train an ensemble on the SET == 'train' rows of `sets_path` and write the bundle to `out_dir`.

    `runs`/`keep` (default: the preset's, 10 and 8) and `train_overrides` (TrainConfig fields, e.g.
    max_epochs=5) change the preset. `callback(run, epoch, state)` is called after each epoch's
    checkpoint is on disk. Re-running with the same arguments resumes; different data or settings
    are refused. `fused`: train all runs together as one fused network (model/fused_train.py); `threads`:
    default the cores this process may use (starlabel.cores). `scheduler` (`starlabel.scheduler.connect`:
    'local[:N]', an address, a scheduler file or a Client): each run is one task on a Dask cluster, one
    per worker (or GPU), each with `threads` torch threads (default 1); the workers write the
    checkpoints into `out_dir` (a shared file system on a cluster), so a rerun resumes as here. The
    networks are the same as from one process training with as many threads. `exclude_windows` ((low, high)
    Å) and `exclude_elements` (symbols; their listed lines ± `exclude_halfwidth` Å, only in the setups named in
    `exclude_setups` if given): pixels the networks never read (`starlabel.exclusion`), recorded in the bundle."""
    labels = tuple(labels)
    parse_scheduler(scheduler)  # a bad --scheduler fails before any work
    p = get_preset(preset, runs=runs, keep=keep, **train_overrides)
    configure_threads(threads)
    out = Path(out_dir)
    ds = Dataset(sets_path)
    # bad exclusion options fail before the training set is read
    exclude = exclusion.for_grid(ds.grid, exclude_windows, exclude_elements, exclude_halfwidth, exclude_setups,
                                 source=ds.path)
    flux, y, cnames, rows, n_drop = load_training_data(ds, labels)
    warn_if_few(len(y), p.train.test_fraction, ds.path)
    w = label_weights(ds.catalogue[rows], labels) if p.train.weight_by_errors else None
    if exclude.any():
        log.info("%d of %d pixels excluded (set to 1.0 in training and prediction)", exclude.sum(), exclude.size)
    created = [d for d in (out, out / "checkpoints") if not d.exists()]
    try:
        with output_lock(out, directory=True):
            with connect(scheduler) as client:
                ens = Ensemble.fit(flux, y, names=labels, grid=ds.grid, config=p, seed=seed, ids=cnames, weights=w,
                                   checkpoint_dir=out / "checkpoints", callback=callback, device=device,
                                   progress=progress, fused=fused, client=client, threads=threads, exclude=exclude)
                workers = None if client is None else n_workers(client)
            del flux
            test_rows = rows[ens.record.test_idx]
            provenance = {"sets": str(Path(sets_path).resolve()), "n_dropped_nonfinite": n_drop}
            if exclude.any():
                provenance["excluded"] = {"windows": [list(w) for w in exclude_windows],
                                          "elements": list(exclude_elements), "halfwidth": exclude_halfwidth,
                                          "elements_in_setups": list(exclude_setups or [])}
            if workers:
                provenance["dask_workers"] = workers
            return ens.save(out, test_rows=test_rows, provenance=provenance)
    except OSError:
        _remove_unused_checkpoints(out / "checkpoints", created)
        raise


# The paper trained on 14 696 spectra; below these numbers the kept runs are chosen on noise.
MIN_TRAIN, MIN_TEST = 100, 20


def warn_if_few(n: int, test_fraction: float, source) -> None:
    """Warn, with the numbers, when a training set is too small for its test loss to mean much."""
    n_test = round(test_fraction * n)
    if n - n_test < MIN_TRAIN or n_test < MIN_TEST:
        log.warning("%s gives only %d training and %d test spectra (fewer than %d / %d): the networks will "
                    "overfit and the kept runs are picked on a noisy test loss (the paper trained on 14 696)",
                    Path(source).name, n - n_test, n_test, MIN_TRAIN, MIN_TEST)


def _remove_unused_checkpoints(ckpt_dir: Path, created: list[Path]) -> None:
    """After a failed write, leave nothing behind unless a run checkpoint exists to resume from:
    a lone settings.json would make the next run 'resume' a training that never started."""
    if not ckpt_dir.is_dir() or any(ckpt_dir.glob("run*.safetensors")):
        return
    try:
        (ckpt_dir / "settings.json").unlink(missing_ok=True)
    except OSError:
        return
    for d in reversed(created):  # innermost first; only directories this call made, only if empty
        try:
            d.rmdir()
        except OSError:
            pass
