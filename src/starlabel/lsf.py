"""Resolution matching: degrade a spectrum sharper than a setup to the setup's resolving power.

A spectrum of resolving power R_in = λ/FWHM_in becomes one of R_out < R_in by convolution with
a Gaussian line-spread function of

    FWHM_λ = λ · sqrt(1/R_out² − 1/R_in²)      (σ = FWHM / (2 √(2 ln 2)))

(Gaussians add in quadrature). The width is constant in ln λ, so the spectrum is interpolated
onto a uniform ln λ grid at its own median step, smoothed with `scipy.ndimage.gaussian_filter1d`,
and interpolated back onto its own wavelengths. Both the input and the output LSF are taken as
Gaussian; real GIRAFFE/UVES LSFs are close to that in the core (the wings are not modelled).
"""

from __future__ import annotations

import math

import numpy as np

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


def lsf_sigma(r_in: float, r_out: float) -> float:
    """σ of the degrading Gaussian in units of ln λ (= Δλ/λ); 0 when R_out ≥ R_in."""
    if not (r_out > 0 and r_in > 0) or r_out >= r_in:
        return 0.0
    return math.sqrt(1.0 / r_out**2 - 1.0 / r_in**2) / FWHM_PER_SIGMA


def degrade(wave: np.ndarray, flux: np.ndarray, r_in: float, r_out: float) -> np.ndarray:
    """`flux` (finite, on increasing `wave`) convolved from resolving power r_in to r_out."""
    from scipy.ndimage import gaussian_filter1d

    sigma = lsf_sigma(r_in, r_out)
    if sigma == 0.0:
        return np.asarray(flux, dtype=float)
    loglam = np.log(np.asarray(wave, dtype=float))
    step = float(np.median(np.diff(loglam)))
    uniform = loglam[0] + step * np.arange(int((loglam[-1] - loglam[0]) / step) + 1)
    smooth = gaussian_filter1d(np.interp(uniform, loglam, flux), sigma / step, mode="nearest")
    return np.interp(loglam, uniform, smooth)
