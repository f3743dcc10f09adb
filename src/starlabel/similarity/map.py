"""`SimilarityMap`: a t-SNE map of spectra that knows its outliers and training area and places new
spectra onto itself; `MapSettings`: everything that shapes it (see the package docstring for the method)."""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from astropy.table import Table
from scipy.spatial import cKDTree

from ..io.atomic import atomic_path
from ..io.dataset import stamp
from ..labels import DEFAULT_LABELS
from .scores import (SCORES, calibrate, drop_self, k_outlier, log10_floor,
                     residual_scores, zscore)
from .settings import MapSettings
from .tsne import ReferenceAffinities

log = logging.getLogger(__name__)


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
            progress: bool = False) -> "SimilarityMap":
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
        log.info("PCA: %d components explain %.1f%% of the variance", n_comp,
                 100 * pca.explained_variance_ratio_.sum())
        # One exact kNN search in PCA space serves both the KNN score and t-SNE's affinities
        # (exact is faster than Annoy at 50 dimensions and makes the map independent of n_jobs).
        perplexity = min(s.perplexity, (n - 1) / 3)
        k_out = k_outlier(n, s)
        k = min(n - 1, max(int(3 * perplexity), s.k_neighbors, k_out))
        dist, nbr = NearestNeighbors(n_neighbors=k + 1, n_jobs=s.n_jobs).fit(coords).kneighbors(coords)
        dist, nbr = drop_self(dist, nbr)
        knn = dist[:, :k_out].mean(axis=1)
        k_tsne = min(n - 1, int(3 * perplexity))
        sigma, line, broad = np.empty(n), np.empty(n), np.empty(n)
        for i in range(0, n, 2048):
            sl = slice(i, i + 2048)
            like = np.median(coords[nbr[sl, : s.k_neighbors]], axis=1)
            sigma[sl], line[sl], broad[sl] = residual_scores(flux[sl], mean, comps, like)
        log.info("t-SNE of %d spectra (perplexity %g, seed %d)", n, perplexity, s.seed)
        aff = affinity.PerplexityBasedNN(perplexity=perplexity, n_jobs=s.n_jobs,
                                         knn_index=nearest_neighbors.PrecomputedNeighbors(nbr[:, :k_tsne], dist[:, :k_tsne]))
        init = initialization.pca(coords.astype(np.float64), random_state=s.seed)
        from tqdm.auto import tqdm

        every = 25
        with tqdm(total=250 + s.n_iter, desc="t-SNE", unit="iter", disable=not progress) as bar:
            tsne = TSNE(perplexity=perplexity, n_iter=s.n_iter, **_gradient_params(n), n_jobs=s.n_jobs,
                        random_state=s.seed, callbacks=lambda *a: bar.update(every) and False,
                        callbacks_every_iters=every)
            emb = np.asarray(tsne.fit(affinities=aff, initialization=init))
        emb -= (emb.max(0) + emb.min(0)) / 2  # openTSNE's transform centres the map the same way

        table = Table() if table is None else Table(table, copy=True)
        table["SET"] = np.where(is_train, "train", "observed") if "SET" not in table.colnames else table["SET"]
        table["X"], table["Y"] = emb[:, 0], emb[:, 1]
        table["SIGMA"] = sigma
        raw = {"LINE": line, "BROAD": broad, "KNN": knn}
        ls = log10_floor(sigma)
        calibration = {}
        for name, score in raw.items():
            calibration[name] = calibrate(ls, log10_floor(score))
            table[f"{name}_SCORE"] = score
            table[f"{name}_Z"] = zscore(ls, log10_floor(score), calibration[name])
        outlier, reason = _decide(table, s)
        table["OUTLIER"], table["REASON"] = outlier, reason
        map_knn = cKDTree(emb).query(emb, k=min(s.k_neighbors + 1, n))[0][:, 1:].mean(axis=1)
        table["MAP_Z"] = zscore(ls, log10_floor(map_knn), calibrate(ls, log10_floor(map_knn)))

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

        aff = ReferenceAffinities(self.coords, self.settings.perplexity, self.settings.n_jobs)
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
        k_out = k_outlier(len(self.coords), s)
        k = min(max(s.k_neighbors, k_out), len(self.coords))
        dist, nbr = NearestNeighbors(n_neighbors=k, n_jobs=s.n_jobs).fit(self.coords).kneighbors(coords)
        knn = dist[:, :k_out].mean(axis=1)
        like = np.median(self.coords[nbr[:, : s.k_neighbors]], axis=1)
        sigma, line, broad = residual_scores(flux, self.pca_mean, self.pca_components, like)
        t = Table({"SIGMA": sigma})
        ls = log10_floor(sigma)
        for name, score in {"LINE": line, "BROAD": broad, "KNN": knn}.items():
            t[f"{name}_SCORE"] = score
            t[f"{name}_Z"] = zscore(ls, log10_floor(score), self.calibration[name])
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
        from ..io.dataset import write_table

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
        from ..io.dataset import read_table

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
