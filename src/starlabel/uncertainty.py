"""Noise-propagated label uncertainties: the part of the error the ensemble spread cannot see.

The standard deviation over the kept networks (paper Sect. 4.3) says how much networks trained
on the same data disagree. It does not see the noise in the spectrum being labelled: on the
mock survey only a third (3 networks) to a half (8 networks) of the test stars lie within one
ensemble σ of the truth.
Here each network also labels copies of the spectrum with extra Gaussian noise at the
spectrum's own noise level; the rms change of its labels is the noise-propagated uncertainty
(to first order J Σ Jᵀ, whatever the network). The noise level per setup is measured from the
flux itself with DER_SNR (Stoehr et al. 2008), so no error spectrum is needed.
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


def noise_sigma(ensemble, flux: np.ndarray, draws: int = 1, seed=0, each: np.ndarray | None = None,
                mask: np.ndarray | None = None, **predict_kw) -> np.ndarray:
    """(N, L) noise-propagated uncertainty in physical units: rms over `draws` noisy copies and
    over the kept networks of (label of noisy copy − label of the spectrum). `each` is the
    ensemble's `predict_each(flux)` when already computed; `seed` makes the draws repeatable.
    Masked pixels (`mask` non-zero) hold fill values, not data: they get no noise."""
    if draws < 1:
        raise ValueError(f"draws must be at least 1, got {draws}")
    x = np.asarray(flux, dtype=np.float32)
    if each is None:
        each = ensemble.predict_each(x, **predict_kw)
    slices = list(ensemble.grid.slices().values())
    sigma = pixel_noise(x, slices, mask)
    keep = None if mask is None or not np.any(mask) else (np.asarray(mask) == 0).astype(np.float32)
    rng = np.random.default_rng(seed)
    sq = np.zeros(each.shape[1:])
    for _ in range(draws):
        noisy = x.copy()
        for j, s in enumerate(slices):
            width = s.stop - s.start
            eps = rng.standard_normal((len(x), width), dtype=np.float32) * sigma[:, j : j + 1]
            noisy[:, s] += eps if keep is None else eps * keep[:, s]
        sq += ((ensemble.predict_each(noisy, **predict_kw) - each) ** 2).mean(0)
    return np.sqrt(sq / draws)
