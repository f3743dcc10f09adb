"""Continuum fitting of a 1-D spectrum and the robust noise measure it clips with (used by `prepare`
and by the sim-to-real checks that normalise real spectra)."""

from __future__ import annotations

import numpy as np


def fast_median(x: np.ndarray) -> float:
    """np.median without its overheads (a few times faster on one spectrum); x must be finite."""
    n = x.size
    k = n // 2
    part = np.partition(x, (k - 1, k) if n % 2 == 0 else k)
    return float(part[k] if n % 2 else 0.5 * (part[k - 1] + part[k]))


def robust_sigma(x: np.ndarray, median: float | None = None) -> float:
    """1.4826 × median absolute deviation: the σ of the Gaussian core, blind to spikes and lines."""
    med = fast_median(x) if median is None else median
    return 1.4826 * fast_median(np.abs(x - med))


def fit_continuum(wave, flux, degree: int = 5, low: float = 2.0, high: float = 3.0, iterations: int = 30):
    """Continuum by a Legendre polynomial fit with iterative, asymmetric sigma clipping.

    Pixels more than `low` σ below the fit (absorption lines) or `high` σ above it
    (spikes) are dropped and the fit repeated until the kept set stops changing; lines
    are one-sided, so the fit climbs to the continuum without riding on the noise's top.
    """
    wave = np.asarray(wave, float)
    flux = np.asarray(flux, float)
    keep = np.isfinite(flux) & (flux != 0)
    poly = None
    for _ in range(iterations):
        if keep.sum() <= degree + 1:
            break
        poly = np.polynomial.Legendre.fit(wave[keep], flux[keep], degree)
        resid = flux - poly(wave)
        s = robust_sigma(resid[keep])
        with np.errstate(invalid="ignore"):
            new = np.isfinite(flux) & (flux != 0) & (resid > -low * s) & (resid < high * s)
        if np.array_equal(new, keep):
            break
        keep = new
    if poly is None:
        raise ValueError("too few usable pixels to fit a continuum")
    return poly(wave)
