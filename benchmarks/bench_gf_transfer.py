"""Does the solar log gf fit carry over to another star? (issue 11: judge on spectra no fit used)

    PYTHONPATH=src .venv/bin/python benchmarks/bench_gf_transfer.py [--no-sun] [--threshold 0.003]

The fitted table (`starlabel/data/pysme_loggf_sun.ecsv`, `mock.pysme_gf`) changes log gf only of
lines fitted in 5-Å windows of the real Sun. Comparing whole held-out windows cannot test such a
fit (their lines were never fitted); what can be tested is whether the *fitted lines* get better in
a star whose spectrum no fit saw. Here that is the only independent real spectrum in ../shared/data,
the Gaia-ESO GIRAFFE HR21 product of 19235180+0048006 (iDR6 6203 K / 4.09 / +0.15; S/N ≈ 57), read
and shifted to its rest frame by `sim_to_real.ges_star_hr21`, and the models degraded to GIRAFFE HR21
exactly as `bench_sim_to_real.py` does (PySME + ATLAS9 at the iDR6 labels, mock v_mac, v sin i 3 km/s).

Models: laboratory log gf ("lab"), the lines fitted in the even windows ("even") and in all windows
("all"). Pixel sets, per model pair:

* even / odd windows: the alternating 5-Å windows (`sim_to_real.half_masks`);
* "changed": pixels where the fitted model differs from the lab model by more than `--threshold` in
  this very star — the only pixels where the gf fit can help or hurt; split by window half.

Also per fitted line (|Δlog gf| ≥ 0.1): the residual real − model at the line centre, lab vs fitted,
and how many lines got closer. The real Sun (SAO2010 HR21 at GIRAFFE R, `sim_to_real.real_sun`) gets
the same table for comparison: in its even windows the "even" model is fitted to these very data.
Prints date and machine load.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_sim_to_real import GES_VSINI, pysme_native


def rms(d, m):
    ok = m & np.isfinite(d)
    return float(np.sqrt(np.mean(d[ok] ** 2))) if ok.any() else float("nan"), int(ok.sum())


def line_table(table, setup: str, half: str | None, min_delta: float = 0.1):
    t = table[[str(w).startswith(setup) for w in table["WINDOW"]]]
    if half is not None:
        t = t[t["HALF"] == half]
    return t[np.abs(t["LOGGF_ASTRO"] - t["LOGGF_LAB"]) >= min_delta]


def residual_velocity(wave, obs, model, span: float = 3.0, step: float = 0.1) -> float:
    """The Doppler shift (km/s) of `obs` that best matches `model` (least squares, ±`span`): a check of
    the rest-frame correction, which would blur any line-by-line comparison."""
    from starlabel.mock.engine import C_KMS

    ok = np.isfinite(obs)
    vs = np.arange(-span, span + step / 2, step)
    cost = [np.nanmean((np.interp(wave, wave[ok] / (1 + v / C_KMS), obs[ok]) - model) ** 2) for v in vs]
    return float(vs[int(np.argmin(cost))])


def compare(name, wave, obs, models, table, noise, threshold, fit_velocity=False):
    """Print the pixel-set RMS and the per-line comparison for one star."""
    from starlabel.mock import sim_to_real as s2r
    from starlabel.mock.engine import C_KMS

    even, odd = s2r.half_masks(wave)
    lab = models["lab"]
    v = residual_velocity(wave, obs, lab)
    print(f"\n{name}: residual Doppler shift of the data against the lab model: {v:+.1f} km/s"
          + (" (removed)" if fit_velocity else " (kept; --fit-velocity removes it)"))
    if fit_velocity:
        ok = np.isfinite(obs)
        shifted = np.interp(wave, wave[ok] / (1 + v / C_KMS), obs[ok])
        inside = (wave >= wave[ok][0] / (1 + v / C_KMS)) & (wave <= wave[ok][-1] / (1 + v / C_KMS))
        obs = np.where(inside, shifted, np.nan)
    print(f"flux RMS real − model (pixels); noise alone ≈ {noise:.4f}" if noise else "flux RMS real − model (pixels)")
    print(f"  {'model':5s} {'all':>14s} {'even windows':>14s} {'odd windows':>14s}")
    for k, m in models.items():
        cells = [rms(obs - m, msk) for msk in (np.ones_like(even), even, odd)]
        print(f"  {k:5s} " + " ".join(f"{r:7.4f} ({n:4d})" for r, n in cells))
    for k in ("even", "all"):
        if k not in models:
            continue
        changed = np.abs(models[k] - lab) > threshold
        print(f"  pixels where '{k}' differs from 'lab' by > {threshold}: RMS lab → {k}")
        for part, msk in (("even windows", even), ("odd windows", odd)):
            r0, n = rms(obs - lab, changed & msk)
            r1, _ = rms(obs - models[k], changed & msk)
            extra = ""
            if noise and n:
                extra = (f"   minus noise: {np.sqrt(max(r0**2 - noise**2, 0)):.4f} → "
                         f"{np.sqrt(max(r1**2 - noise**2, 0)):.4f}")
            print(f"    {part:12s} {n:4d} px  {r0:.4f} → {r1:.4f}{extra}")
    for k, half in (("even", "even"), ("all", None)):
        if k not in models:
            continue
        t = line_table(table, "HR21", half)
        w = np.asarray(t["WAVE"], float)
        inside = (w > wave[0]) & (w < wave[-1])
        w = w[inside]
        r_lab = np.interp(w, wave, obs - lab)
        r_fit = np.interp(w, wave, obs - models[k])
        ok = np.isfinite(r_lab) & np.isfinite(r_fit)
        better = np.abs(r_fit[ok]) < np.abs(r_lab[ok])
        moved = np.abs(r_fit[ok] - r_lab[ok]) > max(noise or 0.0, 0.005)  # changes larger than the noise
        print(f"  '{k}' lines with |Δlog gf| ≥ 0.1 ({ok.sum()}): median |real − model| at the centre "
              f"{np.median(np.abs(r_lab[ok])):.4f} (lab) → {np.median(np.abs(r_fit[ok])):.4f}; closer: "
              f"{int(better.sum())}/{ok.sum()}; of the {int(moved.sum())} whose centre moved by more than the noise: "
              f"{int(better[moved].sum())} closer")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--no-sun", action="store_true", help="skip the real Sun")
    p.add_argument("--fit-velocity", action="store_true",
                   help="shift each observed spectrum by its residual velocity against the lab model first")
    p.add_argument("--cache", metavar="NPZ", help="keep the model spectra in this scratch file and reuse them if it exists (delete it when the "
                        "engine or the table changes)")
    p.add_argument("--threshold", type=float, default=0.003,
                   help="|fitted − lab model| above which a pixel counts as changed (default 0.003)")
    a = p.parse_args(argv)

    from astropy.table import Table

    from starlabel.grid import Grid
    from starlabel.mock import pysme_engine as pe
    from starlabel.mock import sim_to_real as s2r
    from starlabel.mock.engine import macroturbulence

    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; cpus {os.cpu_count()}; load {os.getloadavg()}")
    table = Table.read(pe.gf_table_path(), format="ascii.ecsv")
    hr21 = table[[str(w).startswith("HR21") for w in table["WINDOW"]]]
    print(f"fitted table {pe.gf_table_path().name}: {len(table)} lines, HR21 {len(hr21)} "
          f"(even {int((hr21['HALF'] == 'even').sum())}, odd {int((hr21['HALF'] == 'odd').sum())}); "
          f"|Δlog gf| ≥ 0.1: {len(line_table(table, 'HR21', None))}")
    lab = pe.PysmeSettings(gf_source="linemake")  # the list the table was fitted to
    runs = {"lab": lab, "even": pe.PysmeSettings(gf_source="linemake", astrophysical_gf="even")}
    if "odd" in set(table["HALF"]):
        runs["all"] = pe.PysmeSettings(gf_source="linemake", astrophysical_gf="all")

    grid = Grid((Grid.default().setup("HR21"),))
    wave = grid.setups[0].wavelength
    obs, err = s2r.ges_star_hr21(pe.SHARED_DATA, grid)
    lab = s2r.ges_star_labels()
    vmac = float(macroturbulence(lab["teff"], lab["logg"]))
    cache = dict(np.load(a.cache)) if a.cache and Path(a.cache).exists() else {}
    models = {}
    for k, settings in runs.items():
        t = time.perf_counter()
        if f"ges_{k}" not in cache:
            cache[f"ges_{k}"] = s2r.model_on_grid(pysme_native(settings, labels=lab, setups=("HR21",)), grid,
                                                  vmac=vmac, vsini=GES_VSINI)["HR21"]
            print(f"  GES model '{k}': {time.perf_counter() - t:.0f} s")
        models[k] = cache[f"ges_{k}"]
    compare(f"GES 19235180+0048006 HR21 at iDR6 {lab['teff']:.0f}/{lab['logg']:.2f}/{lab['feh']:+.2f} "
            f"(v_mic {lab['vmic']:.2f}, v_mac {vmac:.1f}, v sin i {GES_VSINI})", wave, obs, models, table,
            float(np.nanmedian(err)), a.threshold, a.fit_velocity)
    if not a.no_sun:
        real = s2r.real_sun(pe.SHARED_DATA, grid)["HR21"]
        models = {}
        for k, settings in runs.items():
            t = time.perf_counter()
            if f"sun_{k}" not in cache:
                cache[f"sun_{k}"] = s2r.model_on_grid(pysme_native(settings, setups=("HR21",)), grid)["HR21"]
                print(f"  Sun model '{k}': {time.perf_counter() - t:.0f} s")
            models[k] = cache[f"sun_{k}"]
        compare("real Sun HR21 (SAO2010 at GIRAFFE R; its even windows are what 'even' was fitted to)", wave, real,
                models, table, 0.0, a.threshold, a.fit_velocity)
    if a.cache:
        np.savez(a.cache, **cache)
    print(f"\nload after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
