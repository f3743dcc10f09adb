"""Asteroseismic surface gravities (paper Sect. 5.2, Fig. 14): catalogue and CNN log g against seismic log g.

The seismic table has the format of the GES × CoRoT master list: CNAME, LOGG (the seismic value
for the CoRoT giants) and E_LOGG (may be empty). Rows are matched by CNAME; for each of the
catalogue and CNN log g the summary gives the bias (X − seismic), scatter and the slope of the
residual against seismic log g (the paper finds no residual trend and 0.08 dex dispersion).
"""

from __future__ import annotations

import numpy as np
from astropy.table import Table

from .common import Validation, bias_scatter, fcol, inner_flags, join, linear_fit, require, strings


def seismic(labels: Table, catalogue: Table, seismic_table: Table, logg_col: str = "LOGG",
            err_col: str = "E_LOGG", max_error: float | None = 0.1, type_value: str | None = None) -> Validation:
    """One row per labelled spectrum with a seismic log g; summary per log g source.

    `max_error` drops seismic values with E_LOGG above it (a missing E_LOGG is kept);
    `type_value` keeps only seismic-table rows whose GES_TYPE equals it (e.g. 'CoRoT')."""
    require(seismic_table, ["CNAME", logg_col], "the seismic table", "seismic")
    require(labels, ["LOGG_CNN"], "the labels table", "seismic")
    seis = seismic_table
    keep = np.isfinite(fcol(seis, logg_col))
    if type_value is not None:
        require(seis, ["GES_TYPE"], "the seismic table", "seismic")
        keep &= strings(seis["GES_TYPE"]) == type_value
    e = fcol(seis, err_col)
    if max_error is not None:
        with np.errstate(invalid="ignore"):
            keep &= ~(e > max_error)
    seis = seis[keep]
    j = join(labels, catalogue, "seismic", [c for c in ("LOGG", "TEFF", "SNR") if c in catalogue.colnames])
    from ..io.tables import index_of

    k = index_of(strings(j["CNAME"]), strings(seis["CNAME"]))
    m = k >= 0
    t = Table({"CNAME": strings(j["CNAME"])[m], "LOGG_SEIS": fcol(seis, logg_col)[k[m]],
               "E_LOGG_SEIS": fcol(seis, err_col)[k[m]], "LOGG_CAT": fcol(j, "CAT_LOGG")[m],
               "LOGG_CNN": fcol(j, "LOGG_CNN")[m], "E_LOGG_CNN": fcol(j, "E_LOGG_CNN")[m],
               "TEFF_CAT": fcol(j, "CAT_TEFF")[m], "SNR": fcol(j, "CAT_SNR")[m], "INNER": inner_flags(j)[m]})
    rows = []
    for source in ("catalogue", "cnn"):
        x = t["LOGG_CAT" if source == "catalogue" else "LOGG_CNN"]
        b, sc, n = bias_scatter(x, t["LOGG_SEIS"])
        slope, slope_err, icpt, _ = linear_fit(t["LOGG_SEIS"], np.asarray(x) - np.asarray(t["LOGG_SEIS"]))
        rows.append({"source": source, "n": n, "bias": b, "scatter": sc, "residual_slope": slope,
                     "residual_slope_err": slope_err, "residual_intercept": icpt})
    meta = {"analysis": "seismic", "match": "CNAME", "seismic_column": logg_col,
            "max_seismic_error": max_error if max_error is not None else "none",
            "type_value": type_value or "any", "n_seismic": int(len(seis)), "n_matched": int(len(t)),
            "residual": "X - seismic; slope of a straight-line fit against seismic log g"}
    return Validation("seismic", t, Table(rows=rows), meta)
