"""Mock spectra as arrays, straight onto a wavelength grid: for examples, notebooks and tests that
want `Ensemble.fit(flux, labels)` without writing a survey to disk (`synth survey` does that)."""

from __future__ import annotations

import numpy as np
from astropy.table import Table

from ..grid import GIRAFFE_RESOLUTION, Grid
from .population import draw_population


def mock_spectra(n_stars: int, seed: int = 0, grid: Grid | None = None, snr: float = 100.0,
                 engine: str = "emulator") -> tuple[np.ndarray, Table]:
    """(flux (N, P) float32, labels) for `n_stars` stars of the mock Milky Way (`draw_population`).

    Each star is synthesised by the mock survey's engine at rest on `grid` (default: the paper's
    HR10 + HR21 grid), at GIRAFFE's resolution for setups named HR10/HR21 (else 20 000), with
    Gaussian noise of S/N `snr` per pixel. `labels` holds CNAME and the true TEFF, LOGG, FE_H,
    MG_FE, AL_FE. Deterministic in `seed`. `engine`: "emulator" (PySME through its emulator, HR10 and
    HR21 windows only) or "onelayer" (any wavelengths), as `synth survey --engine`: mock spectra
    either way, not a real star's."""
    from .survey import ENGINES

    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose one of {sorted(ENGINES)}")
    synthesize = ENGINES[engine]
    grid = grid or Grid.default()
    stars = draw_population(n_stars, seed)
    rng = np.random.default_rng([seed, 7])
    flux = np.empty((len(stars), grid.n_pixels), np.float32)
    for i, s in enumerate(stars):
        abundances = {"Mg": s["MG_FE"], "Al": s["AL_FE"], "Si": s["ALPHA_FE"], "Ca": s["ALPHA_FE"],
                      "Ti": s["ALPHA_FE"]}
        for setup, sl in zip(grid.setups, grid.slices().values()):
            flux[i, sl] = synthesize(setup.wavelength, s["TEFF"], s["LOGG"], s["FE_H"], abundances,
                                            vsini=min(float(s["VSINI"]), 20.0),
                                            resolution=GIRAFFE_RESOLUTION.get(setup.name, 20000.0))
    flux += rng.normal(0.0, 1.0 / snr, flux.shape).astype(np.float32)
    labels = Table({k: stars[k] for k in ("CNAME", "TEFF", "LOGG", "FE_H", "MG_FE", "AL_FE")})
    return flux, labels
