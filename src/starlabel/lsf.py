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


def _uniform_loglam(wave: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """ln λ of `wave`, its median step, and a uniform ln λ grid at that step (the Gaussian needs one)."""
    loglam = np.log(np.asarray(wave, dtype=float))
    step = float(np.median(np.diff(loglam)))
    return loglam, step, loglam[0] + step * np.arange(int((loglam[-1] - loglam[0]) / step) + 1)


def degrade(wave: np.ndarray, flux: np.ndarray, r_in: float, r_out: float) -> np.ndarray:
    """`flux` (finite, on increasing `wave`) convolved from resolving power r_in to r_out."""
    from scipy.ndimage import gaussian_filter1d

    sigma = lsf_sigma(r_in, r_out)
    if sigma == 0.0:
        return np.asarray(flux, dtype=float)
    loglam, step, uniform = _uniform_loglam(wave)
    smooth = gaussian_filter1d(np.interp(uniform, loglam, flux), sigma / step, mode="nearest")
    return np.interp(loglam, uniform, smooth)


def degrade_variance(wave: np.ndarray, var: np.ndarray, r_in: float, r_out: float) -> np.ndarray:
    """The variance of `degrade`'s output for independent input pixels of variance `var` (finite).

    The smoothed flux is Σ_j k_j f_j, so its variance is Σ_j k_j² var_j: `var` convolved with the
    squared (discrete, normalised) Gaussian kernel of `degrade` on the same uniform ln λ grid. Degrading
    UVES (R 47 000, 0.01 Å) to GIRAFFE HR21 (R 16 200) spreads the LSF over ≈ 20 input pixels and
    lowers σ about 6-fold (the pixels become strongly correlated; `prepare` then averages them into
    grid bins, see `grid.resample_variance`). The linear interpolations of `degrade` are taken as
    exact for the variance, which holds when the kernel spans several pixels (else Σk² ≈ 1 anyway)."""
    from scipy.ndimage import convolve1d, gaussian_filter1d

    sigma = lsf_sigma(r_in, r_out)
    if sigma == 0.0:
        return np.asarray(var, dtype=float)
    loglam, step, uniform = _uniform_loglam(wave)
    s = sigma / step
    half = int(4.0 * s + 0.5)  # gaussian_filter1d's default truncation
    impulse = np.zeros(2 * half + 1)
    impulse[half] = 1.0
    kernel = gaussian_filter1d(impulse, s, mode="constant")
    smooth = convolve1d(np.interp(uniform, loglam, var), kernel**2, mode="nearest")
    return np.interp(loglam, uniform, smooth)
