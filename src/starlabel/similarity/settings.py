"""`MapSettings`: everything that shapes a similarity map, in a module light enough for `--help`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class MapSettings:
    """Everything that shapes a map; stored in MAP.h5."""

    perplexity: float = 30.0
    seed: int = 0
    n_components: int = 50
    pca_fit_max: int = 10000
    n_iter: int = 500  # after openTSNE's 250 early-exaggeration iterations
    n_jobs: int = 2
    k_neighbors: int = 10  # neighbours that model a spectrum (LINE, BROAD) and for MAP_Z
    group_fraction: float = 0.02  # KNN averages over this share of the map: groups smaller are outliers
    outlier_z: float = 4.0  # KNN z-score above which a spectrum is an outlier
    residual_z: float = 7.0  # LINE / BROAD z-score above which a spectrum is an outlier
    inner_factor: float = 3.0
    inner_distance: float | None = None  # absolute map distance; overrides inner_factor
    min_snr_inner_check: float = 30.0  # S/N split for the inner-set report
