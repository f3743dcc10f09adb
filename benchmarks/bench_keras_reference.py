"""starlabel against the paper's own stack (Keras/TensorFlow, CPU), in one session (issue 3 §5).

    .venv/bin/python benchmarks/bench_keras_reference.py [--tf-python /work/tfvenv/bin/python]

Runs `../shared/reference/keras_paper_cnn_speed.py` (same paper-like CNN, 8 817 random spectra
of 8 669 pixels, one epoch at batch 64, inference at batch 32/256/2048) with the TensorFlow
environment's Python, then `bench_model.py` on the same machine, alternating ROUNDS times, and
prints the starlabel/Keras ratios (> 1 means starlabel is faster). Install the reference stack with
`python3 -m venv /work/tfvenv && /work/tfvenv/bin/pip install tensorflow-cpu`.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

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

    best_k_epoch, best_k_inf, best_s_epoch, best_s_inf = float("inf"), {}, float("inf"), {}
    best_s_noise = float("inf")
    for i in range(args.rounds):
        print(f"--- round {i + 1}: {bench_model.load()}", flush=True)
        e, inf = run_keras(args.tf_python, Path(args.reference))
        print(f"keras      train: {e:6.2f} s/epoch; infer " + ", ".join(f"batch {b}: {r:.0f}/s" for b, r in inf.items()),
              flush=True)
        best_k_epoch = min(best_k_epoch, e)
        best_k_inf = {b: max(r, best_k_inf.get(b, 0)) for b, r in inf.items()}
        res = bench_model.main(["--threads", str(args.threads), "--repeats", "1"]
                               + (["--compile"] if args.compile else []))
        best_s_epoch = min(best_s_epoch, res[("starlabel", "epoch")])
        best_s_noise = min(best_s_noise, res.get(("starlabel+noise", "epoch"), float("inf")))
        best_s_inf = {b: max(res[("starlabel", b)], best_s_inf.get(b, 0)) for b in best_k_inf}
    print("\n=== starlabel / Keras (best of rounds; > 1 = starlabel faster) ===")
    print(f"training epoch: keras {best_k_epoch:.2f} s, starlabel {best_s_epoch:.2f} s, "
          f"speed ratio {best_k_epoch / best_s_epoch:.2f} (the same work: no noise augmentation)")
    if best_s_noise < float("inf"):
        print(f"training epoch with the paper preset's fresh-noise augmentation: starlabel {best_s_noise:.2f} s, "
              f"speed ratio {best_k_epoch / best_s_noise:.2f}")
    for b in sorted(best_k_inf):
        print(f"inference batch {b:5d}: keras {best_k_inf[b]:7.0f}/s, starlabel {best_s_inf[b]:7.0f}/s, "
              f"ratio {best_s_inf[b] / best_k_inf[b]:.2f}")
    kb, sb = max(best_k_inf.values()), max(best_s_inf.values())
    print(f"best inference: keras {kb:.0f}/s, starlabel {sb:.0f}/s, ratio {sb / kb:.2f}")
    print(f"after: {bench_model.load()}")


if __name__ == "__main__":
    main()
