"""The paper's diagnostic figures (3, 6–10) as PNG files; each function takes plain arrays/tables and a path."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

from ..evaluation.metrics import SUBSET_TITLES, bias_scatter, snr_bins
from .common import GROUP_COLOURS, axis_label, density, no_data, pretty, save, subplots

def one_to_one(columns: dict, labels, out, limits=None, reference_name="catalogue") -> Path:
    """Rows = labels, columns = subsets; each panel CNN vs reference with bias and scatter.

    `columns` maps a subset name to (ref (N, L), pred (N, L)). Values outside the
    training `limits` {label: (lo, hi)} are shaded (paper Fig. 9).
    """
    cols = list(columns)
    fig, axes = subplots(len(labels), max(len(cols), 1), figsize=(3.2 * max(len(cols), 1), 2.9 * len(labels)),
                             squeeze=False)
    for li, name in enumerate(labels):
        both = [np.concatenate([np.asarray(columns[c][k])[:, li] for c in cols]) for k in (0, 1)] if cols else []
        allv = np.concatenate(both) if cols else np.array([])
        allv = allv[np.isfinite(allv)]
        lo, hi = (np.percentile(allv, [0.5, 99.5]) if len(allv) else (0.0, 1.0))
        pad = 0.05 * (hi - lo or 1.0)
        lo, hi = lo - pad, hi + pad
        for ci, c in enumerate(cols):
            ax = axes[li, ci]
            ref, pred = np.asarray(columns[c][0])[:, li], np.asarray(columns[c][1])[:, li]
            density(ax, ref, pred, extent=[[lo, hi], [lo, hi]])
            ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
            if limits and name in limits and np.all(np.isfinite(limits[name])):
                a, b = limits[name]
                ax.axvspan(lo, a, color="grey", alpha=0.25, lw=0)
                ax.axvspan(b, hi, color="grey", alpha=0.25, lw=0)
            bias, scatter, n = bias_scatter(pred, ref)
            ax.text(0.04, 0.96, f"bias {bias:.3g}\nscatter {scatter:.3g}\nn = {n}", transform=ax.transAxes,
                    va="top", fontsize=8, bbox=dict(fc="white", alpha=0.7, lw=0))
            ax.set_xlim(lo, hi)
            ax.set_ylim(lo, hi)
            if li == 0:
                ax.set_title(SUBSET_TITLES.get(c, c), fontsize=10)
            ax.set_xlabel(f"{axis_label(name)} ({reference_name})", fontsize=8)
            ax.set_ylabel(f"{axis_label(name)} (CNN)", fontsize=8)
    if not cols:
        no_data(axes[0, 0], "no subsets")
    fig.subplots_adjust(wspace=0.35, hspace=0.45)
    return save(fig, out)


# ---------------------------------------------------------------- Fig. 6

def kiel_evolution(panels: dict, out, feh_range=None) -> Path:
    """Kiel diagrams side by side; `panels` maps a title to (teff, logg, feh) arrays (paper Fig. 6)."""
    n = max(len(panels), 1)
    fig, axes = subplots(1, n, figsize=(3.3 * n, 3.4), squeeze=False, sharex=True, sharey=True)
    feh_all = np.concatenate([np.asarray(v[2], float) for v in panels.values()]) if panels else np.array([])
    feh_all = feh_all[np.isfinite(feh_all)]
    vmin, vmax = feh_range or ((np.percentile(feh_all, [1, 99])) if len(feh_all) else (-1, 0.5))
    sc = None
    for ax, (title, (teff, logg, feh)) in zip(axes[0], panels.items()):
        sc = ax.scatter(teff, logg, c=feh, s=3, cmap="plasma", vmin=vmin, vmax=vmax, rasterized=True)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(axis_label("TEFF"))
    if panels:
        axes[0, 0].invert_xaxis()
        axes[0, 0].invert_yaxis()
    else:
        no_data(axes[0, 0])
    axes[0, 0].set_ylabel(axis_label("LOGG"))
    if sc is not None:
        fig.colorbar(sc, ax=axes[0, :].tolist(), label="[Fe/H]", shrink=0.9)
    return save(fig, out)


# ---------------------------------------------------------------- Fig. 7

def loss_curves(history: dict, out, kept=None) -> Path:
    """Training (solid) and test (dashed) loss per epoch for every run; discarded runs in grey."""
    fig, ax = subplots(figsize=(6.5, 4))
    cmap = matplotlib.colormaps["tab10"]
    for k, (run, h) in enumerate(sorted(history.items(), key=lambda kv: int(kv[0]))):
        keep = kept is None or int(run) in kept
        colour = cmap(k % 10) if keep else "0.7"
        tr, te = h.get("train_loss", []), h.get("test_loss", [])
        ax.plot(np.arange(1, len(tr) + 1), tr, "-", color=colour, lw=1.2, label=f"run {run}" + ("" if keep else " (dropped)"))
        ax.plot(np.arange(1, len(te) + 1), te, "--", color=colour, lw=1.2)
    if history:
        ax.set_yscale("log")
        ax.legend(fontsize=7, ncol=2, title="solid: training, dashed: test", title_fontsize=7)
    else:
        no_data(ax)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (network space)")
    return save(fig, out)


# ---------------------------------------------------------------- Fig. 10

def precision(values: dict, errors: dict, snr, groups: dict, labels, out, snr_start=10.0, snr_width=10.0) -> Path:
    """Ensemble std vs label value (left) and vs S/N with box plots in S/N bins (right).

    `values`/`errors` map label → CNN value / ensemble std arrays; `groups` maps a
    subset name to a boolean mask (inner S/N ≥ 30, inner S/N < 30, outer).
    """
    snr = np.asarray(snr, float)
    fig, axes = subplots(len(labels), 2, figsize=(10, 2.6 * len(labels)), squeeze=False)
    everyone = np.zeros(len(snr), bool)
    for m in groups.values():
        everyone |= np.asarray(m, bool)
    edges = snr_bins(snr[everyone], snr_start, snr_width) if everyone.any() else np.array([snr_start, snr_start + snr_width])
    for li, name in enumerate(labels):
        e, v = np.asarray(errors[name], float), np.asarray(values[name], float)
        for g, m in groups.items():
            m = np.asarray(m, bool)
            kw = dict(s=3, color=GROUP_COLOURS.get(g), label=SUBSET_TITLES.get(g, g), alpha=0.6, rasterized=True)
            axes[li, 0].scatter(v[m], e[m], **kw)
            axes[li, 1].scatter(snr[m], e[m], **kw)
        with np.errstate(invalid="ignore"):
            data = [e[everyone & (snr >= a) & (snr < b) & np.isfinite(e)] for a, b in zip(edges[:-1], edges[1:])]
        pos = 0.5 * (edges[:-1] + edges[1:])
        keep = [i for i, d in enumerate(data) if len(d)]
        if keep:
            axes[li, 1].boxplot([data[i] for i in keep], positions=pos[keep], widths=0.7 * snr_width,
                                showfliers=False, manage_ticks=False)
        axes[li, 0].set_xlabel(f"{axis_label(name)} (CNN)")
        axes[li, 1].set_xlabel("S/N")
        for ax in axes[li]:
            ax.set_ylabel(f"σ {pretty(name)}")
    if groups:
        axes[0, 0].legend(fontsize=7, markerscale=3)
    fig.subplots_adjust(wspace=0.35, hspace=0.45)
    return save(fig, out)


# ---------------------------------------------------------------- Fig. 3

def abundance_maps(columns: dict, out) -> Path:
    """[Mg/Fe] and [Al/Fe] against [Fe/H] density maps; `columns` maps a title to (feh, mgfe, alfe)."""
    n = max(len(columns), 1)
    fig, axes = subplots(2, n, figsize=(3.6 * n, 6), squeeze=False)
    for ci, (title, (feh, mgfe, alfe)) in enumerate(columns.items()):
        for ri, (y, name) in enumerate(((mgfe, "MG_FE"), (alfe, "AL_FE"))):
            ax = axes[ri, ci]
            density(ax, np.asarray(feh, float), np.asarray(y, float), bins=70)
            ax.set_xlabel("[Fe/H]")
            ax.set_ylabel(pretty(name))
            if ri == 0:
                ax.set_title(title, fontsize=10)
    if not columns:
        no_data(axes[0, 0])
    fig.subplots_adjust(wspace=0.35, hspace=0.45)
    return save(fig, out)


# ---------------------------------------------------------------- uncertainty calibration

def calibration(residuals: dict, out, title="") -> Path:
    """Histograms of (CNN − reference)/σ per label with the 1σ and 2σ bounds marked."""
    names = list(residuals)
    fig, axes = subplots(1, max(len(names), 1), figsize=(2.8 * max(len(names), 1), 2.8), squeeze=False)
    for ax, name in zip(axes[0], names):
        z = np.asarray(residuals[name], float)
        z = z[np.isfinite(z)]
        if len(z):
            ax.hist(np.clip(z, -6, 6), bins=48, range=(-6, 6), color="0.4")
            inside = [np.mean(np.abs(z) <= k) for k in (1, 2)]
            ax.set_title(f"{pretty(name)}\n≤1σ {inside[0]:.0%}, ≤2σ {inside[1]:.0%}", fontsize=9)
        else:
            no_data(ax)
        for k in (-2, -1, 1, 2):
            ax.axvline(k, color="r", lw=0.7, ls=":" if abs(k) == 2 else "-")
        ax.set_xlabel("(CNN − ref) / σ")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(wspace=0.35, hspace=0.45)
    return save(fig, out)


# ---------------------------------------------------------------- Fig. 11 and 12
