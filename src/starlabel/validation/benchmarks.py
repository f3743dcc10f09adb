"""Benchmark stars (paper Sect. 5.1, Fig. 13): CNN against reference labels, with repeat spectra.

A benchmark spectrum is a catalogue row whose GES_TYPE contains 'BM' (GE_SD_BM); repeat spectra
of one star share its name (OBJECT, else GES_FLD) and each have their own CNAME. The reference
labels are either a reference table (e.g. the GES iDR5 benchmark table, joined by name; its FEH is
[Fe/H]) or, without one, the catalogue's own labels of the star (the median over its spectra),
as in the paper's Fig. 13 ("GES input labels"). The spread of the CNN labels over a star's
repeats is an external estimate of the CNN uncertainty, compared with the median E_<L>_TOTAL
(or E_<L>_CNN) of those spectra and with the reference error.
"""

from __future__ import annotations

import numpy as np
from astropy.table import Table

from .common import LABELS, Validation, bias_scatter, catalogue_labels, fcol, inner_flags, join, require, strings

NAME_COLUMNS = ("OBJECT", "GES_FLD", "ID1", "NAME")


def _name_column(table: Table, what: str) -> str:
    for c in NAME_COLUMNS:
        if c in table.colnames and np.any(strings(table[c]) != ""):
            return c
    require(table, ["OBJECT"], what, "benchmarks")
    return "OBJECT"


def _norm(names) -> np.ndarray:
    """Names compared case-, blank- and underscore-insensitively (18_Sco = 18Sco = 18 sco)."""
    return np.array([n.replace("_", "").replace(" ", "").lower() for n in names])


def benchmarks(labels: Table, catalogue: Table, reference: Table | None = None, label_names=LABELS,
               type_pattern: str = "BM") -> Validation:
    """Per benchmark star: N spectra, reference, mean CNN, repeat spread, errors, INNER; bias/scatter summary."""
    cat = catalogue_labels(catalogue)
    require(cat, ["GES_TYPE"], "the catalogue", "benchmarks")
    name_col = _name_column(cat, "the catalogue")
    names = [n for n in label_names if f"{n}_CNN" in labels.colnames]
    if not names:
        require(labels, [f"{label_names[0]}_CNN"], "the labels table", "benchmarks")
    cat_cols = [name_col, "GES_TYPE", *[c for c in (*names, *(f"E_{n}" for n in names), "SNR") if c in cat.colnames]]
    j = join(labels, cat, "benchmarks", cat_cols)
    is_bm = np.char.find(np.char.upper(strings(j["CAT_GES_TYPE"])), type_pattern.upper()) >= 0
    j = j[is_bm]
    star = strings(j[f"CAT_{name_col}"])
    inner = inner_flags(j)
    ref_vals = {}
    if reference is not None:
        rname = _name_column(reference, "the reference table")
        ref = catalogue_labels(reference)
        key = _norm(strings(ref[rname]))
        for n in names:
            v, e = fcol(ref, n), fcol(ref, f"E_{n}")
            ref_vals[n] = {k: (v[i], e[i]) for i, k in enumerate(key)}
    rows = []
    stars = [s for s in dict.fromkeys(star) if s]
    for s in stars:
        m = star == s
        r = {"NAME": s, "N_SPECTRA": int(m.sum()), "INNER": bool(np.mean(inner[m]) >= 0.5),
             "SNR_MAX": float(np.nanmax(fcol(j, "CAT_SNR")[m])) if np.isfinite(fcol(j, "CAT_SNR")[m]).any() else np.nan}
        for n in names:
            cnn = fcol(j, f"{n}_CNN")[m]
            if reference is not None:
                rv, re = ref_vals[n].get(_norm([s])[0], (np.nan, np.nan))
            else:
                rv = np.nanmedian(fcol(j, f"CAT_{n}")[m]) if np.isfinite(fcol(j, f"CAT_{n}")[m]).any() else np.nan
                e = fcol(j, f"CAT_E_{n}")[m]
                re = np.nanmedian(e) if np.isfinite(e).any() else np.nan
            ok = np.isfinite(cnn)
            r[f"{n}_REF"], r[f"E_{n}_REF"] = rv, re
            r[f"{n}_CNN"] = float(cnn[ok].mean()) if ok.any() else np.nan
            r[f"{n}_REPEAT_STD"] = float(cnn[ok].std(ddof=1)) if ok.sum() > 1 else np.nan
            for col in (f"E_{n}_TOTAL", f"E_{n}_CNN"):
                v = fcol(j, col)[m]
                r[col] = float(np.nanmedian(v)) if np.isfinite(v).any() else np.nan
        rows.append(r)
    table = Table(rows=rows) if rows else Table(names=["NAME", "N_SPECTRA", "INNER"], dtype=[str, int, bool])
    summary = []
    for n in names:
        for group in ("all", "inner", "outer"):
            if not len(table):
                break
            g = {"all": np.ones(len(table), bool), "inner": np.asarray(table["INNER"], bool),
                 "outer": ~np.asarray(table["INNER"], bool)}[group]
            b, sc, k = bias_scatter(table[f"{n}_CNN"][g], table[f"{n}_REF"][g])
            rep = np.asarray(table[f"{n}_REPEAT_STD"][g], float)
            err_col = f"E_{n}_TOTAL" if np.isfinite(fcol(table, f"E_{n}_TOTAL")).any() else f"E_{n}_CNN"
            e_cnn = fcol(table, err_col)[g]
            e_ref = fcol(table, f"E_{n}_REF")[g]
            has = np.isfinite(rep)
            summary.append({"label": n, "group": group, "n_stars": k, "bias": b, "scatter": sc,
                            "n_with_repeats": int(has.sum()),
                            "median_repeat_std": float(np.median(rep[has])) if has.any() else np.nan,
                            "median_cnn_error": float(np.nanmedian(e_cnn)) if np.isfinite(e_cnn).any() else np.nan,
                            "cnn_error_column": err_col,
                            "repeat_std_within_ref_error": float(np.mean(rep[has & np.isfinite(e_ref)]
                                                                         <= e_ref[has & np.isfinite(e_ref)]))
                            if (has & np.isfinite(e_ref)).any() else np.nan})
    summary = Table(rows=summary) if summary else Table(names=["label", "group", "n_stars"], dtype=[str, str, int])
    meta = {"analysis": "benchmarks", "benchmark_selection": f"catalogue GES_TYPE contains {type_pattern!r}",
            "star_key": name_col, "reference": "reference table" if reference is not None
            else "catalogue labels (median over the star's spectra)",
            "inner": "majority of the star's spectra INNER" if "INNER" in labels.colnames else "no map: all inner",
            "n_spectra": int(len(j)), "n_stars": int(len(table))}
    return Validation("benchmarks", table, summary, meta)
