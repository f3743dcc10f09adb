"""`select`: derive the labels and split a prepared dataset into training candidates and observed set.

Paper Sect. 2.2: the training set keeps spectra that pass every quality cut;
everything else with S/N ≥ 10 is the observed set whose labels the CNN provides.
"""

from __future__ import annotations

import logging

import numpy as np

from ..io.columns import require_columns
from ..io.dataset import Dataset, DatasetWriter
from ..labels import QualityCuts, add_relative_labels, float_column

log = logging.getLogger(__name__)


def apply_cuts(table, cuts: QualityCuts) -> tuple[np.ndarray, list[tuple[str, int, int]]]:
    """Apply cuts in order. Returns (passes-all mask, [(cut, removed by this cut, remaining)])."""
    keep = np.ones(len(table), bool)
    report = []
    for name, ok in cuts.masks(table):
        removed = int(np.sum(keep & ~ok))
        keep &= ok
        report.append((name, removed, int(keep.sum())))
    return keep, report


def needed_columns(cuts: QualityCuts) -> list[str]:
    """The catalogue columns `select` reads with these cuts."""
    cols = ["CNAME", "FE1", "MG1", "AL1", "SNR"]
    for value, names in ((cuts.max_e_teff, ["E_TEFF"]), (cuts.max_e_logg, ["E_LOGG"]),
                         (cuts.max_e_abundance, ["E_FE1", "E_MG1", "E_AL1"]), (cuts.max_vsini, ["VSINI"]),
                         (cuts.max_feh_mismatch, ["FEH"])):
        if value is not None:
            cols += names
    return cols


def select(dataset_path, out, cuts: QualityCuts | None = None, exclude_cnames=(),
           chunk: int = 1024, missing_setups: str = "exclude"):
    """Write SETS.h5: the dataset rows of the training candidates and the observed set.

    The catalogue gains FE_H, MG_FE, AL_FE (+ errors) and a SET column ('train'/'observed').
    `exclude_cnames` (e.g. t-SNE outliers) are kept out of the training set.
    `missing_setups`: 'exclude' (default) keeps stars with a missing setup (catalogue MISSING_SETUP,
    from `prepare`) out of the training set, as the paper's training set has both setups; they stay
    in the observed set. 'include' lets them train (the networks then see their masked setup as 1.0).
    `cuts.partial_abundances`: a training candidate whose Mg or Al abundance is missing or fails the
    error cut stays one, with that [X/Fe] set to NaN in SETS.h5 (`train` leaves it out of the loss).
    Returns (path, report).
    """
    if missing_setups not in ("exclude", "include"):
        raise ValueError(f"missing_setups must be 'exclude' or 'include', got {missing_setups!r}")
    cuts = cuts or QualityCuts()
    ds = Dataset(dataset_path)
    if len(ds) == 0:
        raise ValueError(f"{ds.path} holds no spectra: nothing to select (did prepare reject them all? "
                         "see its /rejects table)")
    require_columns(ds.catalogue.colnames, needed_columns(cuts), ds.path, "for the labels and quality cuts")
    absent = [c for c in ("TEFF", "LOGG") if c not in ds.catalogue.colnames]
    if absent:
        log.warning("%s has no column %s: `train` with the default labels will refuse the output",
                    ds.path.name, ", ".join(absent))
    cat = add_relative_labels(ds.catalogue.copy())
    train, report = apply_cuts(cat, cuts)
    if len(exclude_cnames):
        excluded = np.isin(np.asarray(cat["CNAME"]).astype(str), np.asarray(list(exclude_cnames)).astype(str))
        report.append(("not a similarity-map outlier", int(np.sum(train & excluded)), int(np.sum(train & ~excluded))))
        train &= ~excluded
    if missing_setups == "exclude" and "MISSING_SETUP" in cat.colnames:
        partial = np.char.str_len(np.asarray(cat["MISSING_SETUP"]).astype(str)) > 0
        report.append(("every grid setup observed", int(np.sum(train & partial)), int(np.sum(train & ~partial))))
        train &= ~partial
    with np.errstate(invalid="ignore"):
        observed = ~train & (float_column(cat, "SNR") >= cuts.observed_min_snr)
    keep = np.flatnonzero(train | observed)
    log.info("%d spectra in %s", len(cat), ds.path.name)
    width = max(len(r[0]) for r in report) if report else 10
    for name, removed, remaining in report:
        log.info(f"  {name:<{width}}  removes {removed:6d}   leaves {remaining:6d}")
    log.info(f"training candidates: {int(train.sum())}; observed set (S/N >= {cuts.observed_min_snr:g}): "
         f"{int(observed.sum())}; dropped (S/N < {cuts.observed_min_snr:g} or no S/N): {len(cat) - len(keep)}")
    for label, unusable in cuts.unusable_abundances(cat).items():
        blank = train & unusable
        cat[label][blank] = np.nan  # not a training label; the star trains on its others
        log.info(f"  {label} missing or failing the abundance error cut: {int(blank.sum())} training candidates "
                 "train without it")
    out_cat = cat[keep]
    out_cat["SET"] = np.where(train[keep], "train", "observed")
    settings = dict(ds.settings, select={**{k: v for k, v in vars(cuts).items() if k != "extra"},
                                         "missing_setups": missing_setups},
                    source=str(ds.path))
    with DatasetWriter(out, ds.grid, settings, errors=ds.has_error) as w:  # /error travels with the rows
        for _, flux, mask, error in ds.iter_chunks(chunk, rows=keep, mask=True, error=True):
            w.append(flux, mask, error)
        path = w.close(out_cat, ds.rejects)
    return path, report
