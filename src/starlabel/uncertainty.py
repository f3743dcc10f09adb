"""Noise-propagated label uncertainties: the part of the error the ensemble spread cannot see.

The standard deviation over the kept networks (paper Sect. 4.3) says how much networks trained
on the same data disagree. It does not see the noise in the spectrum being labelled: on the
mock survey only a third (3 networks) to a half (8 networks) of the test stars lie within one
ensemble σ of the truth.
Here each network also labels copies of the spectrum with extra Gaussian noise at the
spectrum's own noise level; the rms change of its labels is the noise-propagated uncertainty
(to first order J Σ Jᵀ, whatever the network). The noise comes from the dataset's error spectrum
(`/error`, written by `prepare`) where it has one; elsewhere the noise level per setup is measured
from the flux itself with DER_SNR (Stoehr et al. 2008), so no error spectrum is needed. DER_SNR
underestimates σ on a grid finer than the file's pixels (resampling correlates neighbours: on the
mock's 0.05-Å products onto the 0.06-Å HR10 grid), and it cannot see noise that varies along the
spectrum (Ca II cores, sky-line residuals); the error spectrum does both.
"""

from __future__ import annotations

import warnings

import numpy as np

# DER_SNR: noise = 1.482602 / sqrt(6) · median |2 f_i − f_{i−2} − f_{i+2}|
_DER_SNR = 1.482602 / np.sqrt(6.0)


def pixel_noise(flux: np.ndarray, slices, mask: np.ndarray | None = None) -> np.ndarray:
    """(N, n_setups) per-pixel noise of each spectrum in each setup (DER_SNR). Lines barely
    bias it: the second difference over ±2 pixels cancels smooth features. Second differences
    that touch a masked pixel (`mask` non-zero; their flux is a fill value) are left out; a setup
    with none left gets 0 (no noise can be measured or added there)."""
    flux = np.asarray(flux, dtype=np.float32)
    out = np.empty((len(flux), len(slices)), dtype=np.float32)
    for j, s in enumerate(slices):
        f = flux[:, s]
        if f.shape[1] < 5:
            raise ValueError(f"setup {j} has {f.shape[1]} pixels; DER_SNR needs at least 5")
        d = np.abs(2 * f[:, 2:-2] - f[:, :-4] - f[:, 4:])
        if mask is None or not mask[:, s].any():
            out[:, j] = _DER_SNR * np.median(d, axis=1)
            continue
        m = np.asarray(mask[:, s]) != 0
        d[m[:, 2:-2] | m[:, :-4] | m[:, 4:]] = np.nan
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: handled below
            out[:, j] = np.nan_to_num(_DER_SNR * np.nanmedian(d, axis=1), nan=0.0)
    return out


def pixel_sigma(flux: np.ndarray, slices, mask: np.ndarray | None = None,
                error: np.ndarray | None = None) -> np.ndarray:
    """(N, P) per-pixel 1σ: the error spectrum where it is finite and positive, else the setup's
    DER_SNR noise (`pixel_noise`)."""
    per_setup = pixel_noise(flux, slices, mask)
    sigma = np.empty(np.shape(flux), dtype=np.float32)
    for j, s in enumerate(slices):
        sigma[:, s] = per_setup[:, j : j + 1]
    if error is not None:
        err = np.asarray(error, dtype=np.float32)
        good = np.isfinite(err) & (err > 0)
        sigma[good] = err[good]
    return sigma


def noise_sigma(ensemble, flux: np.ndarray, draws: int = 1, seed=0, each: np.ndarray | None = None,
                mask: np.ndarray | None = None, error: np.ndarray | None = None, **predict_kw) -> np.ndarray:
    """(N, L) noise-propagated uncertainty in physical units: rms over `draws` noisy copies and
    over the kept networks of (label of noisy copy − label of the spectrum). `each` is the
    ensemble's `predict_each(flux)` when already computed; `seed` makes the draws repeatable.
    Masked pixels (`mask` non-zero) hold fill values, not data: they get no noise. `error`: the
    spectra's (N, P) error spectrum, used where finite (`pixel_sigma`)."""
    if draws < 1:
        raise ValueError(f"draws must be at least 1, got {draws}")
    x = np.asarray(flux, dtype=np.float32)
    if each is None:
        each = ensemble.predict_each(x, **predict_kw)
    slices = list(ensemble.grid.slices().values())
    sigma = pixel_sigma(x, slices, mask, error)
    if mask is not None and np.any(mask):
        sigma *= np.asarray(mask) == 0
    rng = np.random.default_rng(seed)
    sq = np.zeros(each.shape[1:])
    for _ in range(draws):
        noisy = x.copy()
        for s in slices:  # per setup, so that the draws are the same numbers as before per-pixel σ
            noisy[:, s] += rng.standard_normal((len(x), s.stop - s.start), dtype=np.float32) * sigma[:, s]
        sq += ((ensemble.predict_each(noisy, **predict_kw) - each) ** 2).mean(0)
    return np.sqrt(sq / draws)
