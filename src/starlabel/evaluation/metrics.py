"""Numbers behind the paper's diagnostics: bias, scatter, uncertainty calibration, precision vs S/N.

Everything works on one joined table (`join_run`): a row per spectrum of SETS.h5 with
its set membership (train / test / inner S/N ≥ 30 / inner S/N < 30 / outer), the
catalogue labels, the CNN labels and their ensemble std and, when given, the truth.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import h5py
import numpy as np
from astropy.table import Table

from ..io.dataset import read_table
from ..io.tables import index_of
from ..labels import float_column, float_column_at

SNR_SPLIT = 30.0
# Subsets in the paper's order (Figs. 8, 9, 10)
SUBSETS = ("train", "test", "inner_snr_ge30", "inner_snr_lt30", "outer")
SUBSET_TITLES = {"train": "training set", "test": "test set", "inner_snr_ge30": "inner, S/N ≥ 30",
                 "inner_snr_lt30": "inner, S/N < 30", "outer": "outer", "observed": "observed set"}


def bias_scatter(pred, ref) -> tuple[float, float, int]:
    """(mean, std, n) of pred − ref over the pairs where both are finite."""
    d = np.asarray(pred, float) - np.asarray(ref, float)
    d = d[np.isfinite(d)]
    if len(d) == 0:
        return np.nan, np.nan, 0
    return float(d.mean()), float(d.std()), len(d)


def within_sigma(pred, ref, sigma, k=1.0) -> float:
    """Fraction of finite pairs whose reference lies within k ensemble std of the prediction."""
    pred, ref, sigma = (np.asarray(a, float) for a in (pred, ref, sigma))
    ok = np.isfinite(pred) & np.isfinite(ref) & np.isfinite(sigma)
    if not ok.any():
        return np.nan
    return float(np.mean(np.abs(pred[ok] - ref[ok]) <= k * sigma[ok]))


def cnn_labels(labels_table: Table) -> list[str]:
    """Label names present in a LABELS.fits table (columns <LABEL>_CNN with E_<LABEL>_CNN)."""
    return [c[:-4] for c in labels_table.colnames
            if c.endswith("_CNN") and not c.startswith("E_")]


def _strings(col) -> np.ndarray:
    return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in np.asarray(col)]).astype(str)


def read_map_flags(path) -> Table:
    """CNAME, INNER, OUTER, OUTLIER per map spectrum from MAP.h5 (`starlabel map`).

    OUTER is every observed spectrum that is not INNER (outliers included), as in
    `starlabel.similarity`. Falls back to scanning the file for a table with those
    columns so that other map writers work too.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"similarity map {path} does not exist")
    try:
        from ..similarity import SimilarityMap

        t = SimilarityMap.load(path).table
    except (ImportError, ValueError, KeyError):
        t = _scan_h5_for_flags(path)
    cols = {c.upper(): c for c in t.colnames}
    if "CNAME" not in cols or not ({"INNER", "OUTER"} & set(cols)):
        raise ValueError(f"{path}: no CNAME and INNER/OUTER flags found (columns: {t.colnames})")
    out = Table({"CNAME": _strings(t[cols["CNAME"]])})
    inner = np.asarray(t[cols["INNER"]], bool) if "INNER" in cols else ~np.asarray(t[cols["OUTER"]], bool)
    observed = (_strings(t[cols["SET"]]) != "train") if "SET" in cols else np.ones(len(t), bool)
    out["INNER"] = inner
    out["OUTER"] = np.asarray(t[cols["OUTER"]], bool) if "OUTER" in cols else observed & ~inner
    out["OUTLIER"] = np.asarray(t[cols["OUTLIER"]], bool) if "OUTLIER" in cols else np.zeros(len(t), bool)
    return out


