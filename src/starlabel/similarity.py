"""Similarity maps (paper Sects. 2.1 and 2.3): a t-SNE map of all spectra, outliers, inner/outer sets.

How the map is made
    Spectra are reduced to `n_components` (50) principal components (scikit-learn PCA, fitted on
    at most `pca_fit_max` randomly chosen spectra, which is plenty for a 50-dimensional basis),
    then embedded in 2-D with openTSNE (PCA initialisation, one seed; FFT-accelerated gradients
    from 10 000 spectra up, Barnes-Hut below, where it is faster). The neighbours t-SNE needs come
    from one exact kNN search in PCA space that the outlier scores share (faster than Annoy at 50
    dimensions, and the map does not depend on the thread count). The paper ran sklearn's exact
    t-SNE on raw pixels; PCA first is the standard speed-up and keeps the neighbourhoods.

Outliers: "unlike any other spectrum of the same quality"
    Three scores per spectrum, all measured in spectrum space so that they also work for new
    spectra that are only placed onto the map:

    - KNN: mean distance in PCA space to the nearest `group_fraction` (2 %) of the map's spectra
      (at least 10). Defects the PCA basis represents -- wrong normalisation, fast rotation,
      emission lines when there are many of them -- put a spectrum far from every normal star.
      Averaging over 2 % of the map rather than a handful of neighbours matters: like defects
      clump together (the mock survey's fast rotators form their own island in the map), and a
      clump smaller than 2 % of the survey is still far from the bulk.
    - LINE: the strongest narrow feature (3-pixel running median, then a 7-pixel boxcar: spikes
      narrower than the instrumental profile are cosmic residue that `prepare` handles) in the
      residual about the spectrum's look-alikes (the median PCA coordinates of its 10 nearest
      neighbours), in units of its noise. Emission lines and distorted line cores outside the
      PCA basis live here.
    - BROAD: the rms of the same residual smoothed over 151 pixels (≈ 9-15 Å), in noise units:
      continuum (normalisation) errors outside the PCA basis.

    The noise σ of each spectrum is estimated from its own residual (robust, from pixel-to-pixel
    differences), so no catalogue S/N is needed. Every score depends on S/N, so each log-score is
    turned into a robust z-score *relative to spectra of similar noise*: the median and MAD of the
    log-score in noise-quantile bins (≈ 80 spectra each, up to 25), interpolated in log σ.
    A spectrum is an outlier when KNN_Z > `outlier_z` (4) or LINE_Z or BROAD_Z > `residual_z` (7);
    REASON names the scores that fired. The calibration is stored in MAP.h5, so new spectra are
    judged on exactly the same scale. Tuned on two mock surveys (seeds 1 and 2, ~2 800 spectra,
    3.7-4.4 % pathological): 99 % and 96 % of the pathological spectra flagged, 1.4 % and 1.2 %
    of the others (mostly spectra with left-over cosmics or at the edge of the label space).

    The map itself is checked alongside: MAP_Z is the same kind of z-score for the mean distance
    to the 10 nearest points in the 2-D map. It goes into the table for inspection but does not
    decide, because a clump of like outliers is *dense* in the map, because t-SNE distances
    between clusters mean little, and because a placed-later spectrum has no honest map density.

Inner / outer (Sect. 2.3)
    An observed spectrum is *inner* when its distance in the map to the nearest training spectrum
    (outliers excluded) is at most `inner_distance`, and it is not an outlier; otherwise *outer*.
    By default `inner_distance` = `inner_factor` (3) × the median distance from a training spectrum
    to its nearest other training spectrum: a few typical spacings of the training cloud, so the
    inner set covers the same area as the training set, as in the paper's Fig. 4. Give an absolute
    `inner_distance` to override.

Placing new spectra without recomputing the map (beyond the paper)
    MAP.h5 stores the PCA basis (components, mean), every map spectrum's PCA coordinates and its
    map position -- plain arrays, no pickle. `SimilarityMap.load` rebuilds an openTSNE
    `TSNEEmbedding` around the stored positions with a small affinity object (`_ReferenceAffinities`)
    whose `to_new` finds the nearest reference spectra in PCA space with scikit-learn and turns
    their distances into t-SNE affinities with openTSNE's own `joint_probabilities_nn`; openTSNE's
    `TSNEEmbedding.transform` then optimises only the new points against the fixed map.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import scipy.sparse as sp
from astropy.table import Table
from scipy.ndimage import uniform_filter1d
from scipy.spatial import cKDTree

from .io.atomic import atomic_path
from .io.dataset import stamp
from .labels import DEFAULT_LABELS

log = logging.getLogger(__name__)

SCORES = ("LINE", "BROAD", "KNN")
NARROW_PIXELS = 7
BROAD_PIXELS = 151


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


# --------------------------------------------------------------------------- scores
def _residual_scores(flux, mean, components, like):
    """(sigma, LINE, BROAD) from each spectrum's residual about its look-alikes.

    `like` holds, per spectrum, the median PCA coordinates of its nearest neighbours: the model
    is what its neighbours look like, not its own projection, so a defect that the PCA basis
    happens to absorb (a few outliers can own a component in a small sample) still shows.
    """
    resid = np.asarray(flux, np.float32) - mean - np.asarray(like, np.float32) @ components
    sigma = 1.4826 * np.median(np.abs(np.diff(resid, axis=1)), axis=1) / np.sqrt(2.0)
    sigma = np.maximum(sigma, 1e-6)
    # a 3-pixel running median first: unresolved spikes (cosmic residue, repaired pixels) are
    # narrower than the instrumental profile and are prepare's business, not an outlier's
    narrow = uniform_filter1d(_median3(resid), NARROW_PIXELS, axis=1, mode="nearest")
    line = np.abs(narrow).max(axis=1) * np.sqrt(NARROW_PIXELS) / sigma
    broad = uniform_filter1d(resid, BROAD_PIXELS, axis=1, mode="nearest")
    broad = np.sqrt(np.mean(broad**2, axis=1) * BROAD_PIXELS) / sigma
    return sigma, line, broad


def _k_outlier(n, s):
    """Neighbours averaged by the KNN score: `group_fraction` of the map (at least k_neighbors, at
    most 1000), so that a clump of like defects (a few dozen emission-line stars or fast rotators
    in a 3 000-spectrum survey) is still far from its k-th neighbour."""
    return int(np.clip(round(s.group_fraction * n), s.k_neighbors, min(1000, n - 1)))


def _median3(x):
    """Running median of 3 along rows (ends kept): min/max arithmetic, 30x faster than scipy's median_filter."""
    a, b, c = x[:, :-2], x[:, 1:-1], x[:, 2:]
    out = x.copy()
    out[:, 1:-1] = np.maximum(np.minimum(a, b), np.minimum(np.maximum(a, b), c))
    return out


