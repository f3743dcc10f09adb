"""The ensemble as one fused network (issue 15 §1) against one network at a time, in the same run.

    .venv/bin/python benchmarks/bench_fused.py [--members 8] [--threads 2] [--rounds 3] [--keras]

Times `Ensemble.predict_each` over `--n` random spectra of 8 669 pixels with `--members` networks
of the paper preset, through the per-network path (`fused=False`: batches of 32 shared out to the
worker threads, every network on a batch while it is in the cache) and through the fused path
(`fused=True`: one `FusedNetwork`, conv blocks on sub-batches of `--conv-batch`, dense layers on
batches of `--batch`), alternating the two ROUNDS times (this machine is shared; its speed varies
from minute to minute), and prints spectra/s per model for each round, the fused/per-network ratio
of every round and the ratio of the best rounds. `--keras` also runs the paper's Keras/TensorFlow
stack (`../shared/reference/keras_paper_cnn_speed.py`, with `--tf-python`) in every round.
The machine's load (`uptime`) is printed before and after every timing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from starlabel.labels import LabelSet
from starlabel.model.config import preset
from starlabel.model.ensemble import Ensemble
from starlabel.model.network import Network

HERE = Path(__file__).resolve().parent


def load() -> str:
    return "load " + " ".join(f"{v:.2f}" for v in os.getloadavg()) + f" ({os.cpu_count()} CPUs)"


def make_ensemble(m: int, preset_name: str) -> Ensemble:
    cfg = preset(preset_name).network
    torch.manual_seed(0)
    nets = []
    for _ in range(m):
        net = Network(cfg)
        for p in net.parameters():  # trained-like weights: small, non-zero biases
            torch.nn.init.normal_(p, std=0.05)
        nets.append(net.eval().requires_grad_(False))
    names = tuple(f"L{i}" for i in range(cfg.n_labels))
    labels = LabelSet.fit(names, np.random.default_rng(0).normal(size=(10, len(names))))
    return Ensemble(nets, labels, grid=None, manifest={}, device="cpu")


def rate(ens: Ensemble, x: np.ndarray, **kw) -> float:
    """Spectra per second per model: spectra × kept networks / s, as the single Keras model's spectra/s
    compare with it (best of 2 passes after a warm-up)."""
    ens.predict_each(x[:256], **kw)
    best = float("inf")
    for _ in range(2):
        t = time.perf_counter()
        ens.predict_each(x, **kw)
        best = min(best, time.perf_counter() - t)
    return len(x) * len(ens.networks) / best


def flops_per_spectrum(net: torch.nn.Module, n_pixels: int) -> float:
    """Floating-point operations of one forward pass (torch's own FLOP counter: 2 per multiply-add)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.ones(1, n_pixels))
    return float(counter.get_total_flops())


def sgemm_peak(threads: int, n: int = 2048) -> float:
    """This machine's fp32 matrix-multiply rate now, in FLOP/s (best of 5): the compute limit the
    issue measures against (≈ 310 GFLOP/s on 2026-11-26), taken in the same run as the rates."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--members", type=int, default=8)
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n", type=int, default=8192)
    ap.add_argument("--batch", type=int, default=128, help="fused path: spectra per dense-layer batch")
    ap.add_argument("--conv-batch", type=int, default=4, help="fused path: spectra per conv-block sub-batch")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--keras", action="store_true", help="also time the Keras reference in every round")
    ap.add_argument("--tf-python", default=os.environ.get("STARLABEL_TF_PYTHON", "/work/tfvenv/bin/python"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    ens = make_ensemble(args.members, args.preset)
    cfg = ens.networks[0].config
    x = (1 + 0.02 * torch.randn(args.n, cfg.n_pixels, generator=torch.Generator().manual_seed(1))).numpy()
    each = ens.predict_each(x[:300], fused=False)
    fused = ens.predict_each(x[:300], fused=True, batch=args.batch)
    scale = np.abs(each).max(axis=(0, 1))
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; torch {torch.__version__}; {args.members} "
          f"networks, preset {args.preset}, {args.threads} threads, {args.n} random spectra")
    print(f"fused vs per-network predictions: max |difference| / max |label| = "
          f"{(np.abs(fused - each).max(axis=(0, 1)) / scale).max():.1e}")
    from starlabel.model import fused as fused_mod

    flops = flops_per_spectrum(ens.networks[0], cfg.n_pixels)
    rows = {"per-network": [], "fused": [], "keras": [], "peak": []}
    for r in range(args.rounds):
        print(f"--- round {r + 1}: {load()}", flush=True)
        rows["peak"].append(sgemm_peak(args.threads))
        print(f"sgemm peak   {rows['peak'][-1] / 1e9:7.1f} GFLOP/s = {rows['peak'][-1] / flops:7.0f} spectra/s "
              f"per model at {flops / 1e6:.2f} MFLOP per spectrum; {load()}", flush=True)
        if args.keras:
            sys.path.insert(0, str(HERE))
            from bench_keras_reference import REFERENCE, run_keras

            _, inf = run_keras(args.tf_python, REFERENCE)
            rows["keras"].append(max(inf.values()))
            print(f"keras        {rows['keras'][-1]:7.0f} spectra/s per model (its best batch of "
                  + ", ".join(f"{b}: {v:.0f}" for b, v in inf.items()) + f"); {load()}", flush=True)
        rows["per-network"].append(rate(ens, x, fused=False, threads=args.threads))
        print(f"per-network  {rows['per-network'][-1]:7.0f} spectra/s per model; {load()}", flush=True)
        t = time.perf_counter()
        out = fused_mod.predict_fused(ens, torch.as_tensor(x[:256]), args.batch, args.threads, args.conv_batch)
        best = float("inf")
        for _ in range(2):
            t = time.perf_counter()
            out = fused_mod.predict_fused(ens, torch.as_tensor(x), args.batch, args.threads, args.conv_batch)
            best = min(best, time.perf_counter() - t)
        del out
        rows["fused"].append(args.n * args.members / best)
        print(f"fused        {rows['fused'][-1]:7.0f} spectra/s per model; {load()}", flush=True)
    f, p = np.array(rows["fused"]), np.array(rows["per-network"])
    print(f"\nfused / per-network, each round: {' '.join(f'{v:.2f}' for v in f / p)}; best rounds "
          f"{f.max() / p.max():.2f}")
    print(f"fused: best {f.max():.0f} spectra/s per model ({f.max() / args.members:.0f} spectra/s through all "
          f"{args.members} networks); vs the issue's 5 352/s/model baseline: {f.max() / 5352:.2f}")
    peak = np.array(rows["peak"])
    print(f"fused / compute limit (sgemm peak of the same round), each round: "
          f"{' '.join(f'{v:.2f}' for v in f * flops / peak)}; the issue's target is 0.5 (15 000/s at 310 GFLOP/s)")
    if rows["keras"]:
        k = np.array(rows["keras"])
        print(f"fused / keras (best batch), each round: {' '.join(f'{v:.2f}' for v in f / k)}; best rounds "
              f"{f.max() / k.max():.2f}; per-network / keras best rounds {p.max() / k.max():.2f}")
    print(f"after: {load()}")


if __name__ == "__main__":
    main()
