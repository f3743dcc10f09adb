"""`calibrate`: measure the model-error term of a trained bundle on spectra it did not train on.

Labels the bundle's test split (the SET == 'train' rows of SETS.h5 whose CNAME split.json puts in
"test"; with `rows="held-out"` also the observed set) with noise draws, compares them with reference
labels (the catalogue's, or a `reference` table's, their E_<LABEL> taken out) and writes σ_model per
label to MODEL/calibration.json (`evaluation.calibration`). From then on `predict --noise-draws K`
adds E_<LABEL>_MODEL and includes it in E_<LABEL>_TOTAL.

The reference has to be about as precise as the labels: σ_model is what is left of the residual
once the reference's own error is taken out, so where E_<LABEL> is several times the error bar
(a survey catalogue against 20–30 K networks) σ_model measures how exact E_<LABEL> is, not the
networks; a warning says so. Benchmark stars, seismic log g or, on a mock survey, the truth are
such references. The test split chose each run's best epoch and the kept runs, so it is not wholly
unseen: σ_model is, if anything, slightly small. Spectra unlike the training set (the map's outer
set) are not covered by it; they need the map's INNER flag read beside the error bar.
"""

from __future__ import annotations

import datetime as _dt
import logging

import numpy as np
from tqdm.auto import tqdm

from ..evaluation.calibration import ONE_SIGMA, fit
from ..io.catalogue import read_catalogue
from ..io.dataset import Dataset
from ..io.tables import index_of
from ..labels import float_column_at
from ..model.bundle import Bundle, write_calibration
from ..model.ensemble import Ensemble
from .explain import choose_rows
from .predict import label_rows

log = logging.getLogger(__name__)


ROWS = ("test", "held-out")


def held_out_rows(bundle: Bundle, ds: Dataset, which: str = "test") -> np.ndarray:
    """Rows of `ds` that did not train the bundle: its test split (`explain.choose_rows`), and with
    `which="held-out"` also the observed set (SET == 'observed')."""
    if which not in ROWS:
        raise ValueError(f"rows must be one of {ROWS}, got {which!r}")
    rows = choose_rows(ds, bundle.path, "test")
    if len(rows) == 0:
        raise ValueError(f"none of the test spectra of {bundle.path} is in {ds.path}: "
                         "calibrate on the SETS.h5 the bundle was trained on")
    if which == "held-out" and "SET" in ds.catalogue.colnames:
        rows = np.union1d(rows, ds.rows(SET="observed"))
    return rows


def reference_labels(catalogue, names, reference=None) -> tuple[np.ndarray, np.ndarray]:
    """(N, L) reference labels and their errors for the `catalogue` rows: the catalogue's own columns,
    or those of the `reference` table (CNAME + label columns, E_<LABEL> optional) matched by CNAME.
    A label or error the source lacks is NaN (a label without reference is not calibrated)."""
    source, rows = catalogue, np.arange(len(catalogue))
    if reference is not None:
        source = read_catalogue(reference, required=("CNAME",))
        rows = index_of(np.asarray(catalogue["CNAME"]).astype(str), np.asarray(source["CNAME"]).astype(str))
        if not (rows >= 0).any():
            raise ValueError(f"no CNAME of {reference} is among the spectra to calibrate on")
    values = np.column_stack([float_column_at(source, n, rows) for n in names])
    errors = np.column_stack([float_column_at(source, f"E_{n}", rows) for n in names])
    return values, errors


def calibrate(model_dir, sets_path, reference=None, rows: str = "test", noise_draws: int = 4, seed: int = 0,
              chunk: int = 512, device=None, threads: int | None = None, progress: bool = True) -> dict:
    """Measure σ_model of every label on the `rows` ("test" or "held-out", `held_out_rows`) of
    `sets_path` against the catalogue's labels or a `reference` table's, write it to
    `model_dir`/calibration.json and return the record written."""
    if noise_draws < 1:
        raise ValueError(f"calibrate needs noise draws (the error bar it completes has them), got {noise_draws}")
    bundle = Bundle(model_dir)
    ens = Ensemble.load(model_dir, device=device)
    ds = Dataset(sets_path)
    ens.check_grid(ds.grid, source=str(ds.path))
    names = list(ens.labels.names)
    picked = held_out_rows(bundle, ds, rows)
    ref, ref_error = reference_labels(ds.catalogue[picked], names, reference)
    known = np.isfinite(ref).any(1)  # spectra with no reference label at all are not labelled
    picked, ref, ref_error = picked[known], ref[known], ref_error[known]
    log.info("calibrating on %d %s spectra of %s against %s with %d noise draws", len(picked), rows, ds.path,
             reference or "the catalogue", noise_draws)
    with tqdm(total=len(picked), desc="calibrate", unit="spectra", disable=not progress) as bar:
        mean, std, noise, _ = label_rows(ens, ds, picked, chunk, noise_draws, seed, False, threads, bar.update)
    labels = fit(names, mean, std, noise, ref, ref_error)
    for j, n in enumerate(names):
        e = ref_error[:, j][np.isfinite(ref_error[:, j]) & np.isfinite(ref[:, j])]
        bar_median, ref_median = np.median(np.hypot(std[:, j], noise[:, j])), np.median(e) if len(e) else 0.0
        if ref_median > 2 * bar_median:
            log.warning("%s: the reference's errors (median %.3g) are %.1f times the error bars being calibrated "
                        "(median %.3g): σ_model then says how exact E_%s is, not how good the networks are; "
                        "calibrate against a more precise reference (--reference)", n, ref_median,
                        ref_median / bar_median, bar_median, n)
    record = {"labels": labels, "coverage": ONE_SIGMA, "n_spectra": int(len(picked)), "rows": rows,
              "noise_draws": noise_draws, "seed": seed, "sets": str(ds.path),
              "reference": str(reference) if reference is not None else "catalogue",
              "created": _dt.datetime.now(_dt.timezone.utc).isoformat()}
    write_calibration(model_dir, record)
    return record
