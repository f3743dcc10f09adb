"""`predict`: label every spectrum of a dataset with the ensemble mean and spread.

Output (FITS table, one row per dataset row, in dataset order): CNAME, any carried catalogue
columns, then `<LABEL>_CNN` (ensemble mean) and `E_<LABEL>_CNN` (standard deviation over the
kept networks) per label; with `noise_draws` > 0 also `E_<LABEL>_NOISE` (the noise-propagated
uncertainty, `uncertainty.noise_sigma`) and `E_<LABEL>_TOTAL` (both added in quadrature).
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
import logging
import warnings

import numpy as np
from astropy.table import Table
from tqdm.auto import tqdm

from ..io.atomic import atomic_path
from ..io.dataset import Dataset
from ..io.lock import output_lock
from ..model.ensemble import Ensemble, Prediction
from ..model.precision import choose as choose_precision

log = logging.getLogger(__name__)


def map_flags(map_path, cnames: np.ndarray, read_flux, chunk: int = 2048) -> dict[str, np.ndarray]:
    """INNER / OUTLIER for each CNAME: taken from the map when it holds the spectrum, else placed on it.

    `read_flux(positions)` returns the flux of the given positions in `cnames`."""
    from ..io.tables import index_of
    from ..similarity import SimilarityMap

    m = SimilarityMap.load(map_path)
    j = index_of(cnames, np.asarray(m.table["CNAME"]).astype(str))
    flags = {k: np.zeros(len(cnames), bool) for k in ("INNER", "OUTLIER")}
    known = j >= 0
    for k in flags:
        flags[k][known] = np.asarray(m.table[k], bool)[j[known]]
    new = np.flatnonzero(~known)
    for i in range(0, len(new), chunk):
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
            domain_threshold: float | None = None):
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
    adds the domain score (`evaluation.domain.domain_check`; `domain_threshold`: its reduced-χ² limit)."""
    if noise_draws < 0:
        raise ValueError(f"noise_draws must be 0 or more, got {noise_draws}")
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
    mean = np.full((len(rows), len(names)), np.nan)
    std = np.full((len(rows), len(names)), np.nan)
    noise = np.full((len(rows), len(names)), np.nan)
    cnames = np.asarray(ds.catalogue["CNAME"]).astype(str)
    bad_all = []
    done = 0
    with tqdm(total=len(rows), desc="predict", unit="spectra", disable=not progress) as bar:
        for r, flux, *mask in ds.iter_chunks(chunk, rows=rows, mask=noise_draws > 0):
            ok = np.isfinite(flux).all(1)
            if not ok.all():
                bad = cnames[r[~ok]].tolist()
                bad_all += bad
                warnings.warn(f"{len(bad)} spectra with non-finite flux get NaN labels: {', '.join(bad)}",
                              stacklevel=2)
            if ok.any():
                p = ens.predict(flux[ok], noise_draws, seed=[seed, int(r[0])],
                                mask=mask[0][ok] if noise_draws else None, compile=compile,
                                threads=threads)
                mean[done : done + len(r)][ok] = p.mean
                std[done : done + len(r)][ok] = p.std
                if noise_draws:
                    noise[done : done + len(r)][ok] = p.noise
            done += len(r)
            bar.update(len(r))
    labels = Prediction(tuple(names), mean, std, noise if noise_draws else None).to_table()
    table = Table()
    table["CNAME"] = cnames[rows]
    for c in carry:
        table[c] = ds.catalogue[c][rows]
    for c in labels.colnames:
        table[c] = labels[c]
    if map_path is not None:
        flags = map_flags(map_path, cnames[rows], lambda pos: np.nan_to_num(ds.read(rows[pos]), nan=1.0), chunk)
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
    log.info(f"labelled {len(rows) - len(bad_all)} of {len(rows)} spectra"
         + (f" ({len(bad_all)} with non-finite flux got NaN)" if bad_all else ""))
    return out_path
