"""`map`: the similarity-map stage: read SETS.h5, fit a `SimilarityMap`, write MAP.h5 and the outlier list."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from astropy.table import Table

from ..io.atomic import atomic_path
from ..labels import DEFAULT_LABELS
from ..similarity import MapSettings, SimilarityMap

log = logging.getLogger(__name__)


def map(sets_path, out, perplexity: float = 30.0, seed: int = 0, inner_distance: float | None = None,
        settings: MapSettings | None = None, csv: bool = True, progress: bool = True) -> SimilarityMap:
    """Build the similarity map of every spectrum in SETS.h5 and write MAP.h5 (+ outliers CSV)."""
    from ..io.dataset import Dataset

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
    log.info("reading %d spectra from %s", len(ds), ds.path.name)
    flux = ds.read()
    m = SimilarityMap.fit(flux, np.asarray(cat["SET"]) == "train", s, table, progress=progress)
    m.wavelength = ds.wavelength
    m.save(out)
    if csv:
        write_outlier_csv(m, Path(out).with_name(Path(out).stem + "_outliers.csv"))
    log.info(m.format_summary())
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
