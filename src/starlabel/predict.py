"""`predict`: label every spectrum of a dataset with the ensemble mean and spread.

Output (FITS table, one row per dataset row, in dataset order): CNAME, any carried catalogue
columns, then `<LABEL>_CNN` (ensemble mean) and `E_<LABEL>_CNN` (standard deviation over the
kept networks) per label. Spectra with non-finite flux get NaN labels and a warning naming them.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
from astropy.table import Table
from tqdm.auto import tqdm

from .io.atomic import atomic_path
from .io.dataset import Dataset
from .model.ensemble import Ensemble

log = logging.getLogger(__name__)


def output_columns(label_names) -> list[str]:
    cols = []
    for n in label_names:
        cols += [f"{n}_CNN", f"E_{n}_CNN"]
    return cols


def predict(model_dir, dataset_path, out, carry=(), chunk: int = 2048, rows=None, echo=print,
            progress: bool = True):
    """Write the labels of `dataset_path` (optionally only `rows`) to the FITS table `out`.

    Returns the path. Memory stays bounded by `chunk` spectra at a time."""
    ens = model_dir if isinstance(model_dir, Ensemble) else Ensemble.load(model_dir)
    ds = Dataset(dataset_path)
    ens.check_grid(ds.grid, source=str(ds.path))
    carry = [c for c in carry if c and c != "CNAME"]
    missing = [c for c in ["CNAME", *carry] if c not in ds.catalogue.colnames]
    if missing:
        raise KeyError(f"{ds.path} catalogue has no column(s) {missing} to carry")
    rows = np.arange(len(ds)) if rows is None else np.sort(np.asarray(rows))
    names = ens.labels.names
    mean = np.full((len(rows), len(names)), np.nan)
    std = np.full((len(rows), len(names)), np.nan)
    cnames = np.asarray(ds.catalogue["CNAME"]).astype(str)
    bad_all = []
    done = 0
    with tqdm(total=len(rows), desc="predict", unit="spectra", disable=not progress) as bar:
        for r, flux in ds.iter_chunks(chunk, rows=rows):
            ok = np.isfinite(flux).all(1)
            if not ok.all():
                bad = cnames[r[~ok]].tolist()
                bad_all += bad
                warnings.warn(f"{len(bad)} spectra with non-finite flux get NaN labels: {', '.join(bad)}",
                              stacklevel=2)
            if ok.any():
                m, s = ens.predict(flux[ok])
                mean[done : done + len(r)][ok] = m
                std[done : done + len(r)][ok] = s
            done += len(r)
            bar.update(len(r))
    table = Table()
    table["CNAME"] = cnames[rows]
    for c in carry:
        table[c] = ds.catalogue[c][rows]
    for j, n in enumerate(names):
        table[f"{n}_CNN"] = mean[:, j]
        table[f"E_{n}_CNN"] = std[:, j]
    table.meta["MODEL"] = str(ens.path)[-68:]
    table.meta["DATASET"] = str(ds.path)[-68:]
    out_path = out
    with atomic_path(out) as tmp:
        table.write(tmp, format="fits")
    echo(f"labelled {len(rows) - len(bad_all)} of {len(rows)} spectra"
         + (f" ({len(bad_all)} with non-finite flux got NaN)" if bad_all else ""))
    return out_path
