"""Rebuild the line list shipped with starlabel (`starlabel.io.linelist.read_linelist`) from the raw
lists in ../shared/data/linelists: `derive_linelist(shared_data_dir)` (developer use only; users never
need the raw data). It ranks lines by their strength in the mock engine's reference stars.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.table import Table

from ..io.linelist import read_moog, read_turbospectrum
from . import engine

Z_TO_ELEMENT = {11: "Na", 12: "Mg", 13: "Al", 14: "Si", 20: "Ca", 21: "Sc", 22: "Ti", 23: "V",
                24: "Cr", 25: "Mn", 26: "Fe", 27: "Co", 28: "Ni"}
ROMAN = {1: "I", 2: "II"}
WINDOWS = {"HR10": (5330.0, 5630.0), "HR21": (8475.0, 9010.0)}
# lines the mock survey and the explain stage rely on: always kept
REQUIRED = (("Mg", 1, 5528.41), ("Mg", 1, 8717.81), ("Mg", 1, 8736.02), ("Mg", 1, 8806.76),
            ("Al", 1, 5557.06), ("Al", 1, 8772.87), ("Al", 1, 8773.90),
            ("Ca", 2, 8498.02), ("Ca", 2, 8542.09), ("Ca", 2, 8662.14))
DEFAULT_LOG_GAMMA6 = {1: -7.60, 2: -7.90}  # Unsöld-like fallback when VALD has none
DEFAULT_LOG_GAMMA_RAD = 8.0


def derive_linelist(shared_data: str | Path, out: str | Path | None = None, per_window: int = 350) -> Table:
    """Build the packaged line list from ../shared/data/linelists (developer helper)."""
    d = Path(shared_data) / "linelists"
    raw = Table(np.concatenate([np.asarray(read_moog(d / f)) for f in
                                ("linemake_atomic_5000-8000A.moog", "linemake_atomic_8000-11000A.moog")]))
    z = np.floor(raw["code"]).astype(int)
    ion = np.round((raw["code"] - z) * 10).astype(int) + 1
    ok = np.isin(z, list(Z_TO_ELEMENT)) & np.isin(ion, (1, 2)) & (raw["code"] < 100)
    in_win = np.zeros(len(raw), bool)
    for lo, hi in WINDOWS.values():
        in_win |= (raw["wave"] >= lo) & (raw["wave"] <= hi)
    raw, z, ion = raw[ok & in_win], z[ok & in_win], ion[ok & in_win]
    t = Table()
    t["ELEMENT"] = [Z_TO_ELEMENT[k] for k in z]
    t["ION"] = ion
    t["SPECIES"] = [f"{e} {ROMAN[i]}" for e, i in zip(t["ELEMENT"], ion)]
    t["WAVELENGTH"] = np.round(raw["wave"], 3)
    t["EP"] = raw["ep"]
    t["LOGGF"] = raw["loggf"]
    t["LOG_GAMMA6"] = np.nan
    t["LOG_GAMMA_RAD"] = np.nan
    # damping from VALD: HR21 turbospectrum files, HR10 per-element MOOG files
    vald = []
    for f in ("vald_8300-8800A.turbospectrum", "vald_8800-9300A.turbospectrum"):
        if (d / f).exists():
            vald += read_turbospectrum(d / f)
    for f in sorted((d / "vald_3800-7400A_by_element_moog").glob("vald_*")):
        m = read_moog(f)
        sel = (m["wave"] > 5300) & (m["wave"] < 5650) & (m["damp"] < 0)
        for r in m[sel]:
            zz = int(r["code"])
            if zz in Z_TO_ELEMENT:
                vald.append((Z_TO_ELEMENT[zz], int(round((r["code"] - zz) * 10)) + 1, r["wave"], r["ep"],
                             r["damp"], np.nan))
    for el, io, w, ep, g6, grad in vald:
        m = np.flatnonzero((t["ELEMENT"] == el) & (t["ION"] == io) & (np.abs(t["WAVELENGTH"] - w) < 0.006)
                           & (np.abs(t["EP"] - ep) < 0.03))
        for k in m:
            if np.isfinite(g6):
                t["LOG_GAMMA6"][k] = g6
            if np.isfinite(grad) and grad > 2e5:
                t["LOG_GAMMA_RAD"][k] = np.log10(grad)
    t["LOG_GAMMA6"] = np.where(np.isfinite(t["LOG_GAMMA6"]), t["LOG_GAMMA6"],
                               [DEFAULT_LOG_GAMMA6[i] for i in t["ION"]])
    t["LOG_GAMMA_RAD"] = np.where(np.isfinite(t["LOG_GAMMA_RAD"]), t["LOG_GAMMA_RAD"], DEFAULT_LOG_GAMMA_RAD)
    # strength in reference stars: Sun, K giant, metal-poor giant, warm dwarf
    arrays = engine.line_arrays(t)
    strength = np.zeros(len(t))
    for teff, logg, feh in ((5777, 4.44, 0.0), (4300, 1.6, 0.0), (4600, 1.5, -2.0), (6400, 4.1, -0.5),
                            (4500, 4.6, 0.2)):
        atm = engine.Atmosphere(teff, logg, feh, float(engine.microturbulence(teff, logg)), 3.0)
        eta0, _, _ = engine.line_parameters(atm, engine.abundances_for(feh, {"Mg": 0.2 * (feh < -1)}), arrays)
        strength = np.maximum(strength, eta0)
    keep = np.zeros(len(t), bool)
    for name, (lo, hi) in WINDOWS.items():
        w = np.flatnonzero((t["WAVELENGTH"] >= lo) & (t["WAVELENGTH"] <= hi))
        keep[w[np.argsort(strength[w])[::-1][:per_window]]] = True
        ions = w[t["ION"][w] == 2]  # ion lines carry gravity: keep the strongest few even if weak
        keep[ions[np.argsort(strength[ions])[::-1][:15]]] = True
    for el, io, w in REQUIRED:  # every component of the required features with non-negligible gf
        keep |= (t["ELEMENT"] == el) & (t["ION"] == io) & (np.abs(t["WAVELENGTH"] - w) < 0.05) & (t["LOGGF"] > -2.5)
    t = t[keep]
    t["SETUP"] = np.where(t["WAVELENGTH"] < 7000, "HR10", "HR21")
    t = t["SPECIES", "ELEMENT", "ION", "WAVELENGTH", "EP", "LOGGF", "LOG_GAMMA6", "LOG_GAMMA_RAD", "SETUP"]
    t.sort("WAVELENGTH")
    for c in ("EP", "LOGGF", "LOG_GAMMA6", "LOG_GAMMA_RAD"):
        t[c] = np.round(np.asarray(t[c], float), 3)
    t["WAVELENGTH"].unit, t["EP"].unit = "Angstrom", "eV"
    t.meta["comments"] = [
        "starlabel line list for GIRAFFE HR10/HR21 (air wavelengths).",
        "Lines: linemake (Placco et al. 2021, RNAAS 5, 92). Damping: VALD (Ryabchikova et al. 2015) where",
        "available, else log_gamma6 = -7.6 (neutral) / -7.9 (ion), log_gamma_rad = 8.",
        "Selected: strongest lines in five reference FGK stars + the Mg I, Al I, Ca II features used by starlabel.",
    ]
    if out is not None:
        t.write(out, format="ascii.ecsv", overwrite=True)
    return t
