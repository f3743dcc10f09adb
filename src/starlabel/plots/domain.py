"""Domain-score figures (`predict --model-spectra`): one star's spectrum against the model at its labels,
and the DOMAIN_CHI2 distribution with the threshold.

    python -m starlabel.plots.domain run/labels_model.h5 run/sets.h5 run/domain [--cname CNAME]
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .common import no_data, save, subplots


def spectrum_figure(wave, flux, model, slices: dict, out, mask=None, title: str = "",
                    chi2: dict | None = None) -> Path:
    """Observed (black) and model (red) flux and the residual observed − model, one pair of panels per
    setup; masked pixels (mask ≠ 0) are greyed out in the residual."""
    flux, model = np.asarray(flux, float), np.asarray(model, float)
    masked = np.zeros(flux.shape, bool) if mask is None else np.asarray(mask) != 0
    fig, axes = subplots(2 * len(slices), 1, figsize=(13, 3.4 * len(slices)), squeeze=False,
                         gridspec_kw={"height_ratios": [2.2, 1] * len(slices)})
    for k, (name, sl) in enumerate(slices.items()):
        top, bottom = axes[2 * k, 0], axes[2 * k + 1, 0]
        w = wave[sl]
        top.plot(w, flux[sl], color="k", lw=0.6, label="observed")
        if np.isfinite(model[sl]).any():
            top.plot(w, model[sl], color="#d62728", lw=0.6, alpha=0.85, label="model")
        else:
            no_data(top, "no model (labels outside the engine's range or not covered)")
        c = (chi2 or {}).get(name)
        top.set_title(f"{name}" + (f": reduced χ² {c:.2f}" if c is not None and np.isfinite(c) else ""),
                      fontsize=9, loc="left")
        top.set_ylabel("normalised flux")
        top.legend(fontsize=7, loc="lower left", ncol=2, frameon=False)
        r = flux[sl] - model[sl]
        bottom.plot(w, np.where(masked[sl], np.nan, r), color="k", lw=0.5)
        if masked[sl].any():
            bottom.plot(w, np.where(masked[sl], r, np.nan), color="0.7", lw=0.5)
        bottom.axhline(0, color="#d62728", lw=0.6)
        bottom.set_ylabel("obs − model")
        for ax in (top, bottom):
            ax.set_xlim(w[0], w[-1])
        bottom.set_xlabel("air wavelength [Å]")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(hspace=0.45)
    return save(fig, out)


def chi2_histogram(chi2, threshold: float, out, groups: dict | None = None, title: str = "") -> Path:
    """Histogram of DOMAIN_CHI2 (log x) with the threshold; `groups` {name: boolean mask} are drawn
    as separate, stacked histograms (e.g. clean vs pathological mock stars)."""
    chi2 = np.asarray(chi2, float)
    fig, ax = subplots(figsize=(7, 4))
    ok = np.isfinite(chi2) & (chi2 > 0)
    if not ok.any():
        no_data(ax)
        return save(fig, out)
    lo, hi = np.log10(max(chi2[ok].min(), 1e-2)), np.log10(max(chi2[ok].max(), threshold * 2))
    bins = np.logspace(lo - 0.05, hi + 0.05, 50)
    groups = groups or {"all": np.ones(chi2.size, bool)}
    data = [np.clip(chi2[ok & np.asarray(g, bool)], bins[0], bins[-1]) for g in groups.values()]
    ax.hist(data, bins=bins, stacked=True, label=[f"{n} ({len(d)})" for n, d in zip(groups, data)])
    ax.axvline(threshold, color="k", ls="--", lw=1, label=f"threshold {threshold:g}")
    ax.set_xscale("log")
    ax.set_xlabel("DOMAIN_CHI2 (worst setup, reduced χ²)")
    ax.set_ylabel("spectra")
    frac = float(np.mean(~(chi2 <= threshold)))
    ax.set_title(title or f"{frac:.1%} of {chi2.size} spectra flagged (χ² > {threshold:g} or no model)",
                 fontsize=9, loc="left")
    ax.legend(fontsize=8, frameon=False)
    return save(fig, out)


def write_domain_figures(model_h5, dataset, out_dir, cname: str | None = None) -> dict[str, Path]:
    """spectrum_<CNAME>.png (the given star, else the one with the median DOMAIN_CHI2) and
    domain_chi2.png from a `predict --model-spectra` output and its dataset."""
    import h5py
    from astropy.table import Table

    from ..io.dataset import Dataset, read_table

    ds = dataset if isinstance(dataset, Dataset) else Dataset(dataset)
    with h5py.File(model_h5, "r") as h5:
        cat: Table = read_table(h5, "catalogue")
        threshold = float(h5.attrs["threshold"])
        engine = str(h5.attrs["engine"])
        names = np.asarray(cat["CNAME"]).astype(str)
        chi2 = np.asarray(cat["DOMAIN_CHI2"], float)
        if cname is None:
            ok = np.flatnonzero(np.isfinite(chi2))
            i = int(ok[np.argsort(chi2[ok])[len(ok) // 2]]) if ok.size else 0
        else:
            hits = np.flatnonzero(names == cname)
            if not hits.size:
                raise KeyError(f"{model_h5} has no star {cname!r}")
            i = int(hits[0])
        model = h5["flux"][i]
        labels = json.loads(h5.attrs["labels"])
    row = np.flatnonzero(np.asarray(ds.catalogue["CNAME"]).astype(str) == names[i])
    flux, mask = ds.read(row[:1], mask=True)
    slices = ds.grid.slices()
    per_setup = {s: float(cat[f"CHI2_{s}"][i]) for s in slices if f"CHI2_{s}" in cat.colnames}
    lab = ", ".join(f"{n} {float(cat[n][i]):.4g}" for n in labels if n in cat.colnames)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return {
        "spectrum": spectrum_figure(ds.wavelength, flux[0], model, slices, out_dir / f"spectrum_{names[i]}.png",
                                    mask[0], f"{names[i]} against the {engine} model at {lab}", per_setup),
        "histogram": chi2_histogram(chi2, threshold, out_dir / "domain_chi2.png"),
    }


def main(argv=None) -> int:
    """python -m starlabel.plots.domain LABELS_model.h5 DATASET.h5 OUT_DIR [--cname CNAME]"""
    import argparse

    p = argparse.ArgumentParser(prog="python -m starlabel.plots.domain",
                                description="figures of a `starlabel predict --model-spectra` output")
    p.add_argument("model_h5", help="the <labels stem>_model.h5 file predict wrote")
    p.add_argument("dataset", help="the dataset predict labelled")
    p.add_argument("out_dir")
    p.add_argument("--cname", help="the star to draw (default: the one with the median DOMAIN_CHI2)")
    a = p.parse_args(argv)
    for path in write_domain_figures(a.model_h5, a.dataset, a.out_dir, a.cname).values():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
