"""Astrophysical log gf: fit per-line log gf so that the PySME Sun matches the real Sun.

    python -m starlabel.mock.pysme_gf --half even [--setups HR10,HR21] [--out FILE]

The standard practice of GES and GALAH line lists, done per small window so each synthesis is fast:
each setup's pipeline range is cut into 5-Å windows counted from its start (`sim_to_real.half_masks`);
`--half even` fits the even windows only, so the odd half of the Sun stays an independent check
(`--half odd` fits the rest; `PysmeSettings(astrophysical_gf="even"|"all")` chooses what a synthesis
uses). In a window:

* the observed Sun is the data at its own resolution (UVES R ≈ 47 000 for HR10, SAO2010
  R ≈ 21 000 for HR21, `sim_to_real.real_sun_native`); the model is PySME (ATLAS9 Sun, VALD damping)
  convolved with that resolution and the mock's solar v_mac and v sin i, times a free continuum scale;
* fitted lines: centre inside the window, and either solar central depth (PySME `update_cdr`)
  ≥ `DEPTH_MIN` or model depth ≥ `EXCESS_CDR_MIN` with ≥ `DEPTH_MIN` more absorption observed than
  modelled at its centre; at most `MAX_LINES`, strongest first; H I and the Ca II triplet are not fitted (their cores are formed in the
  chromosphere / out of LTE, and those pixels ±0.5 Å are masked);
* a few Gauss–Newton steps with forward-difference derivatives (0.15 dex), a Gaussian prior of
  0.5 dex towards the laboratory value (blends that the data cannot separate stay near it), steps
  limited to ±1.5 dex in total. A line whose largest flux derivative is < 0.003 per dex stays at its
  laboratory value ("the Sun cannot constrain it").

Everything else keeps its laboratory log gf. The output table (`data/pysme_loggf_sun.ecsv`) lists
WAVE, SPECIES, EP, LOGGF_LAB, LOGGF_ASTRO, CDR_SUN, HALF, WINDOW and provenance in its meta; the
fit is resumable (windows already in the table are skipped) and written after every window.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from ..io.atomic import atomic_path

log = logging.getLogger(__name__)

DEPTH_MIN = 0.03
EXCESS_CDR_MIN = 0.002  # a line this weak in the model may still be fitted where the Sun shows absorption
MAX_LINES = 20
PRIOR_DEX = 0.5
FLUX_SIGMA = 0.01
STEP_DEX = 0.15
MAX_DELTA = 1.5
MIN_SENSITIVITY = 0.003
ITERATIONS = 2  # Gauss-Newton steps per window (the first HR10 windows of the shipped table used 3)
CA_TRIPLET = (8498.02, 8542.09, 8662.14)
FIT_RANGES = {"HR10": (5350.0, 5600.0), "HR21": (8480.0, 8930.0)}


def solar_depths(df, labels, settings):
    """Central depth of every line of `df` in the Sun (PySME update_cdr), in chunks."""
    from pysme.synthesize import Synthesizer

    from . import pysme_engine as pe

    sme = pe.make_sme(labels, settings, [(df["wave"].min(), df["wave"].max())], df)
    sme = Synthesizer().update_cdr(sme)
    return np.asarray(sme.linelist._lines["central_depth"], float)


class WindowModel:
    """Broadened model flux on the data pixels of one window as a function of Δlog gf of chosen lines."""

    def __init__(self, labels, settings, df_local, fit_idx, data_wave, resolution, vmac, vsini):
        self.labels, self.settings = labels, settings
        self.df = df_local.reset_index(drop=True)
        self.fit_idx = np.asarray(fit_idx, int)
        self.data_wave = data_wave
        self.resolution, self.vmac, self.vsini = resolution, vmac, vsini
        lo, hi = data_wave[0] - 1.5, data_wave[-1] + 1.5
        self.native = np.arange(lo, hi, 0.005)
        self.n_synth = 0

    def __call__(self, delta: np.ndarray) -> np.ndarray:
        from . import pysme_engine as pe
        from .engine import broaden

        df = self.df.copy()
        df.loc[self.fit_idx, "loggf"] = df.loc[self.fit_idx, "loggf_lab"].to_numpy() + delta
        f = pe.synthesize_window(self.labels, self.native, self.settings, df)
        self.n_synth += 1
        b = broaden(f, self.native, self.resolution, self.vmac, self.vsini)
        return np.interp(self.data_wave, self.native, b)


def fit_window(model: WindowModel, data: np.ndarray, mask: np.ndarray, iterations: int = ITERATIONS):
    """(Δlog gf per fitted line, continuum scale, sensitivity per line, rms before, rms after)."""
    n = model.fit_idx.size
    delta = np.zeros(n)
    m0 = model(delta)

    def cost(m, c, d):
        r = (data - c * m)[mask] / FLUX_SIGMA
        return float(r @ r + (d / PRIOR_DEX) @ (d / PRIOR_DEX))

    c = float(np.sum(data[mask] * m0[mask]) / np.sum(m0[mask] ** 2))
    c = float(np.clip(c, 0.97, 1.03))
    rms0 = float(np.sqrt(np.mean((data - m0)[mask] ** 2)))
    m, best = m0, cost(m0, c, delta)
    sens = np.zeros(n)
    lam = 1e-2
    for _ in range(iterations):
        J = np.empty((data.size, n + 1))
        for j in range(n):
            d = delta.copy()
            d[j] += STEP_DEX
            J[:, j] = c * (model(d) - m) / STEP_DEX
        J[:, n] = m
        sens = np.maximum(sens, np.abs(J[mask, :n]).max(0) if mask.any() else 0)
        r = (data - c * m)[mask] / FLUX_SIGMA
        Jm = J[mask] / FLUX_SIGMA
        P = np.diag(np.r_[np.full(n, 1 / PRIOR_DEX**2), 0.0])
        A = Jm.T @ Jm + P
        g = Jm.T @ r - P @ np.r_[delta, 0.0]
        improved = False
        for _try in range(4):
            step = np.linalg.solve(A + lam * np.diag(np.diag(A) + 1e-9), g)
            d_new = np.clip(delta + step[:n], -MAX_DELTA, MAX_DELTA)
            c_new = float(np.clip(c + step[n], 0.97, 1.03))
            m_new = model(d_new)
            new = cost(m_new, c_new, d_new)
            if new < best:
                delta, c, m, best, lam = d_new, c_new, m_new, new, lam / 3
                improved = True
                break
            lam *= 10
        if not improved or np.abs(step[:n]).max() < 0.01:
            break
    insensitive = sens < MIN_SENSITIVITY
    if insensitive.any():  # the Sun cannot constrain these: back to the laboratory value
        delta[insensitive] = 0.0
        m = model(delta)
    rms1 = float(np.sqrt(np.mean((data - c * m)[mask] ** 2)))
    return delta, c, sens, rms0, rms1


def windows(setup: str, half: str, width: float = 5.0):
    lo, hi = FIT_RANGES[setup]
    starts = lo + width * np.arange(int(np.ceil((hi - lo) / width)))
    k = np.arange(starts.size)
    keep = k % 2 == (0 if half == "even" else 1)
    return [(float(a), float(min(a + width, hi))) for a in starts[keep]]


def read_table(path: Path):
    from astropy.table import Table

    if path.exists():
        return Table.read(path, format="ascii.ecsv")
    return None


def write_table(path: Path, rows: list[dict], meta: dict) -> None:
    from astropy.table import Table

    t = Table(rows=[[r[k] for k in COLS] for r in rows], names=COLS) if rows else Table(names=COLS)
    t.meta.update(meta)
    with atomic_path(path) as tmp:
        t.write(tmp, format="ascii.ecsv")


COLS = ("WAVE", "SPECIES", "EP", "LOGGF_LAB", "LOGGF_ASTRO", "CDR_SUN", "SENSITIVITY", "HALF", "WINDOW")


def fit(setups=("HR10", "HR21"), half="even", out: Path | None = None, settings=None, max_windows=None) -> Path:
    """Fit the windows of `half` in `setups`, appending to the table at `out` (resumable)."""
    from . import pysme_engine as pe
    from . import sim_to_real as s2r
    from .engine import macroturbulence

    settings = settings or pe.PysmeSettings(gf_source="linemake")  # the shipped table was fitted to linemake's list
    if settings.astrophysical_gf:
        raise ValueError("fit from laboratory values: settings.astrophysical_gf must be ''")
    out = Path(out or pe.gf_table_path())
    labels = s2r.sun_labels()
    vmac = float(macroturbulence(labels["teff"], labels["logg"]))
    real = s2r.real_sun_native(str(settings.shared_data))
    df_all = pe.linelist_frame(settings)
    old = read_table(out)
    rows = [dict(zip(COLS, r)) for r in old] if old is not None else []
    done = {(r["HALF"], r["WINDOW"]) for r in rows}
    meta = dict(old.meta) if old is not None else {}
    meta.update({"what": "solar astrophysical log gf for the PySME engine (starlabel.mock.pysme_gf)",
                 "sun": labels, "vmac_kms": vmac, "vsini_kms": s2r.SUN_VSINI, "data_resolution": s2r.NATIVE_R,
                 "data": ["UVES solar atlas, Blanco-Cuaresma et al. 2014 (HR10)",
                          "SAO2010, Chance & Kurucz 2010 (HR21), vacuum->air, fit_continuum normalised"],
                 "lab_linelist": list(settings.linelists), "lab_linelist_sha256": pe.linelist_sha256(df_all),
                 "settings": {k: v for k, v in settings.to_dict().items()},
                 "fit": {"depth_min": DEPTH_MIN, "max_lines": MAX_LINES, "prior_dex": PRIOR_DEX,
                         "flux_sigma": FLUX_SIGMA, "step_dex": STEP_DEX, "max_delta": MAX_DELTA,
                         "min_sensitivity": MIN_SENSITIVITY, "iterations": ITERATIONS,
                         "excess_cdr_min": EXCESS_CDR_MIN}})
    meta.setdefault("windows", {})
    n_done = 0
    for setup in setups:
        w_all, f_all = real[setup]
        sel = (df_all["wave"] > FIT_RANGES[setup][0] - 30) & (df_all["wave"] < FIT_RANGES[setup][1] + 30)
        df_setup = df_all[sel].reset_index(drop=True)
        t = time.perf_counter()
        cdr = solar_depths(df_setup, labels, settings)
        log.info("%s: solar central depths of %d lines in %.0f s", setup, len(df_setup), time.perf_counter() - t)
        for a, b in windows(setup, half):
            key = f"{setup}:{a:.1f}-{b:.1f}"
            if (half, key) in done:
                continue
            if max_windows is not None and n_done >= max_windows:
                break
            t = time.perf_counter()
            w = df_setup["wave"].to_numpy()
            near = (w > a - 3) & (w < b + 3)
            strong = (w > a - 25) & (w < b + 25) & (cdr > 0.6)
            local = df_setup[near | strong].copy()
            local_cdr = cdr[near | strong]
            inside = ((local["wave"] >= a) & (local["wave"] < b)).to_numpy()
            pix = (w_all >= a) & (w_all < b)
            dwave, dflux = w_all[pix], f_all[pix]
            mask = np.isfinite(dflux)
            for c0 in CA_TRIPLET:
                mask &= np.abs(dwave - c0) > 0.5
            local = local.reset_index(drop=True)
            model = WindowModel(labels, settings, local, [], dwave, s2r.NATIVE_R[setup], vmac, s2r.SUN_VSINI)
            try:
                # candidates: deep enough in the model Sun, or sitting in absorption the model lacks
                excess = np.interp(local["wave"].to_numpy(), dwave, model(np.zeros(0)) - dflux)
                score = np.maximum(local_cdr, np.where(local_cdr >= EXCESS_CDR_MIN, excess, 0.0))
                ok = inside & (score >= DEPTH_MIN) & (local["species"] != "H 1").to_numpy()
                ok &= ~((local["species"] == "Ca 2").to_numpy()
                        & np.isin(np.round(local["wave"].to_numpy(), 0), np.round(CA_TRIPLET, 0)))
                cand = np.flatnonzero(ok)
                cand = cand[np.argsort(-score[cand])][:MAX_LINES]
                model.fit_idx = cand
                if cand.size:
                    delta, cscale, sens, rms0, rms1 = fit_window(model, dflux, mask)
                else:
                    m0 = model(np.zeros(0))
                    delta, cscale, sens = np.zeros(0), 1.0, np.zeros(0)
                    rms0 = rms1 = float(np.sqrt(np.mean((dflux - m0)[mask] ** 2)))
            except Exception as e:  # one window never stops the fit
                log.warning("%s failed, lines kept at laboratory log gf: %s: %s", key, type(e).__name__, e)
                continue
            for j, d in zip(cand, delta):
                r = local.iloc[j]
                rows.append({"WAVE": float(r["wave"]), "SPECIES": str(r["species"]), "EP": float(r["ep"]),
                             "LOGGF_LAB": float(r["loggf_lab"]), "LOGGF_ASTRO": round(float(r["loggf_lab"] + d), 3),
                             "CDR_SUN": round(float(local_cdr[j]), 3), "SENSITIVITY": round(float(sens[list(cand).index(j)]), 4),
                             "HALF": half, "WINDOW": key})
            meta["windows"][key] = {"half": half, "n_fitted": int(cand.size), "continuum": round(cscale, 4),
                                    "rms_lab": round(rms0, 4), "rms_fit": round(rms1, 4), "iterations": ITERATIONS,
                                    "syntheses": model.n_synth, "seconds": round(time.perf_counter() - t, 1)}
            write_table(out, rows, meta)
            n_done += 1
            log.info("%s: %d lines, rms %.4f -> %.4f (continuum %.3f) in %.0f s, %d syntheses", key, cand.size,
                     rms0, rms1, cscale, time.perf_counter() - t, model.n_synth)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m starlabel.mock.pysme_gf", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--half", choices=["even", "odd"], default="even", help="which 5-Å windows to fit")
    p.add_argument("--setups", default="HR10,HR21", help="comma-separated setups (default HR10,HR21)")
    p.add_argument("--out", help="table to write/extend (default: the package's data/pysme_loggf_sun.ecsv)")
    p.add_argument("--max-windows", type=int, help="stop after this many new windows")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    path = fit(tuple(a.setups.split(",")), a.half, Path(a.out) if a.out else None, max_windows=a.max_windows)
    print(json.dumps({"table": str(path)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
