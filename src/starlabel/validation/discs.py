"""Thin and thick disc (paper Sect. 5.4, Fig. 17): HDBSCAN in the ([Fe/H], [Mg/Fe]) plane of the CNN labels.

As the paper: the sample is the test set plus the inner observed set with S/N ≥ 30 (the
"clean" sample); the same clustering is also run on the low-S/N inner + outer observed set,
where the paper found no separation. Clustering uses scikit-learn's `HDBSCAN` on the raw
([Fe/H], [Mg/Fe]) values (dex), as the paper used the hdbscan package. Of the clusters found,
the two largest are named by their mean [Mg/Fe]: the α-rich one 'thick', the other 'thin';
any further cluster is 'other' and unassigned stars are 'noise' (paper: about 35 %).

Departure from the paper: only field stars enter (catalogue GES_TYPE starting with one of
`field_types`, GE_MW by default) so that globular-cluster and benchmark targets do not pose as
disc stars; set `field_types=None` to keep every star.
Without a train/test split (`split`) every training candidate (SET == 'train') stands in for
the test set; the choice is recorded in the output.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from astropy.table import Table

from .common import Validation, fcol, inner_flags, join, require, strings


@dataclass(frozen=True)
class DiscSettings:
    min_snr: float = 30.0
    min_cluster_size: int | None = None  # None: 5 % of the sample, at least 10
    min_samples: int | None = 10  # None: HDBSCAN's default (= min_cluster_size)
    field_types: tuple[str, ...] | None = ("GE_MW",)


def _clean_sample(j: Table, split, min_snr: float) -> tuple[np.ndarray, np.ndarray, str]:
    """(clean sample mask, low-S/N inner + outer mask, how the test set was chosen)."""
    set_col = strings(j["SET"]) if "SET" in j.colnames else np.full(len(j), "observed")
    snr = fcol(j, "SNR") if "SNR" in j.colnames else fcol(j, "CAT_SNR")
    inner = inner_flags(j)
    if split and split.get("test"):
        test = (set_col == "train") & np.isin(strings(j["CNAME"]), np.asarray(split["test"], str))
        how = "test set from split.json"
    else:
        test = set_col == "train"
        how = "no split: all training candidates (SET == train)"
    observed = set_col == "observed"
    with np.errstate(invalid="ignore"):
        clean = test | (observed & inner & (snr >= min_snr))
        rest = observed & ~(inner & (snr >= min_snr))
    return clean, rest, how


def _hdbscan(x: np.ndarray, settings: DiscSettings) -> tuple[np.ndarray, int]:
    from sklearn.cluster import HDBSCAN

    if len(x) < 10:
        return np.full(len(x), -1), 0
    mcs = settings.min_cluster_size or max(10, int(0.05 * len(x)))
    model = HDBSCAN(min_cluster_size=mcs, min_samples=settings.min_samples, copy=True).fit(x)
    return model.labels_, mcs


def _name_clusters(lab: np.ndarray, mgfe: np.ndarray) -> np.ndarray:
    names = np.full(len(lab), "noise", dtype="<U6")
    ids, counts = np.unique(lab[lab >= 0], return_counts=True)
    if ids.size == 0:
        return names
    top = ids[np.argsort(counts)[::-1][:2]]
    names[lab >= 0] = "other"
    if top.size == 1:
        names[lab == top[0]] = "thin" if np.nanmean(mgfe[lab == top[0]]) < 0.15 else "thick"
        return names
    means = [np.nanmean(mgfe[lab == t]) for t in top]
    names[lab == top[int(np.argmax(means))]] = "thick"
    names[lab == top[int(np.argmin(means))]] = "thin"
    return names


def discs(labels: Table, catalogue: Table, split: dict | None = None, truth: Table | None = None,
          settings: DiscSettings = DiscSettings()) -> Validation:
    """One row per star of both samples with its HDBSCAN population; summary per sample and population.

    With `truth` (CNAME + POP, e.g. the mock's truth.fits) the summary gives the purity of each
    named population (share of its stars whose true POP has that name) and their mean truth age."""
    require(labels, ["FE_H_CNN", "MG_FE_CNN"], "the labels table", "discs")
    cols = [c for c in ("GES_TYPE", "SNR") if c in catalogue.colnames]
    if settings.field_types is not None:
        require(catalogue, ["GES_TYPE"], "the catalogue", "discs")
    j = join(labels, catalogue, "discs", cols)
    field = np.ones(len(j), bool)
    if settings.field_types is not None:
        gt = strings(j["CAT_GES_TYPE"])
        field = np.array([any(g.startswith(f) for f in settings.field_types) for g in gt], bool)
    clean, rest, how = _clean_sample(j, split, settings.min_snr)
    x = np.column_stack([fcol(j, "FE_H_CNN"), fcol(j, "MG_FE_CNN")])
    finite = np.isfinite(x).all(1)
    true_pop = None
    if truth is not None:
        require(truth, ["CNAME", "POP"], "the truth table", "discs")
        from ..io.tables import index_of

        k = index_of(strings(j["CNAME"]), strings(truth["CNAME"]))
        true_pop = np.where(k >= 0, strings(truth["POP"])[np.maximum(k, 0)], "")
        true_age = np.where(k >= 0, fcol(truth, "AGE")[np.maximum(k, 0)], np.nan)
    parts, rows = [], []
    for sample, mask in (("test+inner_snr_ge30", clean), ("inner_snr_lt30+outer", rest)):
        m = np.flatnonzero(mask & field & finite)
        lab, mcs = _hdbscan(x[m], settings)
        names = _name_clusters(lab, x[m, 1])
        t = Table({"CNAME": strings(j["CNAME"])[m], "SAMPLE": np.full(len(m), sample), "FE_H_CNN": x[m, 0],
                   "MG_FE_CNN": x[m, 1], "HDBSCAN_LABEL": lab, "POPULATION": names})
        if true_pop is not None:
            t["POP_TRUE"] = true_pop[m]
        parts.append(t)
        n = len(m)
        base = {"sample": sample, "n_sample": n, "min_cluster_size": mcs,
                "n_clusters": int(np.unique(lab[lab >= 0]).size),
                "unassigned_fraction": float(np.mean(lab < 0)) if n else np.nan}
        assigned = np.isin(names, ("thin", "thick"))
        if true_pop is not None:
            base["purity"] = float(np.mean(names[assigned] == true_pop[m][assigned])) if assigned.any() else np.nan
        for pop in ("thin", "thick", "noise", "other"):
            s = names == pop
            r = dict(base, population=pop, n=int(s.sum()),
                     feh_mean=float(np.mean(x[m][s, 0])) if s.any() else np.nan,
                     mgfe_mean=float(np.mean(x[m][s, 1])) if s.any() else np.nan)
            if true_pop is not None:
                r["purity_population"] = float(np.mean(true_pop[m][s] == pop)) if s.any() and pop in ("thin", "thick") \
                    else np.nan
                a = true_age[m][s]
                r["true_age_mean"] = float(np.nanmean(a)) if np.isfinite(a).any() else np.nan
            rows.append(r)
    from astropy.table import vstack

    meta = {"analysis": "discs", **{k: (v if v is not None else "default") for k, v in asdict(settings).items()},
            "test_set": how, "clustering": "sklearn.cluster.HDBSCAN on raw ([Fe/H]_CNN, [Mg/Fe]_CNN)",
            "naming": "two largest clusters; higher mean [Mg/Fe] = thick"}
    return Validation("discs", vstack(parts), Table(rows=rows), meta)