def _scan_h5_for_flags(path: Path) -> Table:
    with h5py.File(path, "r") as f:
        found: list[str] = []

        def visit(name, obj):
            names = {n.upper() for n in (obj.dtype.names or ())} if isinstance(obj, h5py.Dataset) else set()
            if "CNAME" in names and names & {"INNER", "OUTER"}:
                found.append(name)

        f.visititems(visit)
        if found:
            return read_table(f, found[0])
    raise ValueError(f"{path}: found no table with CNAME and INNER/OUTER columns")


def join_run(sets_catalogue: Table, labels_table: Table, split: dict | None = None, flags: Table | None = None,
             truth: Table | None = None) -> Table:
    """One row per SETS.h5 spectrum: SUBSET membership columns, <L>_REF, <L>_CNN, E_<L>_CNN, <L>_TRUE.

    LABELS.fits is matched by row when it has the same CNAMEs in the same order
    (repeat spectra keep their own predictions), otherwise on the first row per CNAME.
    """
    cat = sets_catalogue
    cname = _strings(cat["CNAME"])
    lab_cname = _strings(labels_table["CNAME"])
    idx = (np.arange(len(cname)) if len(lab_cname) == len(cname) and np.all(lab_cname == cname)
           else index_of(cname, lab_cname))
    out = Table({"CNAME": cname})
    out["SNR"] = float_column(cat, "SNR") if "SNR" in cat.colnames else np.full(len(cat), np.nan)
    set_col = _strings(cat["SET"]) if "SET" in cat.colnames else np.full(len(cat), "observed")
    training = set_col == "train"
    observed = set_col == "observed"
    if split:
        out["train"] = training & np.isin(cname, np.asarray(split.get("train", []), str))
        out["test"] = training & np.isin(cname, np.asarray(split.get("test", []), str))
    else:
        out["train"], out["test"] = training, np.zeros(len(cat), bool)
    out["observed"] = observed
    if flags is not None:
        j = index_of(cname, _strings(flags["CNAME"]))
        inner = np.where(j >= 0, np.asarray(flags["INNER"], bool)[j], False)
        outer = np.where(j >= 0, np.asarray(flags["OUTER"], bool)[j], False)
        out["OUTLIER"] = np.where(j >= 0, np.asarray(flags["OUTLIER"], bool)[j], False)
        with np.errstate(invalid="ignore"):
            out["inner_snr_ge30"] = observed & inner & (out["SNR"] >= SNR_SPLIT)
            out["inner_snr_lt30"] = observed & inner & (out["SNR"] < SNR_SPLIT)
        out["outer"] = observed & outer
    j_truth = index_of(cname, _strings(truth["CNAME"])) if truth is not None else None
    for name in cnn_labels(labels_table):
        out[f"{name}_CNN"] = float_column_at(labels_table, f"{name}_CNN", idx)
        out[f"E_{name}_CNN"] = float_column_at(labels_table, f"E_{name}_CNN", idx)
        if f"E_{name}_TOTAL" in labels_table.colnames:  # spread ⊕ noise (⊕ model error, calibrated)
            out[f"E_{name}_TOTAL"] = float_column_at(labels_table, f"E_{name}_TOTAL", idx)
        out[f"{name}_REF"] = float_column(cat, name) if name in cat.colnames else np.full(len(cat), np.nan)
        if truth is not None:
            out[f"{name}_TRUE"] = float_column_at(truth, name, j_truth)
    out.meta["labels"] = cnn_labels(labels_table)
    return out


def subsets(joined: Table) -> list[str]:
    """The subsets present in a joined table, in the paper's order (falls back to 'observed')."""
    names = [s for s in SUBSETS if s in joined.colnames and np.any(joined[s])]
    if not any(s in joined.colnames for s in SUBSETS[2:]) and np.any(joined["observed"]):
        names.append("observed")
    return names


def references(joined: Table) -> list[str]:
    return ["catalogue"] + (["truth"] if any(c.endswith("_TRUE") for c in joined.colnames) else [])


def ref_column(name: str, reference: str) -> str:
    return f"{name}_REF" if reference == "catalogue" else f"{name}_TRUE"


