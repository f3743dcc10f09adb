"""Ages (paper Sect. 5.4): isochrone ages of turn-off stars, mean age per disc population.

The paper fitted PARSEC isochrones with UniDAM (Mints & Hekker 2017) to the CNN Teff, log g,
[Fe/H], 2MASS magnitudes and Gaia parallaxes, kept turn-off stars, and found mean ages of
8.7 Gyr (thin) and 9.7 Gyr (thick). starlabel does not fit isochrones itself; `read_ages`
adapts the output of such a code:
  * UniDAM: `id` (the CNAME), `age_mean`, `age_err` — log10(age/yr), converted to Gyr
    (σ_age = age · ln 10 · σ_log); where a star has several rows (several PDF modes) the one with
    the lowest `uspdf_priority` is kept;
  * anything with CNAME and AGE (Gyr; also AGE_GYR) plus an optional E_AGE.
The turn-off selection is a box in the CNN Kiel diagram (`TurnOffBox`, recorded in the output):
dwarfs and subgiants hotter than the RGB base, `logg_min` ≤ log g ≤ `logg_max`, Teff ≥ `teff_min`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from astropy.table import Table

from .common import MissingColumnError, Validation, fcol, join, require, strings


@dataclass(frozen=True)
class TurnOffBox:
    teff_min: float = 5500.0  # K
    logg_min: float = 3.7
    logg_max: float = 4.2
    max_rel_age_error: float | None = 0.5  # drop ages less precise than this (None: keep all)


def read_ages(table: Table) -> Table:
    """CNAME, AGE, E_AGE (Gyr) from a UniDAM result or any CNAME + AGE table."""
    cols = {c.lower(): c for c in table.colnames}
    if "age_mean" in cols and ("id" in cols or "cname" in cols):
        t = table
        idc = cols.get("id", cols.get("cname"))
        if "uspdf_priority" in cols:
            t = t[np.argsort(fcol(t, cols["uspdf_priority"]), kind="stable")]
        ids = strings(t[idc])
        _, first = np.unique(ids, return_index=True)
        t, ids = t[np.sort(first)], ids[np.sort(first)]
        log_age = fcol(t, cols["age_mean"])
        err = fcol(t, cols["age_err"]) if "age_err" in cols else np.full(len(t), np.nan)
        age = 10 ** (log_age - 9.0)
        out = Table({"CNAME": ids, "AGE": age, "E_AGE": age * np.log(10) * err})
        out.meta["AGE_SOURCE"] = "UniDAM log10(age/yr) -> Gyr"
        return out
    cname = cols.get("cname")
    age = cols.get("age") or cols.get("age_gyr")
    if cname is None or age is None:
        raise MissingColumnError("validate ages: the ages table needs UniDAM's id + age_mean (+ age_err) or "
                                 f"CNAME + AGE (+ E_AGE); it has {table.colnames}")
    err = cols.get("e_age") or cols.get("age_err")
    out = Table({"CNAME": strings(table[cname]), "AGE": fcol(table, age),
                 "E_AGE": fcol(table, err) if err else np.full(len(table), np.nan)})
    out.meta["AGE_SOURCE"] = f"{cname}, {age}" + (f", {err}" if err else "") + " (Gyr)"
    return out


def ages(labels: Table, catalogue: Table, age_table: Table, populations: Table | None = None,
         box: TurnOffBox = TurnOffBox()) -> Validation:
    """Turn-off stars with an age (one row each); mean/median age per population ('all' without populations)."""
    require(labels, ["TEFF_CNN", "LOGG_CNN"], "the labels table", "ages")
    a = read_ages(age_table)
    from ..io.tables import index_of

    j = join(labels, catalogue, "ages", [])
    cname = strings(j["CNAME"])
    k = index_of(cname, strings(a["CNAME"]))
    age = np.where(k >= 0, fcol(a, "AGE")[np.maximum(k, 0)], np.nan)
    e_age = np.where(k >= 0, fcol(a, "E_AGE")[np.maximum(k, 0)], np.nan)
    teff, logg = fcol(j, "TEFF_CNN"), fcol(j, "LOGG_CNN")
    with np.errstate(invalid="ignore", divide="ignore"):
        turnoff = (teff >= box.teff_min) & (logg >= box.logg_min) & (logg <= box.logg_max)
        precise = np.isfinite(age) & (True if box.max_rel_age_error is None
                                      else ~(e_age / age > box.max_rel_age_error))
    pop = np.full(len(j), "all", dtype="<U12")
    if populations is not None:
        require(populations, ["CNAME", "POPULATION"], "the populations table", "ages")
        if "SAMPLE" in populations.colnames:
            populations = populations[strings(populations["SAMPLE"]) == strings(populations["SAMPLE"])[0]]
        kp = index_of(cname, strings(populations["CNAME"]))
        pop = np.where(kp >= 0, strings(populations["POPULATION"])[np.maximum(kp, 0)], "")
    use = turnoff & precise & (pop != "")
    table = Table({"CNAME": cname[use], "POPULATION": pop[use], "TEFF_CNN": teff[use], "LOGG_CNN": logg[use],
                   "FE_H_CNN": fcol(j, "FE_H_CNN")[use], "AGE": age[use], "E_AGE": e_age[use]})
    rows = []
    for p in dict.fromkeys(table["POPULATION"]):
        v = np.asarray(table["AGE"][np.asarray(table["POPULATION"]) == p], float)
        rows.append({"population": str(p), "n": int(v.size), "age_mean": float(v.mean()),
                     "age_median": float(np.median(v)), "age_std": float(v.std(ddof=1)) if v.size > 1 else np.nan,
                     "age_mean_err": float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else np.nan})
    meta = {"analysis": "ages", **asdict(box), "age_source": a.meta.get("AGE_SOURCE", ""),
            "turn_off": f"TEFF_CNN >= {box.teff_min:g} and {box.logg_min:g} <= LOGG_CNN <= {box.logg_max:g}",
            "n_with_age": int(np.isfinite(age).sum()), "n_turn_off": int((turnoff & np.isfinite(age)).sum())}
    return Validation("ages", table, Table(rows=rows) if rows else Table(names=["population", "n"], dtype=[str, int]),
                      meta)
