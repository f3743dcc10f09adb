"""Figures of the validation analyses (paper Figs. 13–18) as `matplotlib.figure.Figure` objects.

No pyplot and no backend switch: each function builds a Figure (rendered by the Agg canvas on
save) from a `starlabel.validation` result; `save` writes it as PNG atomically.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from .common import no_data as _no_data
from .common import pretty as _pretty
from .common import save  # noqa: F401  (stages.validate saves through this module)

INNER, OUTER = "#1f77b4", "#d62728"
POP_COLOURS = {"thin": "#1f77b4", "thick": "#d62728", "noise": "#bbbbbb", "other": "#9467bd", "all": "#555555"}
def _one_to_one(ax, x, y):
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.any():
        lo, hi = np.nanmin(np.r_[x[ok], y[ok]]), np.nanmax(np.r_[x[ok], y[ok]])
        pad = 0.05 * (hi - lo or 1)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="k", lw=0.8)


def benchmarks_figure(v) -> Figure:
    """Fig. 13: CNN (mean over repeats, error bar = repeat spread) against reference; outer in red."""
    t, s = v.table, v.summary
    names = list(dict.fromkeys(s["label"])) if len(s) else []
    fig = Figure(layout="constrained", figsize=(3.2 * max(1, len(names)), 3.2))
    axes = fig.subplots(1, max(1, len(names)), squeeze=False)[0]
    if not names:
        _no_data(axes[0], "no benchmark spectra")
        return fig
    inner = np.asarray(t["INNER"], bool)
    for ax, n in zip(axes, names):
        x, y = np.asarray(t[f"{n}_REF"], float), np.asarray(t[f"{n}_CNN"], float)
        yerr = np.nan_to_num(np.asarray(t[f"{n}_REPEAT_STD"], float))
        xerr = np.nan_to_num(np.asarray(t[f"E_{n}_REF"], float))
        for m, c, lab in ((inner, INNER, "inner"), (~inner, OUTER, "outer")):
            if m.any():
                ax.errorbar(x[m], y[m], xerr=xerr[m], yerr=yerr[m], fmt="o", ms=4, color=c, lw=0.8, label=lab)
        _one_to_one(ax, x, y)
        row = s[(s["label"] == n) & (s["group"] == "all")]
        if len(row):
            ax.set_title(f"{_pretty(n)}: bias {row['bias'][0]:.3g}, σ {row['scatter'][0]:.3g}", fontsize=8)
        ax.set_xlabel(f"reference {_pretty(n)}")
        ax.set_ylabel(f"CNN {_pretty(n)}")
    axes[0].legend(fontsize=7)
    return fig


def seismic_figure(v) -> Figure:
    """Fig. 14: catalogue and CNN log g against seismic log g, with residuals."""
    t, s = v.table, v.summary
    fig = Figure(layout="constrained", figsize=(7, 5))
    axes = fig.subplots(2, 2, sharex="col", gridspec_kw={"height_ratios": (3, 1)})
    x = np.asarray(t["LOGG_SEIS"], float)
    for k, (src, col) in enumerate((("catalogue", "LOGG_CAT"), ("cnn", "LOGG_CNN"))):
        y = np.asarray(t[col], float)
        ax, ar = axes[0, k], axes[1, k]
        if not np.isfinite(y).any():
            _no_data(ax)
            continue
        ax.scatter(x, y, s=6, color=INNER if src == "cnn" else "k", alpha=0.6)
        _one_to_one(ax, x, y)
        r = s[s["source"] == src]
        ax.set_title(f"{src}: n {r['n'][0]}, bias {r['bias'][0]:.3f}, σ {r['scatter'][0]:.3f}\n"
                     f"residual slope {r['residual_slope'][0]:+.3f} ± {r['residual_slope_err'][0]:.3f}", fontsize=8)
        ax.set_ylabel(f"{src} log g")
        ar.scatter(x, y - x, s=5, color="grey")
        ar.axhline(0, color="k", lw=0.8)
        ar.set_xlabel("seismic log g")
        ar.set_ylabel("Δ")
    return fig


def clusters_figure(v, labels=None) -> Figure:
    """Fig. 15: [Mg/Fe] and [Al/Fe] vs [Fe/H], catalogue (left) and CNN (right), members coloured by cluster."""
    t = v.table
    fig = Figure(layout="constrained", figsize=(8, 6.5))
    axes = fig.subplots(2, 2, sharex=True, sharey="row")
    names = list(dict.fromkeys(t["CLUSTER"]))
    cmap = {c: f"C{i % 10}" for i, c in enumerate(names)}
    for col, suf, title in ((0, "CAT", "catalogue"), (1, "CNN", "CNN")):
        for row, el in enumerate(("MG_FE", "AL_FE")):
            ax = axes[row, col]
            if labels is not None and f"{el}_CNN" in labels.colnames and suf == "CNN":
                ax.scatter(labels["FE_H_CNN"], labels[f"{el}_CNN"], s=1, color="#dddddd", rasterized=True)
            for c in names:
                m = np.asarray(t["CLUSTER"]) == c
                ax.scatter(t[f"FE_H_{suf}"][m], t[f"{el}_{suf}"][m], s=8, color=cmap[c], label=c)
            ax.set_ylabel(_pretty(el))
            if row == 0:
                ax.set_title(title)
            if row == 1:
                ax.set_xlabel("[Fe/H]")
    if names:
        axes[0, 1].legend(fontsize=6, markerscale=1.5)
    else:
        _no_data(axes[0, 0], "no cluster members")
    return fig


def mgal_figure(v) -> Figure:
    """Fig. 16: the Mg–Al anticorrelation per cluster, CNN (colour) and catalogue (black)."""
    t, s = v.table, v.summary
    names = [str(c) for c in s["cluster"] if c in set(t["CLUSTER"])]
    ncol = min(4, max(1, len(names)))
    nrow = max(1, -(-len(names) // ncol))
    fig = Figure(layout="constrained", figsize=(3 * ncol, 2.8 * nrow))
    axes = fig.subplots(nrow, ncol, squeeze=False).ravel()
    for ax, (i, c) in zip(axes, enumerate(names)):
        m = np.asarray(t["CLUSTER"]) == c
        ax.scatter(t["MG_FE_CAT"][m], t["AL_FE_CAT"][m], s=6, color="k", label="catalogue")
        ax.scatter(t["MG_FE_CNN"][m], t["AL_FE_CNN"][m], s=8, color=f"C{i % 10}", label="CNN")
        r = s[s["cluster"] == c][0]
        ax.set_title(f"{c} (n={r['n_members']}): ρ CNN {r['rho_cnn']:+.2f}, cat {r['rho_catalogue']:+.2f}", fontsize=7)
        ax.set_xlabel("[Mg/Fe]")
        ax.set_ylabel("[Al/Fe]")
    for ax in axes[len(names):]:
        ax.set_visible(False) if names else _no_data(ax, "no cluster members")
    if names:
        axes[0].legend(fontsize=6)
    return fig


def discs_figure(v) -> Figure:
    """Fig. 17: CNN [Mg/Fe] vs [Fe/H] density of the low-S/N inner + outer sample (top), and the clean
    sample with the HDBSCAN populations (bottom)."""
    t, s = v.table, v.summary
    fig = Figure(layout="constrained", figsize=(9, 7))
    axes = fig.subplots(2, 2)
    samples = list(dict.fromkeys(s["sample"]))
    for row, sample in enumerate(samples[::-1][:2]):  # low S/N first, as the paper's top panel
        m = np.asarray(t["SAMPLE"]) == sample
        x, y = np.asarray(t["FE_H_CNN"][m], float), np.asarray(t["MG_FE_CNN"][m], float)
        ax = axes[row, 0]
        if m.sum() > 1:
            ax.hist2d(x, y, bins=50, cmap="viridis", cmin=1)
        else:
            _no_data(ax)
        r = s[s["sample"] == sample][0]
        ax.set_title(f"{sample}: n {r['n_sample']}, unassigned {r['unassigned_fraction']:.0%}", fontsize=8)
        ax2 = axes[row, 1]
        pops = np.asarray(t["POPULATION"][m])
        for p in ("noise", "other", "thin", "thick"):
            k = pops == p
            if k.any():
                ax2.scatter(x[k], y[k], s=3, color=POP_COLOURS[p], label=f"{p} ({k.sum()})")
        purity = f", purity {r['purity']:.1%}" if "purity" in s.colnames and np.isfinite(r["purity"]) else ""
        ax2.set_title(f"HDBSCAN populations{purity}", fontsize=8)
        ax2.legend(fontsize=6, markerscale=3)
        for a in (ax, ax2):
            a.set_xlabel("[Fe/H] (CNN)")
            a.set_ylabel("[Mg/Fe] (CNN)")
    return fig


def orbits_figure(v) -> Figure:
    """Fig. 18: eccentricity against CNN [Fe/H] per population with the linear fits."""
    t, s = v.table, v.summary
    fig = Figure(layout="constrained", figsize=(6, 4.2))
    ax = fig.subplots()
    for r in s:
        p = str(r["population"])
        m = np.asarray(t["POPULATION"]) == p
        c = POP_COLOURS.get(p, "k")
        ax.scatter(t["FE_H_CNN"][m], t["ECC"][m], s=4, color=c, alpha=0.5)
        if np.isfinite(r["slope_ecc_feh"]):
            xx = np.linspace(np.nanmin(t["FE_H_CNN"][m]), np.nanmax(t["FE_H_CNN"][m]), 10)
            ax.plot(xx, r["intercept"] + r["slope_ecc_feh"] * xx, color=c, lw=2,
                    label=f"{p}: Δe/Δ[Fe/H] = {r['slope_ecc_feh']:+.2f} ± {r['slope_err']:.2f}, "
                          f"⟨e⟩ {r['ecc_mean']:.2f}")
    if not len(s):
        _no_data(ax)
    ax.set_xlabel("[Fe/H] (CNN)")
    ax.set_ylabel("eccentricity (galpy, MWPotential2014, 5 Gyr)")
    ax.legend(fontsize=7)
    return fig


def ages_figure(v, labels=None) -> Figure:
    """Turn-off selection in the CNN Kiel diagram and the age distribution per population."""
    t, s = v.table, v.summary
    fig = Figure(layout="constrained", figsize=(9, 3.8))
    a1, a2 = fig.subplots(1, 2)
    if labels is not None and {"TEFF_CNN", "LOGG_CNN"} <= set(labels.colnames):
        a1.scatter(labels["TEFF_CNN"], labels["LOGG_CNN"], s=1, color="#cccccc", rasterized=True)
    for p in dict.fromkeys(t["POPULATION"]):
        m = np.asarray(t["POPULATION"]) == p
        c = POP_COLOURS.get(str(p), "k")
        a1.scatter(t["TEFF_CNN"][m], t["LOGG_CNN"][m], s=5, color=c)
        a2.hist(np.asarray(t["AGE"][m], float), bins=np.arange(0, 14.5, 0.75), histtype="step", color=c,
                label=f"{p}: ⟨age⟩ {np.nanmean(t['AGE'][m]):.1f} Gyr (n={m.sum()})")
    a1.invert_xaxis()
    a1.invert_yaxis()
    a1.set_xlabel("Teff (CNN) [K]")
    a1.set_ylabel("log g (CNN)")
    a1.set_title("turn-off selection", fontsize=8)
    a2.set_xlabel("age [Gyr]")
    a2.legend(fontsize=7)
    if not len(s):
        _no_data(a2)
    return fig


def observed_figure(v) -> Figure:
    """Scatter of CNN − truth per observed subgroup and label (inner/outer)."""
    s = v.summary
    labels_ = list(dict.fromkeys(s["label"]))
    fig = Figure(layout="constrained", figsize=(3 * max(1, len(labels_)), 4))
    axes = fig.subplots(1, max(1, len(labels_)), squeeze=False)[0]
    for ax, n in zip(axes, labels_):
        groups = list(dict.fromkeys(s["group"]))
        for k, (region, c) in enumerate((("inner", INNER), ("outer", OUTER), ("all", "k"))):
            r = s[(s["label"] == n) & (s["region"] == region)]
            if len(r):
                ypos = [groups.index(g) + 0.25 * (k - 1) for g in r["group"]]
                ax.barh(ypos, r["scatter_truth"], height=0.25, color=c, label=region)
        ax.set_yticks(range(len(groups)))
        ax.set_yticklabels(groups if ax is axes[0] else [""] * len(groups), fontsize=6)
        ax.set_title(f"scatter CNN − truth: {_pretty(n)}", fontsize=8)
    axes[0].legend(fontsize=6)
    return fig


FIGURES = {"benchmarks": (benchmarks_figure,), "seismic": (seismic_figure,), "clusters": (clusters_figure, mgal_figure),
           "discs": (discs_figure,), "orbits": (orbits_figure,), "ages": (ages_figure,), "observed": (observed_figure,)}
