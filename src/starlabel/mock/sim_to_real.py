"""The real Sun next to the mock Sun: how far a synthesis engine is from an observed spectrum.

Real Sun (../shared/data/spectra): HR10 from the UVES atlas (Blanco-Cuaresma et al. 2014; air,
normalised, R ≈ 47 000), HR21 from SAO2010 (Chance & Kurucz 2010; vacuum nm, irradiance, R ≈ 21 000)
converted to air Å and continuum-normalised with `prepare.fit_continuum` -- the same preparation as
tests/test_real_data.py. Both are degraded to GIRAFFE resolution and rebinned onto the pipeline grid.

A model Sun is an unbroadened native spectrum (`pysme_engine.native_wavelength`) convolved with the
GIRAFFE resolution and the mock's solar macroturbulence and v sin i (`engine.broaden`), then rebinned
onto the same grid. `rms(real, model)` is the flux RMS per setup; `half_masks` splits each setup into
alternating 5-Å windows (even: used by the log gf fit, odd: held out).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from ..grid import GIRAFFE_RESOLUTION, Grid, resample

SUN = {"teff": 5772.0, "logg": 4.44, "feh": 0.0, "mg_fe": 0.0, "al_fe": 0.0, "alpha_fe": 0.0}
SUN_VSINI = 1.6  # km/s, the mock's value for the Sun (population.BENCHMARKS)
NATIVE_R = {"HR10": 47000.0, "HR21": 21000.0}  # UVES atlas, SAO2010 (data README)
WINDOW = 5.0  # Å, the fit / held-out alternation


def sun_labels() -> dict:
    from .engine import microturbulence

    return dict(SUN, vmic=float(microturbulence(SUN["teff"], SUN["logg"])))


def gaussian_degrade(wave, flux, resolution, native_resolution=np.inf):
    """Convolve a uniformly sampled spectrum from `native_resolution` to `resolution` (LSF at the centre)."""
    step = np.median(np.diff(wave))
    fwhm = np.median(wave) * np.sqrt(1 / resolution**2 - 1 / native_resolution**2)
    sigma = fwhm / 2.3548 / step
    x = np.arange(-int(5 * sigma) - 1, int(5 * sigma) + 2)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    return np.convolve(flux, kernel / kernel.sum(), mode="same")


@lru_cache(maxsize=2)
def real_sun_native(shared_data: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{setup: (air wave Å, normalised flux)} at the data's own resolution (HR10 UVES, HR21 SAO2010)."""
    from ..io.spectra import vac_to_air
    from ..continuum import fit_continuum

    d = Path(shared_data) / "spectra"
    uves = np.loadtxt(d / "sun_uves_normalized_air.txt")
    uves = uves[(uves[:, 0] > 5330) & (uves[:, 0] < 5630)]
    sao = np.loadtxt(d / "sun_sao2010_irradiance_vacuum.txt", comments="#")
    sao = sao[(sao[:, 0] > 846.0) & (sao[:, 0] < 902.0)]
    wave = vac_to_air(sao[:, 0] * 10.0)
    return {"HR10": (uves[:, 0], uves[:, 1]), "HR21": (wave, sao[:, 1] / fit_continuum(wave, sao[:, 1]))}


def real_sun(shared_data: str | Path, grid: Grid | None = None, renormalise=("HR21",)) -> dict[str, np.ndarray]:
    """{setup: flux on the pipeline grid} of the real Sun at GIRAFFE resolution. The setups in
    `renormalise` are divided by `fit_continuum` after the degradation, as `prepare --normalise` does
    (SAO2010, an irradiance, needs it; UVES HR10 comes normalised by its authors)."""
    from ..continuum import fit_continuum

    grid = grid or Grid.default()
    out = {}
    for s in grid.setups:
        w, f = real_sun_native(str(shared_data))[s.name]
        g = gaussian_degrade(w, f, GIRAFFE_RESOLUTION[s.name], NATIVE_R[s.name])[20:-20]
        w = w[20:-20]
        if s.name in renormalise:  # re-normalise after the degradation, as prepare would
            g = g / fit_continuum(w, g)
        out[s.name] = resample(w, g, s.wavelength)[0]
    return out


