"""Training throughput per member: M runs fused (`model/fused_train.py`) against one run alone.

    .venv/bin/python benchmarks/bench_fused_train.py [--members 8] [--n-train 2048] [--rounds 2]

Times one epoch of `train.fit_epoch` (one paper-preset network, torch's fused Adam, batch 64, the
preset's fresh noise) and one epoch of `fused_train.fused_epoch` (`--members` networks, each with its
own data order and noise) over the same `--n-train` random spectra, alternating, ROUNDS times, with
`starlabel.cores.configure_threads()` (or `--threads`). Prints spectra×epochs/s per member for both
and their ratio (> 1: fused is faster per member), with the machine's load before every timing.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from starlabel.cores import configure_threads
from starlabel.grid import Grid
from starlabel.model.config import preset
from starlabel.model.fused import FusedNetwork
from starlabel.model.fused_train import StackedAdam, fused_epoch
from starlabel.model.network import Network
from starlabel.model.run import NoiseAugment, fit_epoch


def load() -> str:
    return "load " + " ".join(f"{v:.2f}" for v in os.getloadavg()) + f" ({os.cpu_count()} CPUs)"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--members", type=int, default=8)
    ap.add_argument("--n-train", type=int, default=2048)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--preset", default="paper")
    args = ap.parse_args(argv)
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
    fused = FusedNetwork.from_networks([Network(cfg) for _ in range(args.members)])
    fopt = StackedAdam(fused.parameters(), torch.full((args.members,), tc.learning_rate))
    shuffles = [torch.Generator().manual_seed(k) for k in range(args.members)]
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; torch {torch.__version__}; preset {args.preset}, "
          f"{args.n_train} random spectra, batch {tc.batch_size}, noise x{tc.noise_augment:g}, {threads} threads")
    fit_epoch(net, opt, x[:256], y[:256], tc.batch_size, gen, noise=noise)  # warm-up
    fused_epoch(fused, fopt, x[:256], y[:256], tc.batch_size, shuffles, noise=noise)
    single, many = [], []
    for r in range(args.rounds):
        print(f"--- round {r + 1}: {load()}", flush=True)
        t = time.perf_counter()
        fit_epoch(net, opt, x, y, tc.batch_size, gen, noise=noise)
        single.append(args.n_train / (time.perf_counter() - t))
        print(f"one network   {single[-1]:7.0f} spectra×epochs/s; {load()}", flush=True)
        t = time.perf_counter()
        fused_epoch(fused, fopt, x, y, tc.batch_size, shuffles, noise=noise)
        many.append(args.members * args.n_train / (time.perf_counter() - t))
        print(f"fused x{args.members}      {many[-1] / args.members:7.0f} spectra×epochs/s per member "
              f"({many[-1]:.0f} in all); {load()}", flush=True)
    ratios = [m / args.members / s for m, s in zip(many, single)]
    print(f"fused per member / one network, each round: {' '.join(f'{v:.2f}' for v in ratios)}; best rounds "
          f"{max(many) / args.members / max(single):.2f}")
    print(f"after: {load()}")


if __name__ == "__main__":
    main()
