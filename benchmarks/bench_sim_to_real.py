"""Sim-to-real gap on the Sun: flux RMS real − model per setup on the 8669-pixel pipeline grid.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_sim_to_real.py [--no-marcs] [--no-astro]

Real Sun: UVES (HR10) and SAO2010 (HR21) from ../shared/data, degraded to GIRAFFE resolution
(`synth.sim_to_real`). Models, all at Teff 5772 K, log g 4.44, [Fe/H] 0, v_mic from the mock's
relation, broadened with the mock's solar v_mac and v sin i = 1.6 km/s:

* the one-layer engine (`synth.engine`, today's mock survey);
* PySME + ATLAS9 interpolated atmosphere + linemake laboratory log gf (`synth.pysme_engine`);
* the same with VALD's laboratory log gf where VALD has the line, plus VALD's lines that linemake
  lacks (`PysmeSettings(gf_source="vald")`, `mock.vald_lines`): another compilation, not a fit;
* the shipped emulator of that PySME grid (`mock.emulated`, `synth survey --engine emulator`): what
  the mock survey's spectra look like with it — its gap adds the emulator's own error to PySME's;
* the same with the Gaia-ESO line list (`PysmeSettings(gf_source="ges")`, `mock.ges_lines`: its
  laboratory log gf, damping and hyperfine components; skipped until fetched);
* PySME + the MARCS solar model (shared data) + laboratory log gf (the issue's reference);
* PySME + ATLAS9 + the solar-fitted log gf table shipped in the package (if present), using only the
  lines fitted in the even 5-Å windows: its "held out" column (odd windows) is the honest number;
  if the odd half was fitted too, the circular "both" model shows what a full fit reaches.

All PySME models use VALD damping constants where VALD has them (`PysmeSettings.damping`).

Then HR21 of the real Gaia-ESO star in ../shared/data/spectra/ges_giraffe (iDR6 6203 K, 4.09, +0.15),
which no fit used: one-layer, PySME lab log gf, PySME even-half fitted log gf.

Prints RMS over all pixels and over the fit / held-out halves, plus the date and machine load.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

GES_VSINI = 3.0  # km/s; velclass VROT 0.2 is unresolved at GIRAFFE's R, so a typical slow rotator


def pysme_native(settings, atmo_path=None, labels=None, setups=("HR10", "HR21")):
    from starlabel.mock import pysme_engine as pe
    from starlabel.mock import sim_to_real as s2r

    labels = labels or s2r.sun_labels()
    out = {}
    for name, (lo, hi, st) in settings.windows().items():
        if name not in setups:
            continue
        wave = lo + st * np.arange(int(round((hi - lo) / st)) + 1)
        if atmo_path is None:
            f = pe.synthesize_window(labels, wave, settings)
        else:
            f = _marcs_window(labels, wave, settings, atmo_path)
        out[name] = (wave, f)
    return out


def _marcs_window(labels, wave, settings, path):
    from pysme.atmosphere.marcsfile import MarcsAtmosphere
    from pysme.synthesize import synthesize_spectrum

    from starlabel.grid import resample
    from starlabel.mock import pysme_engine as pe

    step = wave[1] - wave[0]
    sme = pe.make_sme(labels, settings, [(wave[0] - step, wave[-1] + step)])
    sme.atmo = MarcsAtmosphere(str(path))
    sme = synthesize_spectrum(sme)
    return resample(np.asarray(sme.wave[0]), np.asarray(sme.synth[0]), wave)[0]


def linemake(**kw):
    """PySME settings on linemake's laboratory log gf: the list the solar log gf table was fitted to."""
    from starlabel.mock import pysme_engine as pe

    return pe.PysmeSettings(gf_source="linemake", **kw)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--no-marcs", action="store_true", help="skip the PySME + MARCS model")
    p.add_argument("--no-astro", action="store_true", help="skip the fitted-log-gf model")
    p.add_argument("--no-ges", action="store_true", help="skip the real GES HR21 star")
    a = p.parse_args(argv)

    from astropy.table import Table

    from starlabel.mock import emulated, ges_lines
    from starlabel.mock import pysme_engine as pe
    from starlabel.mock import sim_to_real as s2r

    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; cpus {os.cpu_count()}; load {os.getloadavg()}")
    real = s2r.real_sun(pe.SHARED_DATA)
    models = {"one-layer engine": lambda: s2r.onelayer_sun(),
              "PySME + ATLAS9, lab log gf": lambda: s2r.model_on_grid(pysme_native(linemake())),
              "PySME + ATLAS9, VALD log gf": lambda: s2r.model_on_grid(pysme_native(pe.PysmeSettings(gf_source="vald"))),
              "PySME + ATLAS9, Gaia-ESO line list": lambda: s2r.model_on_grid(pysme_native(pe.PysmeSettings(gf_source="ges"))),
              "emulator engine": lambda: s2r.model_on_grid(emulated.load().spectrum(s2r.sun_labels()))}
    if not ges_lines.ges_linelist_path().exists():
        print(f"Gaia-ESO line list not fetched ({ges_lines.FETCH_HINT}): its row is skipped")
        del models["PySME + ATLAS9, Gaia-ESO line list"]
    if not a.no_marcs:
        models["PySME + MARCS Sun, lab log gf"] = lambda: s2r.model_on_grid(
            pysme_native(linemake(), pe.SHARED_DATA / "atmospheres" / "marcs" / "sun.mod"))
    if not a.no_astro and pe.gf_table_path().exists():
        halves = set(Table.read(pe.gf_table_path(), format="ascii.ecsv")["HALF"])
        print(f"fitted log gf table: {pe.gf_table_path().name}, halves fitted: {sorted(halves)}")
        models["PySME + ATLAS9, gf fitted on even half"] = lambda: s2r.model_on_grid(
            pysme_native(linemake(astrophysical_gf="even")))
        if "odd" in halves:
            models["PySME + ATLAS9, gf fitted on both halves"] = lambda: s2r.model_on_grid(
                pysme_native(linemake(astrophysical_gf="all")))
    print(f"emulator: {emulated.load().provenance.get('grid_points')} grid points, built "
          f"{emulated.load().provenance.get('built')}")
    print(f"{'model':36s} {'setup':5s} {'all':>7s} {'fit half':>9s} {'held out':>9s}  seconds")
    for name, make in models.items():
        t = time.perf_counter()
        model = make()
        dt = time.perf_counter() - t
        for setup, r in s2r.report(real, model).items():
            print(f"{name:36s} {setup:5s} {r['all']:7.4f} {r['fit_half']:9.4f} {r['held_out_half']:9.4f}  {dt:6.1f}")
    if not a.no_ges:
        ges_star(a.no_astro)
    print(f"load after: {os.getloadavg()}")