def model_on_grid(native: dict[str, tuple[np.ndarray, np.ndarray]], grid: Grid | None = None,
                  resolution: dict | None = None, vmac: float | None = None, vsini: float = SUN_VSINI):
    """{setup: flux on the grid} from {setup: (wave, unbroadened flux)}: GIRAFFE R ⊗ v_mac ⊗ v sin i."""
    from .engine import broaden, macroturbulence

    grid = grid or Grid.default()
    vmac = float(macroturbulence(SUN["teff"], SUN["logg"])) if vmac is None else vmac
    resolution = resolution or GIRAFFE_RESOLUTION
    out = {}
    for s in grid.setups:
        w, f = native[s.name]
        out[s.name] = resample(w, broaden(np.asarray(f, float), w, resolution[s.name], vmac, vsini), s.wavelength)[0]
    return out


def half_masks(wave: np.ndarray, window: float = WINDOW) -> tuple[np.ndarray, np.ndarray]:
    """(fit, held_out) boolean masks: alternate `window`-Å windows counted from the setup's start."""
    k = np.floor((wave - wave[0]) / window).astype(int)
    return k % 2 == 0, k % 2 == 1


def rms(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    if mask is not None:
        ok &= mask
    return float(np.sqrt(np.mean((a[ok] - b[ok]) ** 2)))


def onelayer_sun(grid: Grid | None = None) -> dict[str, np.ndarray]:
    """Today's one-layer engine's Sun on the grid (its own broadening, GIRAFFE R)."""
    from . import engine

    grid = grid or Grid.default()
    return {s.name: engine.synthesize(s.wavelength, SUN["teff"], SUN["logg"], SUN["feh"], vsini=SUN_VSINI,
                                      resolution=GIRAFFE_RESOLUTION[s.name]) for s in grid.setups}


def report(real: dict, model: dict, grid: Grid | None = None) -> dict[str, dict[str, float]]:
    """{setup: {'all', 'fit_half', 'held_out_half'}} flux RMS real − model."""
    grid = grid or Grid.default()
    out = {}
    for s in grid.setups:
        fit, held = half_masks(s.wavelength)
        out[s.name] = {"all": rms(real[s.name], model[s.name]), "fit_half": rms(real[s.name], model[s.name], fit),
                       "held_out_half": rms(real[s.name], model[s.name], held)}
    return out


# A real Gaia-ESO GIRAFFE HR21 product (GES DR1, CNAME 19235180+0048006; data README) with iDR6 labels:
# a star whose spectrum no fit here has seen.
GES_STAR = {"teff": 6203.0, "logg": 4.09, "feh": 0.15, "mg_fe": 0.0, "al_fe": 0.0, "alpha_fe": 0.0}
GES_FILE = "ges_giraffe/gir_19235180+0048006_H875.7.fit"


def ges_star_labels() -> dict:
    from .engine import microturbulence

    return dict(GES_STAR, vmic=float(microturbulence(GES_STAR["teff"], GES_STAR["logg"])))


def ges_star_hr21(shared_data: str | Path, grid: Grid | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(normalised flux, 1σ error) of the GES HR21 star on the pipeline HR21 grid, shifted to the rest frame
    with its velclass VEL (CASU normalisation kept as delivered; pixels without data are NaN).
    The error is per 0.05-Å input pixel, not rebinned."""
    from astropy.io import fits

    from .engine import C_KMS

    grid = grid or Grid.default()
    with fits.open(Path(shared_data) / "spectra" / GES_FILE) as h:
        flux = np.asarray(h["normalised_spectrum"].data, float)
        # normalised_ivar of this product is not on the normalised scale (median S/N 1.3): take the
        # relative error from the un-normalised spectrum (median S/N 57, as its header says)
        final = np.asarray(h["final_spectrum"].data, float)
        ivar = np.asarray(h["final_ivar"].data, float) * final**2 / np.where(flux > 0, flux, np.nan) ** 2
        hd = h["normalised_spectrum"].header
        vel = float(h["velclass"].data["VEL"][0])
    step = hd.get("CDELT1", hd.get("CD1_1", 0.05))
    wave = hd["CRVAL1"] + step * (np.arange(flux.size) + 1 - hd.get("CRPIX1", 1.0))
    rest = wave / (1 + vel / C_KMS)
    good = np.isfinite(flux) & (ivar > 0)
    err = np.where(good, 1 / np.sqrt(np.where(good, ivar, 1.0)), np.nan)
    s = grid.setup("HR21")
    f, covered = resample(rest[good], flux[good], s.wavelength)
    e = np.interp(s.wavelength, rest[good], err[good])
    f[~covered] = np.nan
    return f, e
