"""Wall time of the ensemble's R runs trained fused (`train_fused`) against ONE run (`train_run`).

    .venv/bin/python benchmarks/bench_fused_ensemble.py [--runs 10] [--epochs 3] [--n-train 256]
        [--n-test 128] [--rounds 2] [--threads N]

The whole training loop, with everything an epoch does besides the mini-batches (the test-set
pass, the plateau schedule, the per-epoch checkpoints in a temporary directory): the paper preset
(its fresh noise, its dropout; the output-layer refit switched off, as it runs once per run after
training) on random spectra, every run stopped after `--epochs` epochs (`patience` larger than
that, so no run stops early: the case of runs that stop together). Alternates, ROUNDS times: R runs
fused, one run with the same threads (the default: `starlabel.cores.configure_threads()`), one run
with one thread. Prints the wall times and the ratio R-runs-fused / one run (the issue's target for
the paper's 10 runs: ≤ 2), with the machine's load.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import torch

from starlabel.cores import configure_threads
from starlabel.grid import Grid
from starlabel.model.config import preset
from starlabel.model.fused_train import train_fused
from starlabel.model.run import NoiseAugment, TrainingData, train_run

from bench_fused import load  # the sibling script's `uptime`-style load line


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--n-train", type=int, default=256)
    ap.add_argument("--n-test", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int)
    args = ap.parse_args(argv)
    threads = configure_threads(args.threads)
    p = preset("paper")
    net_cfg = p.network
    cfg = dataclasses.replace(p.train, max_epochs=args.epochs, patience=args.epochs + 1, refit_output=False)
    gen = torch.Generator().manual_seed(0)
    n = args.n_train + args.n_test
    x = 1 + 0.02 * torch.randn(n, net_cfg.n_pixels, generator=gen)
    y = torch.randn(n, net_cfg.n_labels, generator=gen)
    grid = Grid.default()
    slices = list(grid.slices().values()) if grid.n_pixels == net_cfg.n_pixels else [slice(0, net_cfg.n_pixels)]
    tr, te = slice(0, args.n_train), slice(args.n_train, n)
    noise = NoiseAugment(x[tr].numpy(), slices, cfg.noise_augment, torch.device("cpu")) if cfg.noise_augment else None
    data = TrainingData(x[tr], y[tr], x[te], y[te], None, None, noise)
    cpu = torch.device("cpu")
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; torch {torch.__version__}; paper preset, "
          f"{args.runs} runs x {args.epochs} epochs, {args.n_train} train / {args.n_test} test random spectra, "
          f"{threads} threads; {load()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:  # warm-up: torch's first calls, thread pools
        small = TrainingData(x[te], y[te], x[te], y[te], None, None, None)
        train_fused([(0, 1), (1, 2)], net_cfg, dataclasses.replace(cfg, max_epochs=1), small, Path(tmp), cpu,
                    progress=False)
        train_run(0, 1, net_cfg, dataclasses.replace(cfg, max_epochs=1), small, None, cpu, progress=False)
    fused_t, one_t, one1_t = [], [], []
    for r in range(args.rounds):
        print(f"--- round {r + 1}: {load()}", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            train_fused([(i, 100 + i) for i in range(args.runs)], net_cfg, cfg, data, Path(tmp) / "f", cpu,
                        progress=False)
            fused_t.append(time.perf_counter() - t)
            print(f"{args.runs} runs fused        {fused_t[-1]:7.1f} s; {load()}", flush=True)
            t = time.perf_counter()
            train_run(0, 100, net_cfg, cfg, data, Path(tmp) / "one.safetensors", cpu, progress=False)
            one_t.append(time.perf_counter() - t)
            print(f"one run                {one_t[-1]:7.1f} s; {load()}", flush=True)
            if threads > 1:
                torch.set_num_threads(1)
                t = time.perf_counter()
                train_run(0, 100, net_cfg, cfg, data, Path(tmp) / "one1.safetensors", cpu, progress=False)
                one1_t.append(time.perf_counter() - t)
                torch.set_num_threads(threads)
                print(f"one run, 1 thread      {one1_t[-1]:7.1f} s; {load()}", flush=True)
    print(f"\n{args.runs} runs fused / one run, each round: " + " ".join(f"{f / o:.2f}" for f, o in zip(fused_t, one_t)))
    if one1_t:
        print(f"{args.runs} runs fused / one run with 1 thread: " + " ".join(f"{f / o:.2f}" for f, o in zip(fused_t, one1_t)))
    print(f"after: {load()}")


if __name__ == "__main__":
    main()