def ges_star(no_astro: bool):
    """HR21 of a real GES star no fit has seen (iDR6 6203 K / 4.09 / +0.15), lab vs fitted log gf."""
    from astropy.table import Table

    from starlabel.grid import Grid
    from starlabel.mock import ges_lines
    from starlabel.mock import pysme_engine as pe
    from starlabel.mock import sim_to_real as s2r
    from starlabel.mock.engine import macroturbulence

    grid = Grid((Grid.default().setup("HR21"),))
    obs, err = s2r.ges_star_hr21(pe.SHARED_DATA, grid)
    lab = s2r.ges_star_labels()
    vmac = float(macroturbulence(lab["teff"], lab["logg"]))
    noise = float(np.nanmedian(err))
    print(f"GES 19235180+0048006 HR21 (S/N 57: noise alone gives RMS ≈ {noise:.4f}), model at iDR6 labels, "
          f"v_mac {vmac:.1f}, v sin i {GES_VSINI} km/s")
    runs = {"one-layer engine": None, "PySME + ATLAS9, lab log gf": linemake(),
            "PySME + ATLAS9, VALD log gf": pe.PysmeSettings(gf_source="vald"),
            "PySME + ATLAS9, Gaia-ESO line list": pe.PysmeSettings(gf_source="ges")}
    if not ges_lines.ges_linelist_path().exists():
        del runs["PySME + ATLAS9, Gaia-ESO line list"]
    if not no_astro and pe.gf_table_path().exists():
        runs["PySME + ATLAS9, gf fitted on even half"] = linemake(astrophysical_gf="even")
        if "odd" in set(Table.read(pe.gf_table_path(), format="ascii.ecsv")["HALF"]):
            runs["PySME + ATLAS9, gf fitted on both halves"] = linemake(astrophysical_gf="all")
    fit, held = s2r.half_masks(grid.setups[0].wavelength)
    for name, settings in runs.items():
        if settings is None:
            from starlabel.mock import engine

            model = engine.synthesize(grid.setups[0].wavelength, lab["teff"], lab["logg"], lab["feh"], vsini=GES_VSINI,
                                      resolution=16200.0)
        else:
            model = s2r.model_on_grid(pysme_native(settings, labels=lab, setups=("HR21",)), grid, vmac=vmac,
                                      vsini=GES_VSINI)["HR21"]
        r = [s2r.rms(obs, model), s2r.rms(obs, model, fit), s2r.rms(obs, model, held)]
        print(f"{name:36s} HR21  {r[0]:7.4f} {r[1]:9.4f} {r[2]:9.4f}   minus noise (all): "
              f"{np.sqrt(max(r[0]**2 - noise**2, 0)):.4f}")


if __name__ == "__main__":
    main()
