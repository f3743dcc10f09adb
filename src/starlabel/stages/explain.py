"""Gradient sensitivity maps: where in the spectrum each label is read from (paper Sect. 4.4).

∂label/∂flux is taken by autograd for every label and pixel, in physical label
units (network-space gradients times the LabelSet scale), averaged over a set of
spectra — signed (the paper's Fig. 11) and as mean |∂label/∂flux| (no
cancellation between stars). The strongest narrow peaks of each label's map are
matched to the line list, so one can check that [Mg/Fe] is read from Mg lines.

EXPLAIN.h5 layout:
    /wavelength (P,)         air Å
    /mean_flux (P,)          average input spectrum
    /signed (M, L, P)        per kept model: mean ∂label/∂flux
    /absolute (M, L, P)      per kept model: mean |∂label/∂flux|
    /ensemble_signed (L, P)  same for the ensemble-mean prediction
    /ensemble_absolute (L, P)
    /lines                   table: label, peak_wavelength, strength, signed, prominence, width,
                             species, line_wavelength, offset
    attrs: labels (JSON), grid (JSON), n_spectra, which, model_dir, sets, starlabel_version, created
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import h5py
import numpy as np
from astropy.table import Table
from scipy.signal import find_peaks

from ..grid import Grid
from ..io.atomic import atomic_path
from ..io.dataset import read_table, stamp, write_table
from ..io.linelist import PAPER_LINES, label_element, read_linelist
from ..io.tables import write_csv

log = logging.getLogger(__name__)

LINE_COLUMNS = ("label", "peak_wavelength", "strength", "species", "line_wavelength", "offset")



@dataclass
class GradientMaps:
    """Averaged gradients of one ensemble over one set of spectra (see module docstring)."""

    wavelength: np.ndarray
    labels: tuple[str, ...]
    signed: np.ndarray
    absolute: np.ndarray
    ensemble_signed: np.ndarray
    ensemble_absolute: np.ndarray
    mean_flux: np.ndarray
    n_spectra: int
    grid: Grid | None = None
    lines: Table | None = None
    meta: dict = field(default_factory=dict)

    def label_index(self, name: str) -> int:
        return list(self.labels).index(name)

    def save(self, path) -> Path:
        path = Path(path)
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
            for key in ("wavelength", "mean_flux", "signed", "absolute", "ensemble_signed", "ensemble_absolute"):
                f.create_dataset(key, data=np.asarray(getattr(self, key), dtype="f8" if key == "wavelength" else "f4"))
            if self.lines is not None:
                write_table(f, "lines", self.lines)
            f.attrs["labels"] = json.dumps(list(self.labels))
            f.attrs["grid"] = self.grid.to_json() if self.grid is not None else ""
            f.attrs["n_spectra"] = int(self.n_spectra)
            for k, v in self.meta.items():
                f.attrs[k] = v if isinstance(v, (int, float, str)) else json.dumps(v, default=str)
            stamp(f)
        return path

    @classmethod
    def load(cls, path) -> "GradientMaps":
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"gradient maps {path} do not exist (run `starlabel explain`)")
        with h5py.File(path, "r") as f:
            arrays = {k: f[k][...] for k in ("wavelength", "mean_flux", "signed", "absolute",
                                             "ensemble_signed", "ensemble_absolute")}
            lines = None
            if "lines" in f:
                lines = read_table(f, "lines")
            grid_json = f.attrs.get("grid", "")
            meta = {k: f.attrs[k] for k in f.attrs if k not in ("labels", "grid", "n_spectra")}
            return cls(labels=tuple(json.loads(f.attrs["labels"])), n_spectra=int(f.attrs["n_spectra"]),
                       grid=Grid.from_json(grid_json) if grid_json else None, lines=lines, meta=meta, **arrays)


# ---------------------------------------------------------------- gradients

def gradient_maps(networks, labels, chunks, wavelength, grid=None, progress=True, excluded=None) -> GradientMaps:
    """Average gradients of every network and of the ensemble mean over the spectra in `chunks`.

    `labels` is the bundle's LabelSet; `chunks` yields flux arrays (n, P). Memory is
    bounded by one chunk's (n, L, P) gradients plus the running sums. `excluded`: the bundle's excluded
    pixels (`Ensemble.excluded`), set to 1.0 as in prediction; their gradients are 0.
    """
    from tqdm.auto import tqdm

    from ..exclusion import blanked
    from ..model.network import per_spectrum_gradients

    networks = list(networks)
    if not networks:
        raise ValueError("no networks to explain (the bundle keeps no runs?)")
    for net in networks:
        net.eval()
    m, n_lab, p = len(networks), len(labels.names), len(wavelength)
    signed = np.zeros((m, n_lab, p))
    absolute = np.zeros((m, n_lab, p))
    ens_signed = np.zeros((n_lab, p))
    ens_abs = np.zeros((n_lab, p))
    flux_sum = np.zeros(p)
    n = 0
    for flux in tqdm(chunks, desc="gradients", unit="chunk", disable=not progress):
        if len(flux) == 0:
            continue
        ens = np.zeros((len(flux), n_lab, p), np.float32)
        if excluded is not None:  # as Ensemble does: the networks' gradients and the mean flux see 1.0 there
            flux = blanked(flux, excluded)
        for k, net in enumerate(networks):
            g = per_spectrum_gradients(net, flux, labels.scale, excluded)
            signed[k] += g.sum(0)
            absolute[k] += np.abs(g).sum(0)
            ens += g / m
        ens_signed += ens.sum(0)
        ens_abs += np.abs(ens).sum(0)
        flux_sum += np.asarray(flux, dtype=float).sum(0)
        n += len(flux)
    if n == 0:
        raise ValueError("no spectra to explain: the chosen set is empty")
    return GradientMaps(np.asarray(wavelength, float), tuple(labels.names), signed / n, absolute / n,
                        ens_signed / n, ens_abs / n, flux_sum / n, n, grid)


# ---------------------------------------------------------------- line identification

def find_gradient_peaks(wavelength, signal, grid=None, n_peaks=10, min_prominence=5.0, max_width=1.0,
                        min_separation=0.5):
    """Strongest narrow peaks of a non-negative gradient map.

    Each setup is searched separately (no peak across the gap between setups).
    A peak must stand `min_prominence` robust noise levels (1.4826 × MAD) above its
    surroundings and be at most `max_width` Å wide at half prominence, so broad
    features (continuum slopes, Ca II wings) are not mistaken for lines. Peaks closer than
    `min_separation` Å are one line (a real network's map is jagged within a line); the
    stronger is kept.
    Returns a Table (peak_wavelength, strength, prominence, width, index) sorted by strength.
    """
    wavelength = np.asarray(wavelength, float)
    signal = np.asarray(signal, float)
    segments = list(grid.slices().values()) if grid is not None else [slice(0, len(signal))]
    rows = []
    for sl in segments:
        s, w = signal[sl], wavelength[sl]
        if len(s) < 5:
            continue
        step = float(np.median(np.diff(w)))
        noise = 1.4826 * np.median(np.abs(s - np.median(s)))
        noise = noise if noise > 0 else max(float(np.std(s)), 1e-30)
        idx, props = find_peaks(s, prominence=min_prominence * noise, width=(None, max_width / step),
                                distance=max(1.0, min_separation / step))
        for i, prom, width in zip(idx, props["prominences"], props["widths"]):
            rows.append((w[i], s[i], prom, width * step, i + sl.start))
    t = Table(rows=rows or None, names=("peak_wavelength", "strength", "prominence", "width", "index"),
              dtype=(float, float, float, float, int))
    t.sort("strength", reverse=True)
    return t[:n_peaks]


def match_lines(peak_wavelengths, linelist: Table | None, element: str | None = None, tolerance=1.0):
    """(species, line_wavelength, offset) for each peak: the nearest line within `tolerance` Å.

    Lines of the label's own `element` are preferred when one lies within the
    tolerance (blends are common at R ~ 17 000; the label's element is the likely
    reader). No line within the tolerance gives ('', nan, nan).
    """
    out = []
    if linelist is None or len(linelist) == 0:
        return [("", np.nan, np.nan) for _ in peak_wavelengths]
    lw = np.asarray(linelist["WAVELENGTH"], float)
    species = np.asarray(linelist["SPECIES"]).astype(str)
    elements = (np.asarray(linelist["ELEMENT"]).astype(str) if "ELEMENT" in linelist.colnames
                else np.array([s.split()[0] for s in species]))
    for w in peak_wavelengths:
        d = lw - w
        near = np.flatnonzero(np.abs(d) <= tolerance)
        if len(near) == 0:
            out.append(("", np.nan, np.nan))
            continue
        own = near[elements[near] == element] if element else near[:0]
        pool = own if len(own) else near
        j = pool[np.argmin(np.abs(d[pool]))]
        out.append((species[j], lw[j], w - lw[j]))
    return out


def identify_lines(maps: GradientMaps, linelist: Table | None = None, n_peaks=10, tolerance=1.0,
                   min_prominence=5.0, max_width=1.0) -> Table:
    """Top peaks of each label's ensemble mean |gradient|, matched to the line list."""
    rows = []
    for li, name in enumerate(maps.labels):
        peaks = find_gradient_peaks(maps.wavelength, maps.ensemble_absolute[li], maps.grid, n_peaks,
                                    min_prominence, max_width)
        matches = match_lines(peaks["peak_wavelength"], linelist, label_element(name), tolerance)
        for pk, (sp, lw, off) in zip(peaks, matches):
            rows.append((name, round(pk["peak_wavelength"], 3), pk["strength"], maps.ensemble_signed[li, pk["index"]],
                         pk["prominence"], round(pk["width"], 3), sp, lw, round(off, 3)))
    return Table(rows=rows or None,
                 names=LINE_COLUMNS[:3] + ("signed", "prominence", "width") + LINE_COLUMNS[3:],
                 dtype=(str, float, float, float, float, float, str, float, float))


def expected_line_check(lines: Table, n_top=None, tolerance=0.5) -> Table:
    """Does the network read Mg and Al from the lines GES used (paper Sect. 4.4)?

    For each Mg or Al label, the `n_top` strongest peaks (default: 2 for Mg, 1 for Al) and
    their distance to the nearest line of PAPER_LINES for that element; ok = within `tolerance` Å.
    """
    n_top = n_top or {"Mg": 2, "Al": 1}
    rows = []
    for name in dict.fromkeys(np.asarray(lines["label"]).astype(str)):
        el = label_element(name)
        if el not in n_top:
            continue
        ref = np.asarray(PAPER_LINES[f"{el} I"])
        for rank, row in enumerate(lines[lines["label"] == name][: n_top[el]], start=1):
            j = int(np.argmin(np.abs(ref - row["peak_wavelength"])))
            d = float(row["peak_wavelength"] - ref[j])
            rows.append((name, rank, float(row["peak_wavelength"]), float(ref[j]), round(d, 3), abs(d) <= tolerance))
    return Table(rows=rows or None, names=("label", "rank", "peak_wavelength", "expected_line", "distance", "ok"),
                 dtype=(str, int, float, float, float, bool))


def default_linelist() -> Table | None:
    """The synth package's line list, or None (with a warning) when it cannot be read."""
    try:
        return read_linelist()
    except Exception as e:  # the line list is an aid; gradients are still worth writing
        log.warning("no line list (%s); gradient peaks are written without line identification", e)
        return None


# ---------------------------------------------------------------- the stage

def choose_rows(sets, model_dir, which="test", n_max=None, seed=0) -> np.ndarray:
    """Row indices of SETS.h5 to explain: the bundle's 'test' or 'train' split, 'training' (both),
    'observed', or 'all'; a random `n_max` of them (seeded) when given."""
    cnames = np.asarray(sets.catalogue["CNAME"]).astype(str)
    if which in ("test", "train"):
        from ..model.bundle import Bundle

        split = Bundle(model_dir).split()
        if split is None:
            raise FileNotFoundError(f"{Path(model_dir) / 'split.json'} missing: cannot pick the {which} set")
        wanted = np.isin(cnames, np.asarray(split[which]).astype(str))
        if "SET" in sets.catalogue.colnames:  # a star may also have observed-set spectra
            wanted &= np.asarray(sets.catalogue["SET"]).astype(str) == "train"
        rows = np.flatnonzero(wanted)
    elif which == "training":
        rows = sets.rows(SET="train")
    elif which == "observed":
        rows = sets.rows(SET="observed")
    elif which == "all":
        rows = np.arange(len(sets))
    else:
        raise ValueError(f"which={which!r}: expected test, train, training, observed or all")
    if n_max is not None and len(rows) > n_max:
        rows = np.sort(np.random.default_rng(seed).choice(rows, n_max, replace=False))
    return rows


def _check_grid(ens_grid, sets, model_dir, sets_path):
    if ens_grid is not None and ens_grid.to_json() != sets.grid.to_json():
        raise ValueError(f"grid of {sets_path} does not match the grid of bundle {model_dir}")


def explain(model_dir, sets_path, out, which="test", n_max=1000, chunk=64, seed=0,
            linelist: Table | None = None, n_peaks=10, tolerance=1.0, figure=True, progress=True) -> GradientMaps:
    """Write EXPLAIN.h5 and beside it `lines.csv`, `line_check.csv` (are Mg/Al labels read from
    the GES Mg/Al lines?) and `gradients.png` (Fig. 11); return the maps."""
    from ..io.dataset import Dataset
    from ..model.ensemble import Ensemble

    ens = Ensemble.load(model_dir)
    sets = Dataset(sets_path)
    _check_grid(getattr(ens, "grid", None), sets, model_dir, sets_path)
    rows = choose_rows(sets, model_dir, which, n_max, seed)
    log.info("explaining %d %s spectra with %d networks", len(rows), which, len(ens.networks))
    chunks = (flux for _, flux in sets.iter_chunks(chunk, rows=rows))
    maps = gradient_maps(ens.networks, ens.labels, chunks, sets.grid.wavelength, sets.grid, progress, ens.excluded)
    maps.lines = identify_lines(maps, linelist if linelist is not None else default_linelist(), n_peaks, tolerance)
    maps.meta = {"which": which, "model_dir": str(model_dir), "sets": str(sets_path), "seed": seed}
    out = Path(out)
    maps.save(out)
    write_csv(maps.lines[list(LINE_COLUMNS)], out.with_name("lines.csv"))
    write_csv(expected_line_check(maps.lines), out.with_name("line_check.csv"))
    if figure:
        from ..plots.gradients import gradient_figure

        gradient_figure(maps, out.with_name("gradients.png"))
    return maps


# ---------------------------------------------------------------- Fig. 12: label correlations

def gradient_correlation(maps: GradientMaps, case: str = "", use="signed") -> Table:
    """Pearson correlation of the ensemble gradient maps between every pair of labels."""
    data = maps.ensemble_signed if use == "signed" else maps.ensemble_absolute
    rows = []
    for a, b in combinations(range(len(maps.labels)), 2):
        r = float(np.corrcoef(data[a], data[b])[0, 1])
        rows.append((case, maps.labels[a], maps.labels[b], r))
    return Table(rows=rows or None, names=("case", "label_a", "label_b", "correlation"),
                 dtype=(str, str, str, float))


def label_correlation_experiment(absolute_dir, relative_dir, sets_path, out_dir, which="test", n_max=1000,
                                 chunk=64, seed=0, progress=True) -> Table:
    """Sect. 4.4: gradient-map correlations of a bundle trained on A(Mg), A(Al), A(Fe) and one on
    [Mg/Fe], [Al/Fe], [Fe/H], explained on the same spectra. Writes correlation.csv,
    correlation.txt (a readable table), absolute/ and relative/ (each an explain output) and
    gradients_correlated.png (the Fig. 12 window) in `out_dir`."""
    out_dir = Path(out_dir)
    tables, maps_by_case = [], {}
    for case, model_dir in (("absolute", absolute_dir), ("relative", relative_dir)):
        maps = explain(model_dir, sets_path, out_dir / case / "explain.h5", which, n_max, chunk, seed,
                       figure=False, progress=progress)
        maps_by_case[case] = maps
        tables.append(gradient_correlation(maps, case))
    from astropy.table import vstack

    table = vstack(tables)
    write_csv(table, out_dir / "correlation.csv")
    with atomic_path(out_dir / "correlation.txt") as tmp:
        tmp.write_text(format_correlation(table) + "\n")
    from ..plots.gradients import correlated_gradients_figure

    correlated_gradients_figure(maps_by_case, out_dir / "gradients_correlated.png")
    return table


def format_correlation(table: Table) -> str:
    lines = [f"{'case':<10} {'label pair':<16} {'r':>7}"]
    for row in table:
        lines.append(f"{row['case']:<10} {row['label_a'] + '–' + row['label_b']:<16} {row['correlation']:7.3f}")
    return "\n".join(lines)
