"""Calibrated error bars: the model-error term that the ensemble spread and the noise draws miss.

E_<LABEL>_CNN (how much the networks disagree) and E_<LABEL>_NOISE (the flux noise carried through
them) leave out what every network gets wrong alike: the error of the model itself. On held-out
spectra whose reference labels have known errors, that missing part is the one constant σ_model per
label for which a Gaussian's share of the residuals is covered, 68.3 % within

    sqrt(σ_CNN² + σ_noise² + σ_model² + σ_ref²),

where σ_ref (the reference's own error, E_<LABEL> of the catalogue) belongs to the residual, not to
the prediction, and is not part of the error bar the prediction then carries. Each star needs
σ_model² ≥ r² − σ_CNN² − σ_noise² − σ_ref²; σ_model is the 68.3 % quantile of that need (zero when
the bars already cover). A quantile rather than a χ² mean, so that a few wrong reference labels
cannot inflate every star's bar.
"""

from __future__ import annotations

import numpy as np

from .metrics import within_sigma

ONE_SIGMA = 0.6826894921370859  # a Gaussian's share within ±1σ


def model_error(residual, sigma, ref_error=None, coverage: float = ONE_SIGMA) -> float:
    """The smallest σ_model ≥ 0 for which a fraction `coverage` of the finite `residual` lies within
    sqrt(sigma² + ref_error² + σ_model²). `ref_error`: the reference labels' 1σ errors (missing or
    non-positive ones count as 0, so σ_model then also holds the reference's error). NaN when no
    residual is finite."""
    if not 0 < coverage < 1:
        raise ValueError(f"coverage must lie between 0 and 1, got {coverage}")
    r = np.asarray(residual, float)
    s2 = np.asarray(sigma, float) ** 2
    if ref_error is not None:
        e = np.asarray(ref_error, float)
        s2 = s2 + np.where(np.isfinite(e) & (e > 0), e, 0.0) ** 2
    ok = np.isfinite(r) & np.isfinite(s2)
    if not ok.any():
        return float("nan")
    need = r[ok] ** 2 - s2[ok]
    return float(np.sqrt(max(np.quantile(need, coverage, method="inverted_cdf"), 0.0)))


def fit(names, mean, std, noise, ref, ref_error=None, coverage: float = ONE_SIGMA) -> dict:
    """σ_model of each label from predictions (mean, std, noise: (N, L)) of held-out spectra with
    reference labels `ref` (N, L) and their errors `ref_error` (N, L, or None). Returns
    {label: {"sigma_model", "n", "within_1sigma_before", "within_1sigma", "within_2sigma"}}: the
    coverage of the reference by the bars before (σ_CNN ⊕ σ_noise) and after adding σ_model, with
    σ_ref in both, as the fit counted it."""
    mean, std, noise, ref = (np.asarray(a, float) for a in (mean, std, noise, ref))
    err = np.zeros_like(ref) if ref_error is None else np.asarray(ref_error, float)
    err = np.where(np.isfinite(err) & (err > 0), err, 0.0)
    out = {}
    for j, name in enumerate(names):
        r = mean[:, j] - ref[:, j]
        bar = np.hypot(std[:, j], noise[:, j])
        sm = model_error(r, bar, err[:, j], coverage)
        judged = np.hypot(bar, err[:, j])
        after = np.hypot(judged, sm if np.isfinite(sm) else np.nan)
        out[name] = {"sigma_model": sm, "n": int(np.isfinite(r).sum()),
                     "within_1sigma_before": within_sigma(mean[:, j], ref[:, j], judged, 1),
                     "within_1sigma": within_sigma(mean[:, j], ref[:, j], after, 1),
                     "within_2sigma": within_sigma(mean[:, j], ref[:, j], after, 2)}
    return out
