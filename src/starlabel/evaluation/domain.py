"""Domain score: does an observed spectrum look like a model spectrum at its own predicted labels?

The networks label any spectrum, also one unlike every training spectrum (the real Sun labelled by a
mock-trained ensemble is 290 K and 0.8 dex in log g off, with a 28-K error bar; issue 11). The
gradient maps cannot tell a user that; a model spectrum at the predicted labels can. Per setup s:

    CHI2_<s> = Σ_i ((f_i − m_i) / σ_i)² / n_s     over pixels with mask 0 and finite f, m, σ

(divided by n_s, not n_s − k: the labels are not a χ² fit to this spectrum, and k = 5 ≪ n_s ≈ 4 000).
DOMAIN_CHI2 is the worst setup; DOMAIN_FLAG is set where DOMAIN_CHI2 > the threshold or is NaN (no
model: labels outside the engine's range or non-finite, MODEL_FLAG says which; no usable pixel).

σ_i: the dataset's error spectrum, the `/error` array `prepare` writes beside `/flux` (the files'
own errors carried through normalisation, resolution matching and rebinning; `select` keeps it),
floored at SIGMA_FLOOR (no normalised spectrum is better than 0.1 %). A dataset without /error
(written before it existed, or `prepare --no-errors`), or a spectrum setup whose file had no error
(all NaN), falls back to σ measured from the spectrum itself (`noise_model`): the per-setup DER_SNR
noise (`uncertainty.pixel_noise`, masked pixels left out) of the residual flux − model, shaped like
photon noise (∝ √model, as the mock survey draws it). The h5 attribute `sigma` says which.

The threshold DEFAULT_THRESHOLD = 5 was chosen on the mock survey (docs/experiments.md, "Domain score";
`benchmarks/bench_domain.py`): with the one-layer engine and DER_SNR σ, clean mock spectra at their true
labels have χ² 1.1 (99th percentile 1.3–2.8); labelled by a quick-preset mock ensemble, 4.4 % of clean
spectra exceed 5, and those are the badly labelled ones (median |ΔTeff| 189 K against 35 K for all),
while 88 % of the pathological spectra (emission, bad normalisation) do. Re-measured on 2026-11-30
(23:36 UTC, load 11–13 on 2 cores) on an emulator-engine mock (3 000 stars) with σ from /error and the
emulator as model, measured on the mock only: at the true labels χ² 1.02–1.05 (99th percentile 1.3–3.0),
0.2 % of test and 0 % of clean observed spectra > 5; at a quick ensemble's labels 1.5 % / 3.7 % of clean
spectra > 5 (at > 3: 5.2 / 4.6 %, > 2: 12.5 / 5.6 %), again the badly labelled or unmodelled ones, and
66 % of the pathological ones: 5 holds. A reduced χ² grows with S/N² for a fixed model error, so the
flag is stricter at high S/N (15 % of clean emulator-mock spectra at S/N > 100 exceed 5 at predicted labels).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import h5py
import numpy as np
from astropy.table import Table

from ..io.atomic import atomic_path
from ..io.dataset import Dataset, stamp, write_table
from ..mock.model_spectra import (COLUMNS, MODEL_BAD_LABELS, MODEL_OUT_OF_RANGE, ModelSpectra, default_engine,
                                  model_spectra, setup_warnings)
from ..uncertainty import pixel_noise

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 5.0  # reduced χ²; see the module docstring and docs/experiments.md
SIGMA_FLOOR = 1e-3


def noise_model(flux: np.ndarray, model: np.ndarray, mask: np.ndarray | None, slices: dict) -> np.ndarray:
    """(N, P) per-pixel σ: DER_SNR noise of the residual flux − model per setup, shaped like photon
    noise (∝ √model, normalised to the setup's median) and floored at SIGMA_FLOOR.

    DER_SNR of the residual rather than of the flux: the second difference over ±2 pixels does not
    cancel the lines of a 0.06-Å HR10 grid, so the flux's own DER_SNR overestimates σ at high S/N
    (a mock HR10 spectrum at its true labels got χ² 0.3 instead of 1); a wrong model inflates the
    residual's DER_SNR less than the lines inflate the flux's."""
    model = np.asarray(model, float)
    resid = np.asarray(flux, float) - model
    bad = ~np.isfinite(resid)
    if mask is not None:
        bad |= np.asarray(mask) != 0
    der = pixel_noise(np.where(bad, 0.0, resid), list(slices.values()), bad.astype(np.uint8))
    sigma = np.empty(resid.shape, dtype=float)
    shape = np.sqrt(np.clip(np.nan_to_num(model, nan=1.0), 0.05, None))
    for j, s in enumerate(slices.values()):
        sh = shape[:, s]
        sigma[:, s] = der[:, j : j + 1] * sh / np.median(sh, axis=1, keepdims=True)
    return np.maximum(sigma, SIGMA_FLOOR)


def dataset_sigma(error: np.ndarray, flux: np.ndarray, model: np.ndarray, mask: np.ndarray | None,
                  slices: dict) -> tuple[np.ndarray, int]:
    """((N, P) per-pixel σ, number of spectrum setups that fell back): σ from the dataset's /error rows,
    floored at SIGMA_FLOOR; a spectrum setup with unmasked pixels but no finite error (its file had
    none) falls back to `noise_model`. Pixels with a NaN error inside a setup that has one (repaired,
    uncovered) stay NaN and are left out."""
    sigma = np.maximum(np.asarray(error, float), SIGMA_FLOOR)
    used = np.ones(sigma.shape, bool) if mask is None else np.asarray(mask) == 0
    none = np.column_stack([~np.isfinite(sigma[:, s]).any(1) & used[:, s].any(1) for s in slices.values()])
    if none.any():
        fallback = noise_model(flux, model, mask, slices)
        for j, s in enumerate(slices.values()):
            sigma[none[:, j], s] = fallback[none[:, j], s]
    return sigma, int(none.sum())


def reduced_chi2(flux: np.ndarray, model: np.ndarray, sigma: np.ndarray, mask: np.ndarray | None,
                 slices: dict) -> dict[str, np.ndarray]:
    """{setup: (N,) reduced χ²} over unmasked pixels with finite flux, model and σ (NaN where none)."""
    flux, model, sigma = (np.atleast_2d(np.asarray(a, float)) for a in (flux, model, sigma))
    ok = np.isfinite(flux) & np.isfinite(model) & np.isfinite(sigma) & (sigma > 0)
    if mask is not None:
        ok &= np.atleast_2d(mask) == 0
    z2 = np.where(ok, (flux - model) ** 2 / np.where(ok, sigma, 1.0) ** 2, 0.0)
    out = {}
    for name, s in slices.items():
        n = ok[:, s].sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[name] = np.where(n > 0, z2[:, s].sum(1) / n, np.nan)
    return out


def domain_columns(chi2: dict[str, np.ndarray], model_flag: np.ndarray, threshold: float) -> Table:
    """CHI2_<SETUP>…, DOMAIN_CHI2 (worst setup), DOMAIN_FLAG (> threshold or NaN), MODEL_FLAG."""
    t = Table()
    for name, c in chi2.items():
        t[f"CHI2_{name}"] = np.asarray(c, np.float32)
    stack = np.column_stack(list(chi2.values()))
    with np.errstate(invalid="ignore"):
        worst = np.where(np.isfinite(stack).any(1), np.nanmax(np.where(np.isfinite(stack), stack, -np.inf), 1), np.nan)
    t["DOMAIN_CHI2"] = worst.astype(np.float32)
    t["DOMAIN_FLAG"] = ~(worst <= threshold)
    t["MODEL_FLAG"] = np.asarray(model_flag, np.uint8)
    t["DOMAIN_CHI2"].description = "worst per-setup reduced chi2 of the spectrum against the model at its labels"
    t["DOMAIN_FLAG"].description = f"DOMAIN_CHI2 > {threshold:g} or no model: the spectrum does not look like its labels"
    return t


def model_spectra_path(labels_out) -> Path:
    """Where `predict --model-spectra` writes the model spectra: beside the labels, <stem>_model.h5."""
    p = Path(labels_out)
    return p.with_name(p.stem + "_model.h5")


def label_table(prediction: Table, names, catalogue: Table | None = None) -> Table:
    """Engine input from a predict table: `<NAME>_CNN` → NAME for the bundle's label names, plus the
    catalogue's VSINI where it has one (the model needs the star's rotation, the networks do not give it)."""
    t = Table()
    for n in names:
        col = f"{n}_CNN" if f"{n}_CNN" in prediction.colnames else n
        if col not in prediction.colnames:
            raise KeyError(f"prediction table has no column {n}_CNN (label {n} of the model)")
        t[n] = np.asarray(prediction[col], float)
    if catalogue is not None and "VSINI" in catalogue.colnames:
        t["VSINI"] = np.asarray(catalogue["VSINI"], float)
    return t


def domain_check(dataset, labels: Table, rows, out_h5, engine: str | None = None,
                 threshold: float = DEFAULT_THRESHOLD, chunk: int = 256, progress: bool = False) -> Table:
    """Model spectra for `labels` (one row per dataset row in `rows`, engine label names) and the
    domain columns; the model spectra go to `out_h5` (atomically). Returns the domain columns.

    HDF5 layout: /flux (N, P) float32 model (NaN: no model), /wavelength, /catalogue (CNAME, the labels
    used, the domain columns); attrs engine, provenance (JSON), label_defaults, threshold, sigma, grid."""
    from tqdm.auto import tqdm

    from ..mock.emulator import Emulator

    ds = dataset if isinstance(dataset, Dataset) else Dataset(dataset)
    rows = np.asarray(rows)
    if len(labels) != len(rows):
        raise ValueError(f"{len(labels)} label rows for {len(rows)} dataset rows")
    emulator = None
    if engine in (None, "auto", "emulator"):
        try:
            emulator = Emulator.load()
        except Exception as e:
            if engine == "emulator":
                raise
            log.warning("no emulator (%s)", e)
        engine = engine if engine == "emulator" else default_engine(emulator)
    resolution = (ds.settings or {}).get("resolutions") or None
    slices = ds.grid.slices()
    chi2 = {s: np.full(len(rows), np.nan) for s in slices}
    model_flag = np.zeros(len(rows), np.uint8)
    used = None
    info: dict = {}
    has_error = ds.has_error
    n_fallback = 0  # spectrum setups without an error in a dataset with /error
    with atomic_path(out_h5) as tmp, h5py.File(tmp, "w") as h5:
        out = h5.create_dataset("flux", shape=(len(rows), ds.grid.n_pixels), dtype="f4",
                                chunks=(max(1, min(chunk, len(rows))), ds.grid.n_pixels))
        h5.create_dataset("wavelength", data=ds.grid.wavelength)
        with tqdm(total=len(rows), desc=f"model spectra ({engine})", unit="spectra", disable=not progress) as bar:
            for i in range(0, len(rows), chunk):
                r = rows[i : i + chunk]
                flux, mask = ds.read(r, mask=True)
                m: ModelSpectra = model_spectra(labels[i : i + chunk], ds.grid, engine, resolution, emulator,
                                                warn=False)
                if has_error:
                    sigma, n = dataset_sigma(ds.read_error(r), flux, m.flux, mask, slices)
                    n_fallback += n
                else:
                    sigma = noise_model(flux, m.flux, mask, slices)
                for s, c in reduced_chi2(flux, m.flux, sigma, mask, slices).items():
                    chi2[s][i : i + len(r)] = c
                model_flag[i : i + len(r)] = m.flag
                out[i : i + len(r)] = m.flux
                used = m.labels if used is None else _vstack(used, m.labels)
                info = {"provenance": m.provenance, "defaults": {**info.get("defaults", {}), **m.defaults}}
                bar.update(len(r))
        cols = domain_columns(chi2, model_flag, threshold)
        cat = Table()
        cat["CNAME"] = np.asarray(ds.catalogue["CNAME"]).astype(str)[rows]
        for c in (used.colnames if used is not None else []):
            cat[COLUMNS.get(c, c.upper())] = used[c]
        for c in cols.colnames:
            cat[c] = cols[c]
        write_table(h5, "catalogue", cat)
        h5.attrs["engine"] = engine
        h5.attrs["provenance"] = json.dumps(info.get("provenance", {}), default=str)
        h5.attrs["label_defaults"] = json.dumps(info.get("defaults", {}))
        h5.attrs["labels"] = json.dumps(list(labels.colnames))
        h5.attrs["threshold"] = float(threshold)
        h5.attrs["sigma"] = ("DER_SNR per setup x sqrt(model flux)" if not has_error else "dataset /error"
                             + (f" (DER_SNR for {n_fallback} spectrum setups without one)" if n_fallback else ""))
        h5.attrs["grid"] = ds.grid.to_json()
        h5.attrs["dataset"] = str(ds.path)
        stamp(h5)
    for w in setup_warnings(info.get("provenance", {}), ds.grid):
        log.warning(w)
    none = (model_flag & (MODEL_BAD_LABELS | MODEL_OUT_OF_RANGE)) != 0
    if none.any():
        log.warning("%d of %d spectra get no model spectrum: %d with non-finite labels, %d with labels outside "
                    "the %s engine's range (MODEL_FLAG)", none.sum(), len(rows),
                    ((model_flag & MODEL_BAD_LABELS) != 0).sum(), ((model_flag & MODEL_OUT_OF_RANGE) != 0).sum(),
                    engine)
    n_flag = int(cols["DOMAIN_FLAG"].sum())
    log.info("model spectra (%s engine) → %s; %d of %d spectra flagged (DOMAIN_CHI2 > %g or no model)",
             engine, out_h5, n_flag, len(rows), threshold)
    cols.meta["MSENGINE"] = engine
    if engine == "emulator":  # how much the emulator can be trusted: its training grid (FITS header)
        cols.meta["MSGRIDPT"] = int(info.get("provenance", {}).get("emulator", {}).get("grid_points") or 0)
    return cols


def _vstack(a: Table, b: Table) -> Table:
    from astropy.table import vstack

    return vstack([a, b])
