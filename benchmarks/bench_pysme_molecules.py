"""What the VALD molecular lines do to PySME's HR21 spectra (`PysmeSettings(molecules=True)`).

    PYTHONPATH=src .venv/bin/python benchmarks/bench_pysme_molecules.py [--stars sun,giant39,...]

For each star, HR21 (the engine's native window 8470–8940 Å) is synthesised once with the atomic
line list (the grid's default) and once with the VALD molecules added; both are normalised,
unbroadened (`pysme_engine.synthesize_window`) and also compared at GIRAFFE HR21 resolution with the
mock's v_mac (`sim_to_real.model_on_grid`, v sin i 2 km/s) on the pipeline grid. Prints max and RMS
|Δflux|, where the largest differences sit and which molecule makes them, the CPU time of each
synthesis, and the date and machine load.

Where the largest differences sit, the molecule responsible is found by synthesis: a 1-Å window with
the atomic lines plus one molecule's lines at a time (the molecule whose lines alone reproduce most of
the difference is named). For the Sun the real solar spectrum (SAO2010 HR21 at GIRAFFE R,
`sim_to_real.real_sun`) is compared with both models; `--ges` adds the real GES HR21 star at its iDR6
labels (as bench_sim_to_real.py). For the real spectra the RMS is also given with the residual's
local zero point removed (its 4-Å running median), and the scale k that best matches the data's
local residual to the model's molecular absorption (1: the model's molecules are as strong as the
data's; a crude least-squares figure, blends included). All other stars are mock labels, no observed spectrum.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

STARS = {  # teff, logg, feh, mg_fe, al_fe, alpha_fe
    "giant39": (3900.0, 1.0, 0.0, 0.0, 0.0, 0.0),
    "giant43": (4300.0, 1.8, -0.5, 0.2, 0.0, 0.2),
    "kdwarf": (4500.0, 4.6, 0.0, 0.0, 0.0, 0.0),
    "sun": (5772.0, 4.44, 0.0, 0.0, 0.0, 0.0),
}
sys.path.insert(0, str(Path(__file__).resolve().parent))


def labels_of(name: str) -> dict:
    from starlabel.mock.engine import microturbulence

    t, g, f, mg, al, a = STARS[name]
    return {"teff": t, "logg": g, "feh": f, "mg_fe": mg, "al_fe": al, "alpha_fe": a,
            "vmic": float(microturbulence(t, g))}


def local_residual(r: np.ndarray, width_px: int = 41) -> np.ndarray:
    """Residual minus its running median (4 Å on the 0.1-Å grid): removes the continuum-placement offset."""
    from scipy.ndimage import median_filter

    ok = np.isfinite(r)
    fill = np.interp(np.arange(r.size), np.flatnonzero(ok), r[ok])
    out = fill - median_filter(fill, size=width_px, mode="nearest")
    out[~ok] = np.nan
    return out


def responsible_molecule(lab, df_all, center: float, settings) -> str:
    """The molecule whose lines alone (with the atoms) give most of the unbroadened Δ near `center`."""
    import pandas as pd

    from starlabel.mock import pysme_engine as pe

    w = np.arange(center - 0.5, center + 0.5, 0.005)
    near = (df_all["wave"] > w[0] - 2) & (df_all["wave"] < w[-1] + 2)
    atoms = df_all[near & (df_all["code"] < 100)]
    f0 = pe.synthesize_window(lab, w, settings, atoms)
    best, depth = "-", 0.0
    for sp in sorted(set(df_all.loc[near & (df_all["code"] >= 100), "species"])):
        d = pd.concat([atoms, df_all[near & (df_all["species"] == sp)]]).sort_values("wave", kind="stable")
        dd = float(np.max(f0 - pe.synthesize_window(lab, w, settings, d)))
        if dd > depth:
            best, depth = sp.split()[0], dd
    return best


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stars", default=",".join(STARS), help=f"comma-separated, from {sorted(STARS)}")
    p.add_argument("--ges", action="store_true", help="also the real GES HR21 star at its iDR6 labels")
    a = p.parse_args(argv)

    from starlabel.grid import Grid
    from starlabel.mock import pysme_engine as pe
    from starlabel.mock import sim_to_real as s2r
    from starlabel.mock.engine import macroturbulence

    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; cpus {os.cpu_count()}; load {os.getloadavg()}")
    atomic, mol = pe.PysmeSettings(), pe.PysmeSettings(molecules=True)
    lo, hi, st = atomic.windows()["HR21"]
    wave = lo + st * np.arange(int(round((hi - lo) / st)) + 1)
    df_all = pe.linelist_frame(mol)
    df_mol = df_all[df_all["code"] >= 100]
    n_at = int(((pe.linelist_frame(atomic)["wave"] > lo - 2) & (pe.linelist_frame(atomic)["wave"] < hi + 2)).sum())
    print(f"HR21 lines: {n_at} atomic, + {len(df_mol)} molecular "
          f"({', '.join(f'{k} {v}' for k, v in df_mol['species'].value_counts().items())})")
    grid = Grid((Grid.default().setup("HR21"),))
    real_rows = []
    print("t_atomic, t_mol: CPU seconds of the HR21 synthesis (line list already built)")
    print(f"{'star':8s} {'labels':22s} {'t_atomic':>8s} {'t_mol':>7s} {'max|d|':>7s} {'rms d':>7s} "
          f"{'max|d| R':>8s} {'rms d R':>7s}  largest differences (Å, Δ at GIRAFFE R, molecule)")
    for name in a.stars.split(","):
        lab = labels_of(name)
        t = time.process_time()  # CPU seconds: PySME is single-threaded, and wall time on a loaded machine says little
        f0 = pe.synthesize_window(lab, wave, atomic)
        t0 = time.process_time() - t
        t = time.process_time()
        f1 = pe.synthesize_window(lab, wave, mol)
        t1 = time.process_time() - t
        d = f1 - f0
        vmac = float(macroturbulence(lab["teff"], lab["logg"]))
        g0 = s2r.model_on_grid({"HR21": (wave, f0)}, grid, vmac=vmac, vsini=2.0)["HR21"]
        g1 = s2r.model_on_grid({"HR21": (wave, f1)}, grid, vmac=vmac, vsini=2.0)["HR21"]
        gd = g1 - g0
        gw = grid.setups[0].wavelength
        ok = np.isfinite(gd)
        top, used = [], []
        for i in np.argsort(-np.abs(np.where(ok, gd, 0))):
            if all(abs(gw[i] - u) > 2.0 for u in used):
                used.append(gw[i])
                top.append(f"{gw[i]:.1f} {gd[i]:+.3f} {responsible_molecule(lab, df_all, gw[i], atomic)}")
            if len(top) == 4:
                break
        desc = f"{lab['teff']:.0f}/{lab['logg']:.2f}/{lab['feh']:+.1f}"
        print(f"{name:8s} {desc:22s} {t0:8.1f} {t1:7.1f} {np.abs(d).max():7.4f} {np.sqrt(np.mean(d**2)):7.4f} "
              f"{np.abs(gd[ok]).max():8.4f} {np.sqrt(np.mean(gd[ok]**2)):7.4f}  {'; '.join(top)}")
        if name == "sun":
            sun = s2r.real_sun(pe.SHARED_DATA, grid)["HR21"]
            real_rows.append(("real Sun (SAO2010)", sun, g0, g1, 0.0))
    if a.ges:
        from bench_sim_to_real import GES_VSINI

        obs, err = s2r.ges_star_hr21(pe.SHARED_DATA, grid)
        lab = s2r.ges_star_labels()
        vmac = float(macroturbulence(lab["teff"], lab["logg"]))
        g0, g1 = (s2r.model_on_grid({"HR21": (wave, pe.synthesize_window(lab, wave, s))}, grid, vmac=vmac,
                                    vsini=GES_VSINI)["HR21"] for s in (atomic, mol))
        real_rows.append(("GES 19235180+0048006", obs, g0, g1, float(np.nanmedian(err))))
    if real_rows:
        print("\nreal spectra, HR21 at GIRAFFE R: flux RMS real − model (atomic → with molecules); "
              "pixels where the molecules change the model by > 0.003")
        for name, obs, g0, g1, noise in real_rows:
            ch = np.abs(g1 - g0) > 0.003
            hp0, hp1 = local_residual(obs - g0), local_residual(obs - g1)
            line = f"  {name:22s} all {s2r.rms(obs, g0):.4f} → {s2r.rms(obs, g1):.4f}; changed ({int(ch.sum())} px) "
            if ch.any():
                k = float(np.nansum((g1 - g0)[ch] * hp0[ch]) / np.nansum(((g1 - g0)[ch]) ** 2))
                line += (f"{s2r.rms(obs, g0, ch):.4f} → {s2r.rms(obs, g1, ch):.4f}, with the local zero point removed "
                         f"{s2r.rms(hp0, 0 * hp0, ch):.4f} → {s2r.rms(hp1, 0 * hp1, ch):.4f}; the data's molecular "
                         f"absorption ≈ {k:.1f} × the model's")
            print(line + (f"  (noise ≈ {noise:.4f})" if noise else ""))
        print("  (local zero point: the residual minus its 4-Å running median, so that a continuum offset between the "
              "normalised data and the model does not count)")
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
