"""Label accuracy when a setup is missing: both setups vs HR21 only vs HR10 only (issue 10, item 4).

    python benchmarks/bench_missing_setup.py MODEL_DIR SETS.h5 [--truth truth.fits] [--rows test|observed]

For the model's test split (default) or the observed set, the ensemble predicts every spectrum three
times: as it is, with HR10 replaced by 1.0 (what `prepare` writes for a missing setup, mask bit 8),
and with HR21 replaced by 1.0. It prints the bias and scatter (std) of CNN − reference per label,
against the truth table when given (mock survey), else against the catalogue labels. A model
trained without missing-setup augmentation shows how much the networks rely on each setup; the
same script measures the effect of augmentation once model/train.py has it. Prints the date and
the machine load, as the cores may be shared.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
from pathlib import Path

import numpy as np
from astropy.table import Table

from starlabel.io.tables import index_of
from starlabel.io.dataset import Dataset
from starlabel.labels import float_column
from starlabel.model.ensemble import Ensemble


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path)
    ap.add_argument("sets", type=Path)
    ap.add_argument("--truth", type=Path, help="truth.fits of a mock survey (else: catalogue labels)")
    ap.add_argument("--rows", choices=("test", "observed"), default="test")
    args = ap.parse_args()
    print(f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, load average {os.getloadavg()}")
    ens, ds = Ensemble.load(args.model), Dataset(args.sets)
    cnames = np.asarray(ds.catalogue["CNAME"]).astype(str)
    if args.rows == "test":
        test = json.loads((args.model / "split.json").read_text())["test"]
        rows = np.flatnonzero(np.isin(cnames, test))
    else:
        rows = ds.rows(SET="observed")
    if "MISSING_SETUP" in ds.catalogue.colnames:  # only stars observed in both setups
        rows = rows[np.char.str_len(np.asarray(ds.catalogue["MISSING_SETUP"])[rows].astype(str)) == 0]
    flux = ds.read(rows)
    ref_table = Table.read(args.truth) if args.truth else ds.catalogue[rows]
    j = index_of(cnames[rows], np.asarray(ref_table["CNAME"]).astype(str)) if args.truth else np.arange(len(rows))
    names = ens.labels.names
    print(f"{len(rows)} spectra ({args.rows}), reference: {'truth' if args.truth else 'catalogue'}")
    print(f"{'input':<12}" + "".join(f"{n:>22}" for n in names))
    for case in ("both", "HR21 only", "HR10 only"):
        f = flux.copy()
        drop = {"HR21 only": "HR10", "HR10 only": "HR21"}.get(case)
        if drop:
            f[:, ds.grid.slices()[drop]] = 1.0
        mean = ens.predict(f).mean
        cells = []
        for k, n in enumerate(names):
            col = n if n in ref_table.colnames else {"FE_H": "FEH"}.get(n, n)
            ref = float_column(ref_table, col)[j]
            d = mean[:, k] - ref
            ok = np.isfinite(d)
            cells.append(f"{np.mean(d[ok]):+9.3f} ± {np.std(d[ok]):8.3f}")
        print(f"{case:<12}" + "".join(f"{c:>22}" for c in cells))


if __name__ == "__main__":
    main()