def metrics_table(joined: Table) -> Table:
    """Bias, scatter and uncertainty calibration per subset, reference and label: the fractions
    within 1 and 2 σ of the ensemble std, and of the total uncertainty where LABELS.fits has it."""
    rows = []
    for s in subsets(joined):
        m = np.asarray(joined[s], bool)
        for reference in references(joined):
            for name in joined.meta["labels"]:
                pred, ref = joined[f"{name}_CNN"][m], joined[ref_column(name, reference)][m]
                sig = joined[f"E_{name}_CNN"][m]
                tot = joined[f"E_{name}_TOTAL"][m] if f"E_{name}_TOTAL" in joined.colnames else np.full(m.sum(), np.nan)
                b, sc, n = bias_scatter(pred, ref)
                rows.append((s, reference, name, n, b, sc, within_sigma(pred, ref, sig, 1),
                             within_sigma(pred, ref, sig, 2), float(np.nanmedian(sig)) if n else np.nan,
                             within_sigma(pred, ref, tot, 1), within_sigma(pred, ref, tot, 2)))
    return Table(rows=rows or None, names=("set", "reference", "label", "n", "bias", "scatter",
                                           "within_1sigma", "within_2sigma", "median_std",
                                           "within_1sigma_total", "within_2sigma_total"),
                 dtype=(str, str, str, int, float, float, float, float, float, float, float))


def training_limits(joined: Table) -> dict[str, tuple[float, float]]:
    """(min, max) of each catalogue label over the training candidates (train + test)."""
    m = np.asarray(joined["train"], bool) | np.asarray(joined["test"], bool)
    out = {}
    for name in joined.meta["labels"]:
        v = np.asarray(joined[f"{name}_REF"][m], float)
        v = v[np.isfinite(v)]
        out[name] = (float(v.min()), float(v.max())) if len(v) else (np.nan, np.nan)
    return out


def outside_limits_table(joined: Table, limits) -> Table:
    """Share of each subset whose catalogue labels lie outside the training limits (any label)."""
    rows = []
    for s in subsets(joined):
        m = np.asarray(joined[s], bool)
        outside = np.zeros(m.sum(), bool)
        for name, (lo, hi) in limits.items():
            v = np.asarray(joined[f"{name}_REF"][m], float)
            with np.errstate(invalid="ignore"):
                outside |= (v < lo) | (v > hi)
        rows.append((s, int(m.sum()), float(outside.mean()) if m.any() else np.nan))
    return Table(rows=rows or None, names=("set", "n", "fraction_outside_training_limits"), dtype=(str, int, float))


def snr_bins(snr, start=10.0, width=10.0):
    """Edges of S/N bins of `width` from `start` up to the largest finite S/N (paper Fig. 10)."""
    snr = np.asarray(snr, float)
    top = np.nanmax(snr) if np.isfinite(snr).any() else start + width
    return np.arange(start, max(top, start) + width, width)


def precision_vs_snr(joined: Table, mask=None, start=10.0, width=10.0) -> Table:
    """Median ensemble std (and total uncertainty, where present) per label in S/N bins of 10:
    how σ grows as S/N falls."""
    m = np.asarray(joined["observed"], bool) if mask is None else np.asarray(mask, bool)
    snr = np.asarray(joined["SNR"], float)
    edges = snr_bins(snr[m], start, width)
    t = Table({"snr_lo": edges[:-1], "snr_hi": edges[1:]})
    with np.errstate(invalid="ignore"):
        inbin = [m & (snr >= lo) & (snr < hi) for lo, hi in zip(edges[:-1], edges[1:])]
    t["n"] = [int(b.sum()) for b in inbin]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for name in joined.meta["labels"]:
            for col, key in ((f"E_{name}_CNN", f"median_E_{name}"), (f"E_{name}_TOTAL", f"median_Etotal_{name}")):
                if col in joined.colnames:
                    e = np.asarray(joined[col], float)
                    t[key] = [float(np.nanmedian(e[b])) if b.any() else np.nan for b in inbin]
    return t
