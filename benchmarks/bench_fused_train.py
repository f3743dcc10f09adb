"""Training throughput per member: M runs fused (`model/fused_train.py`) against one run alone.

    .venv/bin/python benchmarks/bench_fused_train.py [--members 2,4,8] [--n-train 512] [--rounds 2]
        [--batched] [--keras [--tf-python PYTHON]] [--threads N]

Times one epoch of `run.fit_epoch` (one paper-preset network, torch's fused Adam, batch 64, the
preset's fresh noise, torch's intra-op threads) and one epoch of `fused_train.fused_epoch` for each
M of `--members` (each member with its own data order, noise and dropout generator: on a CPU the
members side by side on threads) over the same `--n-train` random spectra, alternating, ROUNDS
times, with `starlabel.cores.configure_threads()` (or `--threads`); with more than one thread one
network is also timed single-threaded. `--batched` also times the
batched fused network (the GPU path, which CPU training also used until 2026-11-30); `--keras` times the
paper's Keras/TensorFlow stack in each round (`bench_keras_reference.run_keras`: one epoch over 8 817
spectra, plus its inference timings, which are not used here). Prints spectra×epochs/s per member
(each member's progress: n-train / the time of the fused epoch) and its ratio to one network alone
(> 1: M runs fused take less time than ONE run alone; M × the ratio is the speed-up over M runs one
after the other) and to Keras, with the machine's load before every timing; the machine is shared,
so only ratios within a round mean much.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from starlabel.cores import configure_threads
from starlabel.grid import Grid
from starlabel.model.config import preset
from starlabel.model.fused import FusedNetwork
from starlabel.model.fused_train import StackedAdam, fused_epoch
from starlabel.model.network import Network
from starlabel.model.run import NoiseAugment, fit_epoch

from bench_fused import load  # the sibling script's `uptime`-style load line

HERE = Path(__file__).resolve().parent


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--members", default="2,4,8", help="comma-separated member counts")
    ap.add_argument("--n-train", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--batched", action="store_true", help="also time the batched fused network (GPU path)")
    ap.add_argument("--keras", action="store_true", help="also time one Keras/TensorFlow epoch per round")
    ap.add_argument("--tf-python", default=os.environ.get("STARLABEL_TF_PYTHON", "/work/tfvenv/bin/python"))
    args = ap.parse_args(argv)
    members = [int(v) for v in args.members.split(",")]
    threads = configure_threads(args.threads)
    p = preset(args.preset)
    cfg, tc = p.network, p.train
    gen = torch.Generator().manual_seed(0)
    x = 1 + 0.02 * torch.randn(args.n_train, cfg.n_pixels, generator=gen)
    y = torch.randn(args.n_train, cfg.n_labels, generator=gen)
    grid = Grid.default()
    slices = list(grid.slices().values()) if grid.n_pixels == cfg.n_pixels else [slice(0, cfg.n_pixels)]
    noise = NoiseAugment(x.numpy(), slices, tc.noise_augment, torch.device("cpu")) if tc.noise_augment else None
    net = Network(cfg)
    opt = torch.optim.Adam(net.parameters(), lr=tc.learning_rate, fused=True)
    ways = ["side by side"] + (["batched"] if args.batched else [])
    fused, fopt, shuffles, drops = {}, {}, {}, {}
    for m in members:
        fused[m] = FusedNetwork.from_networks([Network(cfg) for _ in range(m)])
        fopt[m] = {w: StackedAdam(fused[m].parameters(), torch.full((m,), tc.learning_rate)) for w in ways}
        shuffles[m] = [torch.Generator().manual_seed(k) for k in range(m)]
        drops[m] = [torch.Generator().manual_seed(100 + k) for k in range(m)]
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; torch {torch.__version__}; preset {args.preset}, "
          f"{args.n_train} random spectra, batch {tc.batch_size}, noise x{tc.noise_augment:g}, {threads} threads; "
          f"{load()}", flush=True)
    fit_epoch(net, opt, x[:128], y[:128], tc.batch_size, gen, noise=noise)  # warm-up
    for m in members:
        for w in ways:
            fused_epoch(fused[m], fopt[m][w], x[:128], y[:128], tc.batch_size, shuffles[m], noise=noise,
                        dropout=drops[m], batched=w == "batched")
    single, single1, many, keras = [], [], {(m, w): [] for m in members for w in ways}, []
    if args.keras:
        sys.path.insert(0, str(HERE))
        from bench_keras_reference import REFERENCE, run_keras
    for r in range(args.rounds):
        print(f"--- round {r + 1}: {load()}", flush=True)
        if args.keras:
            e, _ = run_keras(args.tf_python, REFERENCE)
            keras.append(8817 / e)
            print(f"Keras/TF      {keras[-1]:7.1f} spectra×epochs/s (8 817 spectra in {e:.1f} s); {load()}", flush=True)
        t = time.perf_counter()
        fit_epoch(net, opt, x, y, tc.batch_size, gen, noise=noise)
        single.append(args.n_train / (time.perf_counter() - t))
        print(f"one network   {single[-1]:7.1f} spectra×epochs/s; {load()}", flush=True)
        if threads > 1:  # the same with one thread: what `--threads 1` gives a separate run
            torch.set_num_threads(1)
            t = time.perf_counter()
            fit_epoch(net, opt, x, y, tc.batch_size, gen, noise=noise)
            single1.append(args.n_train / (time.perf_counter() - t))
            torch.set_num_threads(threads)
            print(f"one network, 1 thread {single1[-1]:7.1f} spectra×epochs/s; {load()}", flush=True)
        for m in members:
            for w in ways:
                t = time.perf_counter()
                fused_epoch(fused[m], fopt[m][w], x, y, tc.batch_size, shuffles[m], noise=noise, dropout=drops[m],
                            batched=w == "batched")
                rate = args.n_train / (time.perf_counter() - t)  # per member: m × n_train / time / m
                many[m, w].append(rate)
                print(f"fused x{m} {w:12s} {rate:7.1f} spectra×epochs/s per member ({m * rate:.0f} in all); "
                      f"/ one network {rate / single[-1]:.2f}; {load()}", flush=True)
    print("\n=== per member / one network, each round (median); M × this = speed-up over M runs one after "
          "the other (with 1 thread each: / one network at 1 thread) ===")
    for (m, w), v in many.items():
        ratios = [a / s for a, s in zip(v, single)]
        line = f"fused x{m} {w:12s} " + " ".join(f"{q:.2f}" for q in ratios) + f"  ({np.median(ratios):.2f})"
        if single1:
            r1 = [a / s for a, s in zip(v, single1)]
            line += "; / 1-thread network " + " ".join(f"{q:.2f}" for q in r1) + f" ({np.median(r1):.2f})"
        if keras:
            kr = [a / k for a, k in zip(v, keras)]
            line += "; / Keras " + " ".join(f"{q:.2f}" for q in kr) + f" ({np.median(kr):.2f})"
        print(line)
    if keras:
        kr = [s / k for s, k in zip(single, keras)]
        print("one network / Keras " + " ".join(f"{q:.2f}" for q in kr) + f" ({np.median(kr):.2f})")
    print(f"after: {load()}")


if __name__ == "__main__":
    main()
