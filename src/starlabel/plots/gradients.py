"""Gradient sensitivity figures (paper Figs. 11, 12): where each label is read from, with the lines marked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.lines import Line2D

from ..io.linelist import PAPER_LINES, label_element
from .common import LINE_COLOURS, no_data, pretty, save, subplots

def _marked_lines(lines_table, lo, hi):
    marks = {(sp, w) for sp, ws in PAPER_LINES.items() for w in ws if lo <= w <= hi}
    if lines_table is not None and len(lines_table):
        for row in lines_table:
            if row["species"] and lo <= row["line_wavelength"] <= hi:
                marks.add((str(row["species"]), float(row["line_wavelength"])))
    return sorted(marks, key=lambda m: m[1])


def gradient_figure(maps, out, labels=None, use="signed") -> Path:
    """Gradient of every label vs wavelength, one panel per setup, the average spectrum on top
    (grey) and line markers coloured by element (paper Fig. 11). Each label's curve is scaled
    by its largest |gradient| over the whole grid (printed beside it), so the two setups share
    one scale per label, as in the paper."""
    labels = list(labels or maps.labels)
    data = maps.ensemble_signed if use == "signed" else maps.ensemble_absolute
    segments = maps.grid.slices() if maps.grid is not None else {"": slice(0, len(maps.wavelength))}
    n = len(labels)
    fig, axes = subplots(len(segments), 1, figsize=(14, (0.6 * (n + 2) + 1) * len(segments)), squeeze=False)
    peaks = {name: float(np.max(np.abs(data[maps.label_index(name)]))) or 1.0 for name in labels}
    f = maps.mean_flux
    f_lo, f_hi = float(np.min(f)), float(np.max(f))
    for ax, (seg, sl) in zip(axes[:, 0], segments.items()):
        w = maps.wavelength[sl]
        ax.plot(w, n - 0.3 + 0.9 * (f[sl] - f_lo) / ((f_hi - f_lo) or 1.0), color="0.55", lw=0.7)
        for k, name in enumerate(labels):
            y0 = n - 1 - k
            ax.plot(w, y0 + 0.45 * data[maps.label_index(name), sl] / peaks[name], color="k", lw=0.6)
            ax.text(w[0], y0 + 0.2, f" {pretty(name)} (×{peaks[name]:.2g})", fontsize=8, va="bottom")
        marks = _marked_lines(maps.lines, w[0], w[-1])
        for sp, lw in marks:
            ax.axvline(lw, color=LINE_COLOURS.get(sp.split()[0], "c"), lw=0.6, alpha=0.6)
        handles = {sp: Line2D([], [], color=LINE_COLOURS.get(sp.split()[0], "c")) for sp, _ in marks}
        if handles:
            ax.legend(handles.values(), handles.keys(), fontsize=7, ncol=min(len(handles), 10), loc="lower right",
                      bbox_to_anchor=(1.0, 1.0), frameon=False)
        ax.set_xlim(w[0], w[-1])
        ax.set_ylim(-0.7, n + 0.7)
        ax.set_yticks([])
        ax.set_title(f"{seg}: ∂label/∂flux ({use}, ensemble mean over {maps.n_spectra} spectra)", fontsize=9,
                     loc="left")
        ax.set_xlabel("air wavelength [Å]")
    fig.subplots_adjust(hspace=0.35)
    return save(fig, out)


def correlated_gradients_figure(maps_by_case: dict, out, window=(8700.0, 8820.0)) -> Path:
    """Signed gradients of each case's abundance labels in an HR21 window with two Mg and one
    Al line (paper Fig. 12): near-identical curves mean the labels share their evidence."""
    fig, axes = subplots(len(maps_by_case), 1, figsize=(10, 2.8 * len(maps_by_case)), squeeze=False)
    for ax, (case, maps) in zip(axes[:, 0], maps_by_case.items()):
        sel = (maps.wavelength >= window[0]) & (maps.wavelength <= window[1])
        if not sel.any():
            no_data(ax, "window outside grid")
            continue
        for name in maps.labels:
            if label_element(name) is None:
                continue
            g = maps.ensemble_signed[maps.label_index(name), sel]
            ax.plot(maps.wavelength[sel], g / (np.max(np.abs(g)) or 1.0), lw=0.8, label=pretty(name))
        for sp, lw in _marked_lines(None, *window):
            ax.axvline(lw, color=LINE_COLOURS.get(sp.split()[0], "c"), lw=0.7, ls=":")
        ax.set_title(f"{case} labels", fontsize=10)
        ax.set_ylabel("∂label/∂flux (normalised)")
        ax.legend(fontsize=8)
    axes[-1, 0].set_xlabel("air wavelength [Å]")
    fig.subplots_adjust(wspace=0.35, hspace=0.45)
    return save(fig, out)
