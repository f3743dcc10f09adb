"""Where the observed labels come from: CNN accuracy against the truth per reason a star left training.

The paper's science rests on the observed set (Sect. 2.2: everything with S/N ≥ 10 that fails
a training cut). On a mock survey the truth is known, so the accuracy of each observed subgroup
can be measured: a star counts under every cut of `QualityCuts` it fails (S/N < 30, E_TEFF or
E_LOGG too large, abundance errors, TECH/PECULI flags, v sin i > 20, [Fe/H] mismatch); stars that
pass every cut but were kept out of training (similarity-map outliers) form 'passes all cuts'.
Each subgroup is split into inner / outer (the map's INNER flag) and 'all'. The test set
(SET == 'train') is the reference row.
"""

from __future__ import annotations

import numpy as np
from astropy.table import Table

from ..labels import QualityCuts
from .common import (LABELS, MissingColumnError, Validation, bias_scatter, catalogue_labels, fcol, inner_flags,
                     require, strings)


def observed(labels: Table, catalogue: Table, truth: Table, cuts: QualityCuts | None = None,
             label_names=LABELS) -> Validation:
    """Per (reason, region, label): n, bias and scatter of CNN − truth (and CNN − catalogue)."""
    cuts = cuts or QualityCuts()
    require(labels, ["CNAME"], "the labels table", "observed")
    require(truth, ["CNAME", *label_names], "the truth table", "observed")
    names = [n for n in label_names if f"{n}_CNN" in labels.colnames]
    if not names:
        require(labels, [f"{label_names[0]}_CNN"], "the labels table", "observed")
    cat = catalogue_labels(catalogue)
    require(cat, ["CNAME", "SNR"], "the catalogue", "observed")
    from ..io.tables import index_of

    cname = strings(labels["CNAME"])
    kc = index_of(cname, strings(cat["CNAME"]))
    kt = index_of(cname, strings(truth["CNAME"]))
    sub = cat[np.maximum(kc, 0)]
    try:
        masks = cuts.masks(sub)
    except KeyError as e:  # a cut's column (E_TEFF, VSINI, FE1, ...) is absent
        raise MissingColumnError(f"validate observed: the catalogue has no column {e} needed by the training "
                                 "cuts (switch that cut off in QualityCuts to go without it)") from None
    set_col = strings(labels["SET"]) if "SET" in labels.colnames else np.full(len(labels), "observed")
    is_obs = (set_col == "observed") & (kc >= 0)
    inner = inner_flags(labels)
    groups = {"training candidates (reference)": (set_col == "train") & (kc >= 0)}
    any_fail = np.zeros(len(labels), bool)
    for name, ok in masks:
        groups[f"fails cut: {name}"] = is_obs & ~ok
        any_fail |= ~ok
    groups["passes all cuts (map outlier)"] = is_obs & ~any_fail
    groups["all observed"] = is_obs
    rows = []
    for g, m in groups.items():
        for region, r in (("all", np.ones(len(labels), bool)), ("inner", inner), ("outer", ~inner)):
            mm = m & r & (kt >= 0)
            if region != "all" and "INNER" not in labels.colnames:
                continue
            for n in names:
                cnn = fcol(labels, f"{n}_CNN")[mm]
                b, s, k = bias_scatter(cnn, fcol(truth, n)[kt[mm]])
                bc, sc, _ = bias_scatter(cnn, fcol(sub, n)[mm])
                rows.append({"group": g, "region": region, "label": n, "n": k, "bias_truth": b, "scatter_truth": s,
                             "bias_catalogue": bc, "scatter_catalogue": sc})
    meta = {"analysis": "observed", "cuts": {k: v for k, v in vars(cuts).items() if k != "extra"},
            "grouping": "a star counts under every training cut it fails",
            "regions": "INNER flag of the labels table" if "INNER" in labels.colnames else "no map: all"}
    table = Table({"CNAME": cname, "SET": set_col, "INNER": inner,
                   **{f"FAILS_{i}": ~ok for i, (_, ok) in enumerate(masks)}})
    table.meta["FAILS_COLUMNS"] = {f"FAILS_{i}": name for i, (name, _) in enumerate(masks)}
    return Validation("observed", table, Table(rows=rows), meta)
