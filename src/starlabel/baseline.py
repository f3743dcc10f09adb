"""A simple data-driven baseline to judge the CNN against: PCA of the flux + ridge regression.

Uses the same training/test split as the ensemble, so the two are compared on
exactly the same spectra (issue 3: the ensemble must clearly beat it).
"""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def fit_pca_ridge(flux: np.ndarray, labels: np.ndarray, n_components: int = 100, seed: int = 0):
    """Fit PCA(n_components) → standardise → ridge (alpha by generalised cross-validation)."""
    n_components = min(n_components, len(flux) - 1, flux.shape[1])
    model = make_pipeline(
        PCA(n_components=n_components, svd_solver="randomized", random_state=seed),
        StandardScaler(),
        RidgeCV(alphas=np.logspace(-3, 3, 13)),
    )
    return model.fit(np.nan_to_num(flux, nan=1.0), labels)


def predict_pca_ridge(model, flux: np.ndarray) -> np.ndarray:
    return model.predict(np.nan_to_num(flux, nan=1.0))