def _drop_self(dist, nbr):
    """Remove each point from its own neighbour list (ties with duplicates make it not always column 0)."""
    n, k1 = nbr.shape
    is_self = nbr == np.arange(n)[:, None]
    is_self[~is_self.any(axis=1), -1] = True  # self not found among ties: drop the farthest instead
    keep = ~is_self
    return dist[keep].reshape(n, k1 - 1), nbr[keep].reshape(n, k1 - 1)


def _calibrate(log_sigma, log_score, n_bins=None):
    """Median and robust spread of log_score in noise-quantile bins (about 80 spectra a bin, at most 25 bins)."""
    n = len(log_sigma)
    n_bins = n_bins or int(np.clip(n // 80, 1, 25))
    edges = np.quantile(log_sigma, np.linspace(0, 1, n_bins + 1))
    which = np.clip(np.searchsorted(edges, log_sigma, side="right") - 1, 0, n_bins - 1)
    centre, med, scale = [], [], []
    for b in range(n_bins):
        s = log_score[which == b]
        if len(s) == 0:
            continue
        m = np.median(s)
        centre.append(np.median(log_sigma[which == b]))
        med.append(m)
        scale.append(max(1.4826 * np.median(np.abs(s - m)), 1e-3))
    return np.array([centre, med, scale])


def _zscore(log_sigma, log_score, cal):
    centre, med, scale = cal
    return (log_score - np.interp(log_sigma, centre, med)) / np.interp(log_sigma, centre, scale)


def _log(x):
    return np.log10(np.maximum(x, 1e-12))


# --------------------------------------------------------------------------- placing new points
class _ReferenceAffinities:
    """Minimal openTSNE affinity object for placing new points onto a stored map.

    openTSNE's `TSNEEmbedding.transform` only needs `P` (for its shape check) and `to_new`, so the
    reference kNN structure is rebuilt from stored PCA coordinates instead of unpickling Annoy.
    """

    def __init__(self, reference, perplexity, n_jobs=1):
        from sklearn.neighbors import NearestNeighbors

        self.reference = reference
        self.perplexity = perplexity
        self.n_jobs = n_jobs
        self.P = sp.csr_matrix((len(reference), len(reference)))
        self._nn = NearestNeighbors(n_jobs=n_jobs).fit(reference)

    @property
    def n_samples(self):
        return len(self.reference)

    def to_new(self, data, perplexity=None, return_distances=False, k_neighbors="auto"):
        from openTSNE.affinity import joint_probabilities_nn

        perplexity = perplexity or self.perplexity
        k = min(self.n_samples, int(3 * perplexity)) if k_neighbors == "auto" else k_neighbors
        perplexity = min(perplexity, k / 3)
        distances, neighbors = self._nn.kneighbors(data, n_neighbors=k)
        P = joint_probabilities_nn(neighbors, distances, [perplexity], symmetrize=False,
                                   normalization="point-wise", n_reference_samples=self.n_samples,
                                   n_jobs=self.n_jobs)
        return (P, neighbors, distances) if return_distances else P


# --------------------------------------------------------------------------- the map
@dataclass
class SimilarityMap:
    """A t-SNE map that knows its spectra, outliers and training area, and can place new spectra.

    Arrays are per map spectrum, in the order of `table` (which holds CNAME, SET, ROW, X, Y,
    INNER, OUTLIER, scores, z-scores, REASON and any catalogue labels).
    """

    table: Table
    embedding: np.ndarray  # (N, 2), centred
    coords: np.ndarray  # (N, n_components) PCA coordinates: the reference points for transform
    pca_mean: np.ndarray  # (P,)
    pca_components: np.ndarray  # (n_components, P)
    calibration: dict  # score name -> (3, n_bins) array: bin centre log σ, median, scale
    inner_distance: float
    settings: MapSettings
    wavelength: np.ndarray | None = None

    # ---- building
    @classmethod
    def fit(cls, flux, is_train, settings: MapSettings | None = None, table: Table | None = None,
            echo=lambda *a: None) -> "SimilarityMap":
        """Build the map from an (N, P) flux array; `is_train` marks the training spectra."""
        from openTSNE import TSNE, affinity, initialization, nearest_neighbors
        from sklearn.decomposition import PCA
        from sklearn.neighbors import NearestNeighbors

        s = settings or MapSettings()
        flux = np.asarray(flux, np.float32)
        is_train = np.asarray(is_train, bool)
        n = len(flux)
        if n < 10:
            raise ValueError(f"a similarity map needs at least 10 spectra, got {n}")
        rng = np.random.default_rng(s.seed)
        n_comp = min(s.n_components, n - 1, flux.shape[1])
        fit_rows = np.sort(rng.choice(n, min(n, s.pca_fit_max), replace=False))
        pca = PCA(n_components=n_comp, svd_solver="randomized", random_state=s.seed).fit(flux[fit_rows])
        mean = pca.mean_.astype(np.float32)
        comps = pca.components_.astype(np.float32)
        coords = np.empty((n, n_comp), np.float32)
        for i in range(0, n, 4096):
            coords[i:i + 4096] = (flux[i:i + 4096] - mean) @ comps.T
        echo(f"PCA: {n_comp} components explain {pca.explained_variance_ratio_.sum():.1%} of the variance")
        # One exact kNN search in PCA space serves both the KNN score and t-SNE's affinities
        # (exact is faster than Annoy at 50 dimensions and makes the map independent of n_jobs).
        perplexity = min(s.perplexity, (n - 1) / 3)
        k_out = _k_outlier(n, s)
        k = min(n - 1, max(int(3 * perplexity), s.k_neighbors, k_out))
        dist, nbr = NearestNeighbors(n_neighbors=k + 1, n_jobs=s.n_jobs).fit(coords).kneighbors(coords)
        dist, nbr = _drop_self(dist, nbr)
        knn = dist[:, :k_out].mean(axis=1)
        k_tsne = min(n - 1, int(3 * perplexity))
        sigma, line, broad = np.empty(n), np.empty(n), np.empty(n)
        for i in range(0, n, 2048):
            sl = slice(i, i + 2048)
            like = np.median(coords[nbr[sl, : s.k_neighbors]], axis=1)
            sigma[sl], line[sl], broad[sl] = _residual_scores(flux[sl], mean, comps, like)
        echo(f"t-SNE of {n} spectra (perplexity {perplexity:g}, seed {s.seed})")
        aff = affinity.PerplexityBasedNN(perplexity=perplexity, n_jobs=s.n_jobs,
                                         knn_index=nearest_neighbors.PrecomputedNeighbors(nbr[:, :k_tsne], dist[:, :k_tsne]))
        init = initialization.pca(coords.astype(np.float64), random_state=s.seed)
        tsne = TSNE(perplexity=perplexity, n_iter=s.n_iter, **_gradient_params(n),
                    n_jobs=s.n_jobs, random_state=s.seed)
        emb = np.asarray(tsne.fit(affinities=aff, initialization=init))
        emb -= (emb.max(0) + emb.min(0)) / 2  # openTSNE's transform centres the map the same way

        table = Table() if table is None else Table(table, copy=True)
        table["SET"] = np.where(is_train, "train", "observed") if "SET" not in table.colnames else table["SET"]
        table["X"], table["Y"] = emb[:, 0], emb[:, 1]
        table["SIGMA"] = sigma
        raw = {"LINE": line, "BROAD": broad, "KNN": knn}
        ls = _log(sigma)
        calibration = {}
        for name, score in raw.items():
            calibration[name] = _calibrate(ls, _log(score))
            table[f"{name}_SCORE"] = score
            table[f"{name}_Z"] = _zscore(ls, _log(score), calibration[name])
        outlier, reason = _decide(table, s)
        table["OUTLIER"], table["REASON"] = outlier, reason
        map_knn = cKDTree(emb).query(emb, k=min(s.k_neighbors + 1, n))[0][:, 1:].mean(axis=1)
        table["MAP_Z"] = _zscore(ls, _log(map_knn), _calibrate(ls, _log(map_knn)))

        ref = is_train & ~outlier
        if not ref.any():
            raise ValueError("no training spectra left after outlier screening: cannot define the inner set")
        if s.inner_distance is not None:
            inner_d = float(s.inner_distance)
        else:
            tr = emb[ref]
            d, _ = cKDTree(tr).query(tr, k=2) if len(tr) > 1 else (np.zeros((1, 2)), None)
            inner_d = float(s.inner_factor * np.median(d[:, 1]))
        d_train, _ = cKDTree(emb[ref]).query(emb, k=1)
        table["TRAIN_DIST"] = d_train
        table["INNER"] = ~is_train & ~outlier & (d_train <= inner_d)
        return cls(table, emb, coords, mean, comps, calibration, inner_d, s)

    # ---- placing new spectra
    def _reference_embedding(self):
        from openTSNE import TSNEEmbedding

        aff = _ReferenceAffinities(self.coords, self.settings.perplexity, self.settings.n_jobs)
        return TSNEEmbedding(self.embedding.copy(), aff, **_gradient_params(len(self.embedding)),
                             n_jobs=self.settings.n_jobs, random_state=self.settings.seed)

    def project(self, flux) -> np.ndarray:
        """PCA coordinates of new spectra on this map's basis."""
        flux = np.atleast_2d(np.asarray(flux, np.float32))
        if flux.shape[1] != self.pca_mean.shape[0]:
            raise ValueError(f"spectra have {flux.shape[1]} pixels but the map was built on "
                             f"{self.pca_mean.shape[0]}: resample them onto the map's grid first")
        return (flux - self.pca_mean) @ self.pca_components.T

    def transform(self, flux, n_iter: int = 250) -> np.ndarray:
        """Map positions (M, 2) of new spectra; the map itself does not move (openTSNE transform)."""
        coords = self.project(flux)
        emb = self._reference_embedding()
        return np.asarray(emb.transform(coords.astype(np.float64), n_iter=n_iter))

    def scores(self, flux) -> Table:
        """Outlier scores, z-scores, OUTLIER and REASON for new spectra, on the map's calibration."""
        flux = np.atleast_2d(np.asarray(flux, np.float32))
        coords = self.project(flux)
        from sklearn.neighbors import NearestNeighbors

        s = self.settings
        k_out = _k_outlier(len(self.coords), s)
        k = min(max(s.k_neighbors, k_out), len(self.coords))
        dist, nbr = NearestNeighbors(n_neighbors=k, n_jobs=s.n_jobs).fit(self.coords).kneighbors(coords)
        knn = dist[:, :k_out].mean(axis=1)
        like = np.median(self.coords[nbr[:, : s.k_neighbors]], axis=1)
        sigma, line, broad = _residual_scores(flux, self.pca_mean, self.pca_components, like)
        t = Table({"SIGMA": sigma})
        ls = _log(sigma)
        for name, score in {"LINE": line, "BROAD": broad, "KNN": knn}.items():
            t[f"{name}_SCORE"] = score
            t[f"{name}_Z"] = _zscore(ls, _log(score), self.calibration[name])
        t["OUTLIER"], t["REASON"] = _decide(t, self.settings)
        return t

    def flag(self, flux, positions=None) -> dict:
        """{"INNER": bool (M,), "OUTLIER": bool (M,), "X", "Y", "TRAIN_DIST"} for new spectra.

        INNER uses the same rule as for the map's observed set: placed within `inner_distance`
        of a (non-outlier) training spectrum, and not an outlier itself.
        """
        flux = np.atleast_2d(np.asarray(flux, np.float32))
        pos = self.transform(flux) if positions is None else np.asarray(positions)
        outlier = np.asarray(self.scores(flux)["OUTLIER"], bool)
        ref = (np.asarray(self.table["SET"]) == "train") & ~np.asarray(self.table["OUTLIER"], bool)
        d, _ = cKDTree(self.embedding[ref]).query(pos, k=1)
        return {"INNER": (d <= self.inner_distance) & ~outlier, "OUTLIER": outlier,
                "X": pos[:, 0], "Y": pos[:, 1], "TRAIN_DIST": d}

    # ---- summaries
    @property
    def outliers(self) -> Table:
        cols = [c for c in ("ROW", "CNAME", "SET", "SNR") if c in self.table.colnames]
        cols += [f"{s}_{k}" for s in SCORES for k in ("SCORE", "Z")] + ["MAP_Z", "REASON"]
        return self.table[np.asarray(self.table["OUTLIER"], bool)][cols]

    def training_limits(self, labels=DEFAULT_LABELS) -> dict:
        """{label: (min, max)} over the non-outlier training spectra (labels present only)."""
        ref = (np.asarray(self.table["SET"]) == "train") & ~np.asarray(self.table["OUTLIER"], bool)
        out = {}
        for name in labels:
            if name in self.table.colnames:
                v = np.asarray(self.table[name], float)[ref]
                v = v[np.isfinite(v)]
                if len(v):
                    out[name] = (float(v.min()), float(v.max()))
        return out

    def out_of_limits(self, labels=DEFAULT_LABELS) -> np.ndarray:
        """True where any catalogue label lies outside the training limits (NaN labels don't count)."""
        bad = np.zeros(len(self.table), bool)
        for name, (lo, hi) in self.training_limits(labels).items():
            v = np.asarray(self.table[name], float)
            with np.errstate(invalid="ignore"):
                bad |= (v < lo) | (v > hi)
        return bad

    def summary(self, labels=DEFAULT_LABELS) -> dict:
        """Counts, and the share of observed spectra with labels outside the training limits."""
        t = self.table
        train = np.asarray(t["SET"]) == "train"
        outlier = np.asarray(t["OUTLIER"], bool)
        inner = np.asarray(t["INNER"], bool)
        observed = ~train
        outer = observed & ~inner
        res = {"n": len(t), "n_train": int(train.sum()), "n_observed": int(observed.sum()),
               "n_outliers": int(outlier.sum()), "n_outliers_train": int((outlier & train).sum()),
               "n_inner": int(inner.sum()), "n_outer": int(outer.sum()),
               "inner_distance": self.inner_distance}
        if "SNR" in t.colnames:
            res["n_inner_hisnr"] = int((inner & (np.asarray(t["SNR"], float) >= self.settings.min_snr_inner_check)).sum())
        limits = self.training_limits(labels)
        if limits:
            bad = self.out_of_limits(labels)
            known = np.ones(len(t), bool)
            for name in limits:
                known &= np.isfinite(np.asarray(t[name], float))
            sets = {"observed": observed, "inner": inner, "outer": outer}
            if "SNR" in t.colnames:
                sets["inner_hisnr"] = inner & (np.asarray(t["SNR"], float) >= self.settings.min_snr_inner_check)
            res["out_of_limits"] = {k: (float(bad[m & known].mean()) if (m & known).any() else float("nan"))
                                    for k, m in sets.items()}
        return res

    def format_summary(self, labels=DEFAULT_LABELS) -> str:
        s = self.summary(labels)
        lines = [f"map: {s['n']} spectra ({s['n_train']} training, {s['n_observed']} observed)",
                 f"outliers: {s['n_outliers']} ({s['n_outliers_train']} in the training set)",
                 f"inner distance {s['inner_distance']:.3g}: inner {s['n_inner']}, outer {s['n_outer']}"
                 + (f"; inner with S/N >= {self.settings.min_snr_inner_check:g}: {s['n_inner_hisnr']}"
                    if "n_inner_hisnr" in s else "")]
        if "out_of_limits" in s:
            names = {"observed": "all observed", "inner": "inner", "inner_hisnr":
                     f"inner S/N >= {self.settings.min_snr_inner_check:g}", "outer": "outer"}
            lines.append("labels outside the training limits: " + ", ".join(
                f"{names[k]} {v:.1%}" for k, v in s["out_of_limits"].items()))
        return "\n".join(lines)

    # ---- storage (HDF5, no pickle)
    def save(self, path) -> Path:
        from .io.dataset import write_table

        path = Path(path)
        with atomic_path(path) as tmp:
            with h5py.File(tmp, "w") as f:
                f.create_dataset("embedding", data=self.embedding)
                f.create_dataset("pca_coords", data=self.coords)
                f.create_dataset("pca/mean", data=self.pca_mean)
                f.create_dataset("pca/components", data=self.pca_components)
                for name, cal in self.calibration.items():
                    f.create_dataset(f"calibration/{name}", data=cal)
                if self.wavelength is not None:
                    f.create_dataset("wavelength", data=self.wavelength)
                write_table(f, "catalogue", self.table)
                write_table(f, "outliers", self.outliers)
                f.attrs["settings"] = json.dumps(dataclasses.asdict(self.settings))
                f.attrs["inner_distance"] = self.inner_distance
                stamp(f)
                f.attrs["method"] = ("PCA -> openTSNE; new spectra placed by rebuilding a TSNEEmbedding "
                                     "from embedding + pca_coords (see starlabel.similarity)")
        return path

    @classmethod
    def load(cls, path) -> "SimilarityMap":
        from .io.dataset import read_table

        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"similarity map {path} does not exist")
        with h5py.File(path, "r") as f:
            missing = [k for k in ("embedding", "pca_coords", "pca/mean", "pca/components", "catalogue")
                       if k not in f]
            if missing:
                raise ValueError(f"{path} is not a starlabel similarity map: missing {missing}")
            settings = MapSettings(**json.loads(f.attrs["settings"]))
            return cls(read_table(f, "catalogue"), f["embedding"][...], f["pca_coords"][...],
                       f["pca/mean"][...], f["pca/components"][...],
                       {k: f["calibration"][k][...] for k in f["calibration"]},
                       float(f.attrs["inner_distance"]), settings,
                       f["wavelength"][...] if "wavelength" in f else None)


def _gradient_params(n):
    """FFT-accelerated gradients for survey-sized maps; Barnes-Hut below 10 000 points, where
    openTSNE's FFT grid costs more than it saves (its own "auto" rule). ints_in_interval=2 is a
    coarser FFT grid: 2-3x faster on large maps and visually identical."""
    if n >= 10000:
        return {"negative_gradient_method": "fft", "ints_in_interval": 2}
    return {"negative_gradient_method": "bh"}


def _decide(table, s: MapSettings):
    """OUTLIER where KNN_Z > outlier_z or LINE_Z / BROAD_Z > residual_z; REASON lists which fired."""
    limit = {"KNN": s.outlier_z, "LINE": s.residual_z, "BROAD": s.residual_z}
    fired = {name: np.asarray(table[f"{name}_Z"], float) > limit[name] for name in SCORES}
    outlier = np.any(list(fired.values()), axis=0)
    reason = np.array([",".join(n.lower() for n in SCORES if fired[n][i]) for i in range(len(table))], dtype="U20")
    return outlier, reason


# --------------------------------------------------------------------------- stage functions
def map_spectra(sets_path, out, perplexity: float = 30.0, seed: int = 0, inner_distance: float | None = None,
                settings: MapSettings | None = None, csv: bool = True, echo=print) -> SimilarityMap:
    """`starlabel map`: build the map of every spectrum in SETS.h5 and write MAP.h5 (+ outliers CSV)."""
    from .io.dataset import Dataset

    s = settings or MapSettings(perplexity=perplexity, seed=seed, inner_distance=inner_distance)
    ds = Dataset(sets_path)
    if "SET" not in ds.catalogue.colnames:
        raise KeyError(f"{ds.path} has no SET column: run `starlabel select` first")
    cat = ds.catalogue
    keep = [c for c in ("CNAME", "SET", "SNR", "GES_FLD") + tuple(DEFAULT_LABELS) if c in cat.colnames]
    table = Table(cat[keep], copy=True)
    for c in table.colnames:
        if getattr(table[c], "mask", None) is not None and table[c].dtype.kind == "f":
            table[c] = table[c].filled(np.nan)
    table.add_column(np.arange(len(cat)), name="ROW", index=0)
    echo(f"reading {len(ds)} spectra from {ds.path.name}")
    flux = ds.read()
    m = SimilarityMap.fit(flux, np.asarray(cat["SET"]) == "train", s, table, echo=echo)
    m.wavelength = ds.wavelength
    m.save(out)
    if csv:
        write_outlier_csv(m, Path(out).with_name(Path(out).stem + "_outliers.csv"))
    echo(m.format_summary())
    return m


def write_outlier_csv(m: SimilarityMap, path) -> Path:
    with atomic_path(path) as tmp:
        m.outliers.write(tmp, format="ascii.csv", overwrite=True)
    return Path(path)


def outlier_cnames(map_path) -> list[str]:
    """CNAMEs of the spectra flagged as outliers in MAP.h5 (used by `select --exclude-outliers`)."""
    t = SimilarityMap.load(map_path).table
    if "CNAME" not in t.colnames:
        raise KeyError(f"{map_path} has no CNAME column")
    return [str(c) for c in np.asarray(t["CNAME"])[np.asarray(t["OUTLIER"], bool)]]


def evaluate_inner_outer(labels_path, map_path, truth_path=None, labels=DEFAULT_LABELS,
                         min_snr: float = 30.0) -> Table:
    """Bias and scatter of the CNN labels per set (paper Fig. 9): inner S/N>=min_snr, inner S/N<min_snr, outer.

    `labels_path` is predict's LABELS.fits (CNAME, <LABEL>_CNN); references are the map's catalogue
    labels and, when `truth_path` (truth.fits with the same label names) is given, the truth.
    Bias = mean(CNN - reference), scatter = standard deviation of the same difference.
    """
    m = SimilarityMap.load(map_path)
    pred = Table.read(labels_path)
    mt = m.table
    cn = lambda t: np.char.strip(np.asarray(t["CNAME"]).astype(str))  # noqa: E731
    pos = {c: i for i, c in enumerate(cn(mt))}
    idx = np.array([pos.get(c, -1) for c in cn(pred)])
    ok = idx >= 0
    pred, idx = pred[ok], idx[ok]
    refs = {"catalogue": mt[idx]}
    if truth_path is not None:
        truth = Table.read(truth_path)
        tpos = {c: i for i, c in enumerate(cn(truth))}
        tidx = np.array([tpos.get(c, -1) for c in cn(pred)])
        tt = truth[np.maximum(tidx, 0)]
        refs["truth"] = tt
    snr = np.asarray(mt["SNR"], float)[idx] if "SNR" in mt.colnames else np.full(len(idx), np.nan)
    inner = np.asarray(mt["INNER"], bool)[idx]
    observed = np.asarray(mt["SET"])[idx] != "train"
    sets = {f"inner S/N>={min_snr:g}": inner & (snr >= min_snr),
            f"inner S/N<{min_snr:g}": inner & ~(snr >= min_snr),
            "outer": observed & ~inner}
    rows = []
    for ref_name, ref in refs.items():
        for label in labels:
            if f"{label}_CNN" not in pred.colnames or label not in ref.colnames:
                continue
            diff = np.asarray(pred[f"{label}_CNN"], float) - np.asarray(ref[label], float)
            if ref_name == "truth":
                diff[tidx < 0] = np.nan
            for set_name, sel in sets.items():
                d = diff[sel & np.isfinite(diff)]
                rows.append((set_name, ref_name, label, len(d),
                             float(d.mean()) if len(d) else np.nan, float(d.std()) if len(d) else np.nan))
    return Table(rows=rows, names=("SET", "REFERENCE", "LABEL", "N", "BIAS", "SCATTER"),
                 dtype=(str, str, str, int, float, float)) if rows else \
        Table(names=("SET", "REFERENCE", "LABEL", "N", "BIAS", "SCATTER"), dtype=(str, str, str, int, float, float))
