"""Mixed precision against fp32: label differences and speed, same run (issue 15 §4).

    PYTHONPATH=src .venv/bin/python benchmarks/bench_precision.py MODEL DATASET [--n 2048] [--device cpu|cuda]

For bf16 (and fp16 on a GPU): max and 99th-percentile |label − fp32 label| over N spectra of the
dataset, whether that passes `model.precision`'s gate (1 K / 0.001 dex, what `predict --precision
auto` checks on its first 256 spectra), and spectra/s per model of each precision, alternating
rounds so that drifting shared cores hit both alike. Prints date and load.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("dataset")
    p.add_argument("--n", type=int, default=2048)
    p.add_argument("--device")
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args(argv)
    from starlabel import Dataset, Ensemble
    from starlabel.model import precision

    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load {os.getloadavg()}")
    ens = Ensemble.load(a.model, device=a.device)
    ds = Dataset(a.dataset)
    x = ds.read(np.arange(min(a.n, len(ds))))
    x = x[np.isfinite(x).all(1)]
    kinds = ["fp32", "bf16"] + (["fp16"] if ens.device.type == "cuda" else [])
    ref = ens.predict_each(x).mean(0)
    for kind in kinds[1:]:
        ens.precision = kind
        d = np.abs(ens.predict_each(x).mean(0) - ref)
        ens.precision = "fp32"
        verdict = all(d[:, j].max() <= precision.tolerance(n) for j, n in enumerate(ens.labels.names))
        print(f"{kind}: max |Δ| " + ", ".join(f"{n} {d[:, j].max():.3g}" for j, n in enumerate(ens.labels.names))
              + "; p99 " + ", ".join(f"{n} {np.percentile(d[:, j], 99):.3g}" for j, n in enumerate(ens.labels.names))
              + f"  -> {'passes' if verdict else 'fails'} the 1 K / 0.001 dex gate")
    rates = {k: [] for k in kinds}
    for _ in range(a.rounds):
        for kind in kinds:
            ens.precision = kind
            t = time.perf_counter()
            ens.predict_each(x)
            rates[kind].append(len(x) * len(ens.networks) / (time.perf_counter() - t))
    ens.precision = "fp32"
    for kind, r in rates.items():
        print(f"{kind}: {np.median(r):.0f} spectra/s per model (median of {a.rounds}; rounds {[round(v) for v in r]})")
    print(f"{len(ens.networks)} networks, {len(x)} spectra, device {ens.device}; load after {os.getloadavg()}")


if __name__ == "__main__":
    main()
