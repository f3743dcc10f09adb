"""starlabel against the paper's own stack (Keras/TensorFlow, CPU), in one session (issue 3 §5).

    .venv/bin/python benchmarks/bench_keras_reference.py [--tf-python /work/tfvenv/bin/python]

Runs `../shared/reference/keras_paper_cnn_speed.py` (same paper-like CNN, 8 817 random spectra
of 8 669 pixels, one epoch at batch 64, inference at batch 32/256/2048) with the TensorFlow
environment's Python, then `bench_model.py` on the same machine, alternating ROUNDS times, and
prints every round and the starlabel/Keras ratios of the best and of the median round (> 1 means
starlabel is faster; this machine's speed, Keras's especially, varies from run to run). Install the reference stack with
`python3 -m venv /work/tfvenv && /work/tfvenv/bin/pip install tensorflow-cpu`.
Recorded results: docs/benchmarks.md, "Against the paper's Keras stack".
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REFERENCE = HERE.parent.parent / "shared" / "reference" / "keras_paper_cnn_speed.py"


def run_keras(python: str, script: Path) -> tuple[float, dict[int, float]]:
    out = subprocess.run([python, str(script)], capture_output=True, text=True, check=True).stdout
    epoch = float(re.search(r"epoch\(8817, bs64\) ([\d.]+) s", out).group(1))
    infer = {int(b): float(r) for b, r in re.findall(r"predict batch (\d+): (\d+) spectra/s", out)}
    return epoch, infer


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tf-python", default=os.environ.get("STARLABEL_TF_PYTHON", "/work/tfvenv/bin/python"))
    ap.add_argument("--reference", default=str(REFERENCE))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--compile", action="store_true", help="starlabel inference with the compiled first block")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(HERE))
    import bench_model

    rounds = {k: [] for k in ("keras epoch", "keras infer", "starlabel epoch", "starlabel epoch+noise",
                              "starlabel infer", "starlabel infer+compile")}
    for i in range(args.rounds):
        print(f"--- round {i + 1}: {bench_model.load()}", flush=True)
        e, inf = run_keras(args.tf_python, Path(args.reference))
        print(f"keras      train: {e:6.2f} s/epoch; infer " + ", ".join(f"batch {b}: {r:.0f}/s" for b, r in inf.items()),
              flush=True)
        res = bench_model.main(["--threads", str(args.threads), "--repeats", "1"]
                               + (["--compile"] if args.compile else []))
        rounds["keras epoch"].append(e)
        rounds["keras infer"].append(max(inf.values()))
        rounds["starlabel epoch"].append(res[("starlabel", "epoch")])
        rounds["starlabel epoch+noise"].append(res.get(("starlabel+noise", "epoch"), np.nan))
        rounds["starlabel infer"].append(max(v for (n, b), v in res.items() if n == "starlabel" and b != "epoch"))
        rounds["starlabel infer+compile"].append(
            max((v for (n, b), v in res.items() if n == "starlabel+compile"), default=np.nan))
    print("\n=== starlabel / Keras over the rounds (> 1 = starlabel faster; each side's best batch size) ===")
    for k, v in rounds.items():
        print(f"{k:24s} " + " ".join(f"{x:8.2f}" if "epoch" in k else f"{x:8.0f}" for x in v))
    for stat, f_epoch, f_inf in (("best", np.nanmin, np.nanmax), ("median", np.nanmedian, np.nanmedian)):
        ke, ki = f_epoch(rounds["keras epoch"]), f_inf(rounds["keras infer"])
        print(f"{stat:6s}: training {ke / f_epoch(rounds['starlabel epoch']):.2f} (the same work), "
              f"{ke / f_epoch(rounds['starlabel epoch+noise']):.2f} (with the presets' noise augmentation); "
              f"inference {f_inf(rounds['starlabel infer']) / ki:.2f} plain, "
              f"{f_inf(rounds['starlabel infer+compile']) / ki:.2f} compiled")
    print(f"after: {bench_model.load()}")


if __name__ == "__main__":
    main()
