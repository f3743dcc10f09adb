"""Accuracy of a trained ensemble on a mock survey (issue 3 §5, issue 4 Fig. 9 table).

    python benchmarks/bench_accuracy.py --run RUN_DIR [--model RUN_DIR/model]

RUN_DIR holds what the pipeline wrote (the `starlabel demo` layout): survey/truth.fits,
sets.h5, map.h5 and the model bundle. The script predicts every spectrum of sets.h5 (if
labels.fits is not there yet), then prints, against the catalogue labels and the truth:
- bias and scatter per label on the test set (S/N ≥ 30), the inner S/N ≥ 30, inner S/N < 30
  and outer observed sets, with the fraction of stars within 1 and 2 ensemble σ and within 1 and
  2 σ of the total uncertainty (ensemble σ ⊕ noise-propagated σ, `predict --noise-draws`);
- the PCA + ridge baseline on exactly the same train/test split;
- the median ensemble σ in S/N bins of 10 (paper Sect. 4.3, Fig. 10);
- CNN and baseline scatter against the truth on the test set in S/N bins.
Tables are also written as CSV into RUN_DIR/accuracy/.
Recorded results (date, mock, command): docs/experiments.md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from astropy.table import Table

from starlabel.stages.demo import CARRY, NOISE_DRAWS, baseline_metrics, baseline_predictions, format_summary, summary_table
from starlabel.evaluation.metrics import bias_scatter, join_run, metrics_table, precision_vs_snr, read_map_flags
from starlabel.io.dataset import Dataset
from starlabel.model.bundle import Bundle
from starlabel.stages.predict import predict


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, type=Path)
    p.add_argument("--model", type=Path, help="bundle (default RUN/model)")
    p.add_argument("--labels", type=Path, help="LABELS.fits (default RUN/labels.fits; made if missing)")
    args = p.parse_args(argv)
    run = args.run
    model = args.model or run / "model"
    labels_path = args.labels or run / "labels.fits"
    out = run / "accuracy"
    out.mkdir(exist_ok=True)
    if not labels_path.exists():
        t = time.perf_counter()
        predict(model, run / "sets.h5", labels_path, carry=CARRY, map_path=run / "map.h5",
                noise_draws=NOISE_DRAWS)
        print(f"predict: {time.perf_counter() - t:.1f} s")
    sets = Dataset(run / "sets.h5")
    joined = join_run(sets.catalogue, Table.read(labels_path), Bundle(model).split(),
                      read_map_flags(run / "map.h5"), Table.read(run / "survey" / "truth.fits"))
    labels = joined.meta["labels"]
    base_pred = baseline_predictions(run / "sets.h5", model, labels)
    base = baseline_metrics(run / "sets.h5", model, run / "survey" / "truth.fits", labels, predictions=base_pred)
    summary = summary_table(metrics_table(joined), base)
    summary.write(out / "summary.csv", format="ascii.csv", overwrite=True)
    print(format_summary(summary[summary["set"] != "train"]))

    print("\nmedian ensemble σ per S/N bin (observed set):")
    prec = precision_vs_snr(joined)
    prec.write(out / "precision_vs_snr.csv", format="ascii.csv", overwrite=True)
    for c in prec.colnames[3:]:
        prec[c].format = ".3f" if "TEFF" not in c else ".1f"
    prec.pprint(max_lines=-1, max_width=-1)

    cnn = summary[(summary["method"] == "cnn") & (summary["set"] == "test")]
    print("\nCNN / baseline scatter on the test set (< 1 means the CNN is better):")
    for ref in ("truth", "catalogue"):
        for name in labels:
            c = cnn[(cnn["reference"] == ref) & (cnn["label"] == name)]["scatter"]
            b = base[(base["reference"] == ref) & (base["label"] == name)]["scatter"]
            if len(c) and len(b):
                print(f"  {ref:<10}{name:<7}{float(c[0]) / float(b[0]):6.2f}")
    by_snr = scatter_by_snr(joined, labels, *base_pred)
    by_snr.write(out / "cnn_vs_baseline_by_snr.csv", format="ascii.csv", overwrite=True)
    print("\nscatter against the truth on the test set by S/N, CNN / PCA + ridge:")
    print("\n".join(by_snr.pformat(max_lines=-1, max_width=-1)))
    print(f"\ntables in {out}")


def scatter_by_snr(joined, labels, test_rows, base_pred, edges=(30, 40, 60, 100, np.inf)) -> Table:
    """Scatter against the truth of the CNN and the baseline on the test set in S/N bins: is a
    label limited by the spectra's noise (falls with S/N) or by something else (flat)?"""
    snr = np.asarray(joined["SNR"], float)[test_rows]
    t = Table({"snr_lo": edges[:-1], "snr_hi": edges[1:]})
    t["n"] = [int(((snr >= lo) & (snr < hi)).sum()) for lo, hi in zip(edges[:-1], edges[1:])]
    for k, name in enumerate(labels):
        truth = np.asarray(joined[f"{name}_TRUE"], float)[test_rows]
        cnn = np.asarray(joined[f"{name}_CNN"], float)[test_rows]
        for method, pred in (("cnn", cnn), ("base", base_pred[:, k])):
            t[f"{name}_{method}"] = [bias_scatter(pred[b], truth[b])[1] for b in
                                     ((snr >= lo) & (snr < hi) for lo, hi in zip(edges[:-1], edges[1:]))]
            t[f"{name}_{method}"].format = ".1f" if name == "TEFF" else ".4f"
    return t


if __name__ == "__main__":
    np.seterr(invalid="ignore")
    main()
