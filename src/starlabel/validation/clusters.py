"""Globular clusters (paper Sect. 5.3, Figs. 15 and 16): membership and the Mg–Al anticorrelation.

Membership, as the paper's (sky position, then RV and [Fe/H] scatter), with explicit cuts
(`ClusterCuts`, recorded in the output): a star is a member of a cluster when
  * its angular distance from the centre is ≤ RADIUS_DEG of the centres table (or `radius_deg`),
  * |VRAD − RV| ≤ `rv_tol` km/s (catalogue VRAD), and
  * |[Fe/H] − [Fe/H]_cluster| ≤ `feh_tol` dex, using the catalogue [Fe/H] (FEH, else FE_H;
    `feh_source='cnn'` uses FE_H_CNN instead).
The centres come from the shipped table `validate/data/globular_clusters.csv` (Harris 2010 /
Baumgardt 2019 values, the same the mock draws from) unless another table is given.
Per cluster: members, mean and spread of [Fe/H], the spread of [Al/Fe] (std and 90–10 % range),
and for the CNN and the catalogue labels the Spearman ρ of [Mg/Fe] vs [Al/Fe] and a straight-line
fit [Al/Fe] = a + b [Mg/Fe].
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from importlib import resources

import numpy as np
from astropy.table import Table

from .common import Validation, catalogue_labels, fcol, inner_flags, join, linear_fit, require, strings


@dataclass(frozen=True)
class ClusterCuts:
    radius_deg: float | None = None  # None: the centres table's RADIUS_DEG
    rv_tol: float = 20.0  # km/s, ≈ 3 × (internal dispersion ⊕ RV error) of the mock clusters
    feh_tol: float = 0.3  # dex
    feh_source: str = "catalogue"  # or 'cnn'
    min_members: int = 15  # clusters with fewer members get no ρ/fit verdict


def cluster_centres(path=None) -> Table:
    """The centres table (NAME, RA, DEC, FE_H, RV, RADIUS_DEG, ...); the shipped one by default."""
    if path is None:
        with resources.as_file(resources.files("starlabel.validation") / "data" / "globular_clusters.csv") as p:
            return Table.read(p, format="ascii.csv", comment="#")
    from .common import read_table

    return read_table(path, "cluster centres table")


def _spearman(x, y) -> tuple[float, float]:
    from scipy.stats import spearmanr

    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 4:
        return np.nan, np.nan
    r = spearmanr(x[ok], y[ok])
    return float(r.statistic), float(r.pvalue)


def clusters(labels: Table, catalogue: Table, centres: Table | None = None,
             cuts: ClusterCuts = ClusterCuts(), truth: Table | None = None) -> Validation:
    """Members (one row per member spectrum) and the per-cluster summary.

    `sign_recovered`: the CNN ρ has the sign of the reference ρ — the truth's when `truth` (CNAME,
    FE_H, MG_FE, AL_FE, POP) is given, else the catalogue's — in a cluster with ≥ min_members.
    With truth, the summary also gives membership recall and precision against POP == 'gc'."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    centres = cluster_centres() if centres is None else centres
    require(centres, ["NAME", "RA", "DEC", "RV", "FE_H"] + ([] if cuts.radius_deg else ["RADIUS_DEG"]),
            "the cluster centres table", "clusters")
    cat = catalogue_labels(catalogue)
    feh_cat = "FEH" if "FEH" in cat.colnames else "FE_H"
    need = ["RA", "DEC", "VRAD"] + ([feh_cat] if cuts.feh_source == "catalogue" else [])
    require(cat, need, "the catalogue", "clusters")
    if cuts.feh_source == "cnn":
        require(labels, ["FE_H_CNN"], "the labels table", "clusters")
    have = [c for c in ("MG_FE", "AL_FE", "FE_H") if c in cat.colnames]
    j = join(labels, cat, "clusters", sorted(set(need + have)))
    ra, dec, rv = fcol(j, "CAT_RA"), fcol(j, "CAT_DEC"), fcol(j, "CAT_VRAD")
    feh = fcol(j, f"CAT_{feh_cat}") if cuts.feh_source == "catalogue" else fcol(j, "FE_H_CNN")
    if truth is not None:
        require(truth, ["CNAME", "POP", "FE_H", "MG_FE", "AL_FE"], "the truth table", "clusters")
        from ..io.tables import index_of

        kt = index_of(strings(j["CNAME"]), strings(truth["CNAME"]))
        for x in ("FE_H", "MG_FE", "AL_FE"):
            j[f"TRUE_{x}"] = np.where(kt >= 0, fcol(truth, x)[np.maximum(kt, 0)], np.nan)
        true_gc = (kt >= 0) & (strings(truth["POP"])[np.maximum(kt, 0)] == "gc")
    ok = np.isfinite(ra) & np.isfinite(dec)
    stars = SkyCoord(np.where(ok, ra, 0) * u.deg, np.where(ok, dec, 0) * u.deg)
    member = np.full(len(j), "", dtype="<U24")
    sep_all = np.full(len(j), np.nan)
    rows = []
    for c in centres:
        name = str(c["NAME"]).strip()
        radius = cuts.radius_deg or float(c["RADIUS_DEG"])
        sep = stars.separation(SkyCoord(float(c["RA"]) * u.deg, float(c["DEC"]) * u.deg)).deg
        with np.errstate(invalid="ignore"):
            m = ok & (sep <= radius) & (np.abs(rv - float(c["RV"])) <= cuts.rv_tol) \
                & (np.abs(feh - float(c["FE_H"])) <= cuts.feh_tol)
        m &= member == ""  # the first (nearest listed) cluster wins; centres are degrees apart
        member[m] = name
        sep_all[m] = sep[m]
        r = {"cluster": name, "n_members": int(m.sum()), "n_inner": int((m & inner_flags(j)).sum())}
        sources = [("cnn", "", "_CNN"), ("catalogue", "CAT_", "")]
        if truth is not None:
            sources.append(("truth", "TRUE_", ""))
        for src, pre, suf in sources:
            f_, mg, al = (fcol(j, f"{pre}{x}{suf}")[m] for x in ("FE_H", "MG_FE", "AL_FE"))
            r[f"feh_mean_{src}"] = float(np.nanmean(f_)) if np.isfinite(f_).any() else np.nan
            r[f"feh_std_{src}"] = float(np.nanstd(f_)) if np.isfinite(f_).sum() > 1 else np.nan
            fin = al[np.isfinite(al)]
            r[f"al_std_{src}"] = float(fin.std()) if fin.size > 1 else np.nan
            r[f"al_range_{src}"] = float(np.subtract(*np.percentile(fin, [90, 10]))) if fin.size > 1 else np.nan
            r[f"rho_{src}"], r[f"rho_p_{src}"] = _spearman(mg, al)
            slope, err, icpt, n = linear_fit(mg, al)
            r[f"slope_{src}"], r[f"slope_err_{src}"], r[f"n_mgal_{src}"] = slope, err, n
        big = r["n_members"] >= cuts.min_members
        ref = "truth" if truth is not None else "catalogue"
        r["sign_reference"] = ref
        r["sign_recovered"] = bool(big and np.sign(r["rho_cnn"]) == np.sign(r[f"rho_{ref}"]) != 0)
        r["anticorrelated_cnn"] = bool(big and r["rho_cnn"] < 0)
        rows.append(r)
    keep = member != ""
    table = Table({"CNAME": strings(j["CNAME"])[keep], "CLUSTER": member[keep], "SEP_DEG": sep_all[keep],
                   "VRAD": rv[keep], "FEH_MEMBERSHIP": feh[keep], "INNER": inner_flags(j)[keep]})
    for x in ("FE_H", "MG_FE", "AL_FE"):
        table[f"{x}_CNN"] = fcol(j, f"{x}_CNN")[keep]
        table[f"{x}_CAT"] = fcol(j, f"CAT_{x}")[keep]
    summary = Table(rows=rows)
    if truth is not None:
        hit = keep & true_gc
        summary.meta["recall"] = float(hit.sum() / true_gc.sum()) if true_gc.any() else np.nan
        summary.meta["precision"] = float(hit.sum() / keep.sum()) if keep.any() else np.nan
        summary["recall"] = [float(np.sum(hit & (member == c)) / max(1, np.sum(true_gc & _truth_cluster(j, truth, c))))
                             for c in summary["cluster"]]
        summary["precision"] = [float(np.sum(hit & (member == c)) / max(1, np.sum(member == c)))
                                for c in summary["cluster"]]
    meta = {"analysis": "clusters", **{f"cut_{k}": (v if v is not None else "centres table RADIUS_DEG")
                                       for k, v in asdict(cuts).items()},
            "membership": "separation <= radius AND |VRAD - RV| <= rv_tol AND |[Fe/H] - [Fe/H]_cl| <= feh_tol",
            "feh_column": feh_cat if cuts.feh_source == "catalogue" else "FE_H_CNN",
            "fit": "[Al/Fe] = a + slope [Mg/Fe]; rho = Spearman([Mg/Fe], [Al/Fe])"}
    return Validation("clusters", table, summary, meta)


def _truth_cluster(j: Table, truth: Table, name: str) -> np.ndarray:
    """True cluster membership by the truth's GES_FLD (the mock labels a cluster star's field by its cluster)."""
    if "GES_FLD" not in truth.colnames:
        return np.ones(len(j), bool)
    from ..io.tables import index_of

    k = index_of(strings(j["CNAME"]), strings(truth["CNAME"]))
    return (k >= 0) & (strings(truth["GES_FLD"])[np.maximum(k, 0)] == name)
