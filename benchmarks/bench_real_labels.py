"""Labels of real stars from networks trained on the mock survey: the sim-to-real check of issue 11.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_real_labels.py MODEL [MODEL ...]

For each model bundle, on the setups its grid has:
* the real Sun (UVES HR10 + SAO2010 HR21 from ../shared/data, degraded to GIRAFFE resolution,
  `mock.sim_to_real.real_sun`) against 5772 K / 4.44 / 0.00 (issue 11 asks for ≤ 100 K, 0.15 dex in
  log g, 0.08 dex in [Fe/H], [Mg/Fe], [Al/Fe] from a paper-preset ensemble);
* the noiseless mock Sun of the one-layer and the emulator engine on the same grid (what the networks
  say about the Sun of the physics they were trained on: their own bias, not the gap);
* with an HR21 grid, the real Gaia-ESO HR21 product in ../shared/data/spectra/ges_giraffe (rest frame
  from its velclass VEL, CASU normalisation as delivered; pixels without data set to 1.0) against its
  iDR6 labels 6203 K / 4.09 / +0.15 — a star no fit has seen.
Prints label − reference and the ensemble spread E_*_CNN, with date and load; with `--noise-draws K` the
error bar is E_*_TOTAL instead (spread ⊕ noise ⊕ the σ_model of a calibrated bundle) and z = Δ / E_TOTAL says
whether it covers the real star's offset.

`--normalise`: for models trained on datasets from `prepare --normalise` (every spectrum divided by
prepare's own continuum fit, `continuum.fit_continuum`): the real Sun in both setups, the mock Suns
and the GES star (its CASU final spectrum) are divided by the same fit, so that the real and the mock
spectra share one normaliser. Without it, HR10 is UVES's own normalisation and the mock Suns have
their true continuum of 1; prepare's fit puts the emulator Sun's continuum 0.35 % (HR10) and 0.45 %
(HR21) below 1, UVES's 1.1 % (2026-12-01).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

REFERENCE = {"Sun": {"TEFF": 5772.0, "LOGG": 4.44, "FE_H": 0.0, "MG_FE": 0.0, "AL_FE": 0.0},
             "GES 19235180+0048006 (iDR6)": {"TEFF": 6203.0, "LOGG": 4.09, "FE_H": 0.15}}


def spectra_for(ens, normalise: bool = False, emulator: str | None = None):
    """{name: (flux on the model's grid, reference labels)}; `normalise`: see the module docstring."""
    from starlabel.continuum import fit_continuum
    from starlabel.grid import GIRAFFE_RESOLUTION
    from starlabel.mock import emulated, engine
    from starlabel.mock import pysme_engine as pe
    from starlabel.mock import sim_to_real as s2r

    grid, sun = ens.grid, REFERENCE["Sun"]
    names = [s.name for s in grid.setups]
    out = {}
    real = s2r.real_sun(pe.SHARED_DATA, grid, renormalise=names if normalise else ("HR21",))
    out["real Sun"] = (np.concatenate([real[n] for n in names]), sun)
    for label, synth, extra in (("mock Sun, one-layer engine", engine.synthesize, {}),
                                ("mock Sun, emulator engine", emulated.synthesize, {"emulator": emulator})):
        parts = [synth(s.wavelength, sun["TEFF"], sun["LOGG"], sun["FE_H"], vsini=s2r.SUN_VSINI,
                       resolution=GIRAFFE_RESOLUTION[s.name], **extra) for s in grid.setups]
        if normalise:
            parts = [f / fit_continuum(s.wavelength, f) for s, f in zip(grid.setups, parts)]
        out[label] = (np.concatenate(parts), sun)
    if names == ["HR21"]:
        flux, _ = s2r.ges_star_hr21(pe.SHARED_DATA, grid)
        if normalise:
            flux = flux / fit_continuum(grid.wavelength, flux)
        out["real GES HR21 star"] = (np.where(np.isfinite(flux), flux, 1.0), REFERENCE["GES 19235180+0048006 (iDR6)"])
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", help="model bundle directories")
    p.add_argument("--normalise", action="store_true", help="all stars through prepare's continuum fit (see above)")
    p.add_argument("--noise-draws", type=int, default=0, metavar="K",
                   help="error bars E_*_TOTAL from K noise draws (DER_SNR noise; with σ_model if calibrated) and z")
    p.add_argument("--emulator", metavar="FILE", help="the emulator the mock was made with, if not the shipped one "
                   "(`synth survey --emulator`): for the 'mock Sun, emulator engine' row")
    a = p.parse_args(argv)
    from starlabel import Ensemble

    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load {os.getloadavg()}"
          + ("; every star through prepare's continuum fit" if a.normalise else ""))
    for path in a.models:
        ens = Ensemble.load(path)
        names = ens.labels.names
        calibrated = "" if ens.model_error is None else ", calibrated (σ_model in E_TOTAL)"
        print(f"\n{path}: {len(ens.networks)} networks, setups {[s.name for s in ens.grid.setups]}, labels {names}"
              + calibrated)
        for star, (flux, ref) in spectra_for(ens, a.normalise, a.emulator).items():
            p_ = ens.predict(flux[None], noise_draws=a.noise_draws)
            bar = p_.total if a.noise_draws else p_.std
            parts = []
            for j, n in enumerate(names):
                d = f"{p_.mean[0, j] - ref[n]:+.3g}" if n in ref else "—"
                z = f", z {(p_.mean[0, j] - ref[n]) / bar[0, j]:+.1f}" if a.noise_draws and n in ref else ""
                parts.append(f"{n} {p_.mean[0, j]:.4g} (Δ {d}, ±{bar[0, j]:.2g}{z})")
            print(f"  {star:28s} " + "; ".join(parts))
    print(f"\nload after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
