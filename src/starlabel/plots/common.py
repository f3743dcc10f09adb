"""What every figure shares: Figure objects without pyplot (no global state, no backend switch on
import), atomic PNG writing, label names and colours."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..io.atomic import atomic_path
from ..labels import PRETTY, UNITS

GROUP_COLOURS = {"inner_snr_ge30": "#7fc8f8", "inner_snr_lt30": "#1f4e96", "outer": "#d62728",
                 "observed": "#555555", "train": "#2ca02c", "test": "#ff7f0e"}
LINE_COLOURS = {"Mg": "#1f77b4", "Al": "#d62728", "Fe": "#7f7f7f", "Ca": "#2ca02c", "Ni": "#9467bd",
                "Cr": "#ff7f0e", "Si": "#8c564b", "Ti": "#e377c2"}




def subplots(nrows=1, ncols=1, figsize=None, **kw):
    """(Figure, axes) like pyplot.subplots, but a plain Figure that no global registry keeps alive."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **kw)


def pretty(name: str) -> str:
    return PRETTY.get(name, name)


def axis_label(name: str) -> str:
    unit = UNITS.get(name)
    return f"{pretty(name)} [{unit}]" if unit and unit != "dex" else pretty(name)


DPI = 110  # tests lower it: drawing dominates their run time


def save(fig, path, dpi=None) -> Path:
    """Write `fig` as PNG atomically and close it; bbox_inches='tight' stands in for tight_layout
    (one layout pass instead of two: figures are a large part of evaluate's run time)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi or DPI, bbox_inches="tight")
    return path


def no_data(ax, text="no data"):
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="grey")


def density(ax, x, y, bins=60, extent=None):
    """2-D histogram with a linear colour scale (brighter = denser, as in the paper)."""
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 2:
        no_data(ax)
        return
    ax.hist2d(x[ok], y[ok], bins=bins, range=extent, cmap="viridis", cmin=1)


# ---------------------------------------------------------------- Figs. 8 and 9
