"""Similarity-map figures: the map coloured by labels (paper Fig. 1), training vs inner vs outer
(Fig. 4), and thumbnails of the flagged outlier spectra for inspection."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .common import save, subplots
from ..labels import PRETTY


def _point_size(n):
    return float(np.clip(3000 / max(n, 1), 0.5, 12))


def plot_map_labels(m, path, labels=("TEFF", "LOGG", "FE_H")) -> Path | None:
    """Fig. 1: the same map once per label, coloured by the catalogue value (grey where unknown)."""
    labels = [lab for lab in labels if lab in m.table.colnames]
    if not labels:
        return None
    x, y = m.embedding[:, 0], m.embedding[:, 1]
    s = _point_size(len(x))
    fig, axes = subplots(1, len(labels), figsize=(5.2 * len(labels), 4.8), squeeze=False)
    for ax, lab in zip(axes[0], labels):
        v = np.asarray(m.table[lab], float)
        ok = np.isfinite(v)
        ax.scatter(x[~ok], y[~ok], s=s, c="0.85", lw=0)
        order = np.argsort(v[ok]) if lab != "LOGG" else np.argsort(-v[ok])
        sc = ax.scatter(x[ok][order], y[ok][order], s=s, c=v[ok][order], cmap="viridis" if lab != "TEFF" else "plasma",
                        lw=0, rasterized=True)
        fig.colorbar(sc, ax=ax, label=PRETTY.get(lab, lab))
        ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle(f"t-SNE similarity map, perplexity {m.settings.perplexity:g}")
    return save(fig, path, dpi=120)


def plot_inner_outer(m, path) -> Path:
    """Fig. 4: all spectra with the training set; the inner observed set; the outer observed set."""
    t = m.table
    x, y = m.embedding[:, 0], m.embedding[:, 1]
    s = _point_size(len(x))
    train = np.asarray(t["SET"]) == "train"
    outlier = np.asarray(t["OUTLIER"], bool)
    inner = np.asarray(t["INNER"], bool)
    outer = ~train & ~inner
    fig, axes = subplots(1, 3, figsize=(15, 5), sharex=True, sharey=True)
    axes[0].scatter(x, y, s=s, c="#1f3b73", lw=0, label=f"all ({len(x)})", rasterized=True)
    axes[0].scatter(x[train], y[train], s=s, c="#2ca02c", lw=0, label=f"training ({train.sum()})", rasterized=True)
    axes[0].scatter(x[outlier], y[outlier], s=4 * s, marker="x", c="#d62728", lw=0.8,
                    label=f"outliers ({outlier.sum()})")
    for ax, sel, name, col in ((axes[1], inner, "inner observed", "#1f77b4"),
                               (axes[2], outer, "outer observed", "#d62728")):
        ax.scatter(x, y, s=s, c="0.9", lw=0, rasterized=True)
        ax.scatter(x[sel], y[sel], s=s, c=col, lw=0, label=f"{name} ({sel.sum()})", rasterized=True)
    for ax in axes:
        ax.legend(loc="upper right", fontsize=8, markerscale=3)
        ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle(f"inner: within {m.inner_distance:.3g} (map units) of a training spectrum")
    return save(fig, path, dpi=120)


def plot_outlier_thumbnails(m, read, wavelength, path, max_spectra: int = 24) -> Path | None:
    """Small plots of the flagged spectra (highest z first), each over the map's mean spectrum.

    `read(rows)` returns the flux of the given map rows (e.g. `Dataset.read`), so that only the
    plotted spectra are loaded.
    """
    t = m.table
    rows = np.flatnonzero(np.asarray(t["OUTLIER"], bool))
    if len(rows) == 0:
        return None
    zmax = np.max([np.asarray(t[f"{n}_Z"], float)[rows] for n in ("LINE", "BROAD", "KNN")], axis=0)
    rows = rows[np.argsort(-zmax)][:max_spectra]
    flux = read(np.asarray(t["ROW"])[rows] if "ROW" in t.colnames else rows)
    ncol = 4
    nrow = int(np.ceil(len(rows) / ncol))
    fig, axes = subplots(nrow, ncol, figsize=(4 * ncol, 1.9 * nrow), squeeze=False)
    wl = np.asarray(wavelength)
    xpix = np.arange(len(wl))  # plot against pixel so both setups share one panel without a gap
    for ax, r, f in zip(axes.ravel(), rows, flux):
        ax.plot(xpix, m.pca_mean, c="0.7", lw=0.4)
        ax.plot(xpix, f, c="k", lw=0.4)
        name = str(t["CNAME"][r]) if "CNAME" in t.colnames else f"row {r}"
        ax.set_title(f"{name} [{t['SET'][r]}] {t['REASON'][r]}", fontsize=7)
        ax.set_ylim(-0.1, 1.6)
        ax.set_xticks([]), ax.tick_params(labelsize=6)
    for ax in axes.ravel()[len(rows):]:
        ax.axis("off")
    fig.suptitle(f"flagged outliers ({len(rows)} of {int(np.sum(t['OUTLIER']))} shown; grey: mean spectrum; "
                 f"{wl[0]:.0f}-{wl[-1]:.0f} Å, pixels)", fontsize=9)
    return save(fig, path, dpi=110)


def write_map_figures(m, figures_dir, stem: str, read=None, wavelength=None) -> list[Path]:
    """All map figures as PNGs in `figures_dir` (thumbnails only with `read`); returns the paths written."""
    d = Path(figures_dir)
    d.mkdir(parents=True, exist_ok=True)
    out = [plot_map_labels(m, d / f"{stem}_labels.png"), plot_inner_outer(m, d / f"{stem}_inner_outer.png")]
    if read is not None and wavelength is not None:
        out.append(plot_outlier_thumbnails(m, read, wavelength, d / f"{stem}_outliers.png"))
    return [p for p in out if p is not None]
