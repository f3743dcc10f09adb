"""Do calibrated error bars hold on spectra the calibration never saw? (mock survey only: needs the truth)

    PYTHONPATH=src .venv/bin/python benchmarks/bench_calibration.py MODEL SETS LABELS MAP TRUTH

MODEL is a bundle after `starlabel calibrate`, LABELS its `predict --noise-draws K --map MAP` output on
SETS, TRUTH the mock survey's truth.fits. For the test split (where σ_model was fitted) and the map's
observed subsets (inner S/N ≥ 30, inner S/N < 30, outer: never used), prints the share of stars whose
true label lies within 1σ and 2σ of E_<LABEL>_TOTAL without σ_model (spread ⊕ noise) and with it.
A Gaussian gives 0.68 / 0.95.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def main(argv=None):
    from astropy.table import Table

    from starlabel.evaluation.metrics import SUBSET_TITLES, join_run, read_map_flags, subsets, within_sigma
    from starlabel.io.dataset import Dataset
    from starlabel.model.bundle import Bundle

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("model", "sets", "labels", "map", "truth"):
        ap.add_argument(name)
    args = ap.parse_args(argv)
    calibration = Bundle(args.model).calibration() or {}
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {os.getloadavg()[0]:.1f}; {args.model} "
          f"calibrated against {calibration.get('reference', 'nothing')}")
    labels = Table.read(args.labels)
    joined = join_run(Dataset(args.sets).catalogue, labels, Bundle(args.model).split(), read_map_flags(args.map),
                      Table.read(args.truth))
    names = joined.meta["labels"]
    missing = [n for n in names if f"E_{n}_MODEL" not in labels.colnames or f"E_{n}_TOTAL" not in labels.colnames]
    if missing:
        raise SystemExit(f"{args.labels} has no E_<LABEL>_MODEL / _TOTAL for {missing}: calibrate, then predict "
                         "with --noise-draws")
    print(f"{'set':<18}{'n':>6}  " + "".join(f"{n:>22}" for n in names))
    print(f"{'':<26}" + "".join(f"{'1σ before→after, 2σ':>22}" for _ in names))
    for s in [x for x in subsets(joined) if x != "train"]:
        m = np.asarray(joined[s], bool)
        cells = []
        for n in names:
            pred, true = np.asarray(joined[f"{n}_CNN"], float)[m], np.asarray(joined[f"{n}_TRUE"], float)[m]
            total = np.asarray(joined[f"E_{n}_TOTAL"], float)[m]
            model = np.asarray(labels[f"E_{n}_MODEL"], float)[0]
            before = np.sqrt(np.maximum(total**2 - model**2, 0.0))
            cells.append(f"{within_sigma(pred, true, before):.2f}→{within_sigma(pred, true, total):.2f}, "
                         f"{within_sigma(pred, true, total, 2):.2f}")
        print(f"{SUBSET_TITLES.get(s, s):<18}{int(m.sum()):>6}  " + "".join(f"{c:>22}" for c in cells))
    print("σ_model: " + ", ".join(f"{n} {float(np.asarray(labels[f'E_{n}_MODEL'])[0]):.4g}" for n in names))


if __name__ == "__main__":
    main()
