"""Speed of the CNN (issue 3 §5): training throughput and inference throughput, with peak memory.

    .venv/bin/python benchmarks/bench_model.py [--threads 2] [--compile] [--plain] [--preset paper]

Times the package's own training step (`starlabel.model.train.fit_epoch`: shuffled batches of 64,
Adam) over 8 817 random 8 669-pixel spectra, with the preset's fresh-noise augmentation and
without it, and inference per model at several batch sizes
through the path `starlabel predict` uses (`Ensemble.predict_each`: batches shared out to
`--threads` worker threads, each single-threaded; `--compile` adds the torch.compile'd first
block, whose one-off compile time is printed). `--plain` also times the textbook nn.Sequential
with the same weights (a plain batch loop with intra-op threads) for comparison.
The machine's load (uptime) is printed: on a shared machine the numbers are only indicative.
Recorded results: docs/benchmarks.md, "Speed of the stages".
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np
import torch

from starlabel.grid import Grid
from starlabel.labels import LabelSet
from starlabel.model.config import preset
from starlabel.model.ensemble import Ensemble
from starlabel.model.network import Network
from starlabel.model.run import NoiseAugment, fit_epoch


def load() -> str:
    return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg()) + f" on {os.cpu_count()} CPUs"


def time_epoch(model, fwd_model, x, y, batch, lr, repeats, noise=None):
    opt = torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    g = torch.Generator().manual_seed(0)
    fit_epoch(fwd_model, opt, x[: 8 * batch], y[: 8 * batch], batch, g, noise=noise)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fit_epoch(fwd_model, opt, x, y, batch, g, noise=noise)
        best = min(best, time.perf_counter() - t)
    return best


def time_inference(model, x, batch, repeats):
    model.eval()
    with torch.inference_mode():
        model(x[:batch])
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            for i in range(0, len(x), batch):
                model(x[i : i + batch])
            best = min(best, time.perf_counter() - t)
    model.train()
    return len(x) / best


def time_predict(net, x, batch, repeats, threads, compile):
    """Spectra per second through Ensemble.predict_each (one network), best of `repeats`."""
    names = tuple(f"L{i}" for i in range(net.config.n_labels))
    labels = LabelSet.fit(names, np.random.default_rng(0).normal(size=(10, len(names))))
    ens = Ensemble([net.eval().requires_grad_(False)], labels, grid=None, manifest={}, device="cpu")
    xn = x.numpy()
    t = time.perf_counter()
    ens.predict_each(xn[: 2 * batch], batch, threads, compile)  # warm-up (and compilation)
    warm = time.perf_counter() - t
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        ens.predict_each(xn, batch, threads, compile)
        best = min(best, time.perf_counter() - t)
    net.requires_grad_(True).train()
    return len(x) / best, warm


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--n-train", type=int, default=8817)
    ap.add_argument("--n-infer", type=int, default=8192)
    ap.add_argument("--batch-sizes", default="16,32,256,2048")
    ap.add_argument("--repeats", type=int, default=2, help="best of N timings")
    ap.add_argument("--plain", action="store_true", help="also time the plain nn.Sequential network")
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--compile", action="store_true", help="also time inference with the compiled first block")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    p = preset(args.preset)
    cfg = p.network
    torch.manual_seed(0)
    x = 1 + 0.02 * torch.randn(max(args.n_train, args.n_infer), cfg.n_pixels)
    y = torch.randn(len(x), cfg.n_labels)
    net = Network(cfg)
    models = [("starlabel", net, net)]
    if args.plain:
        models.append(("plain", net, net.plain()))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, preset {args.preset}: {cfg}")
    print(f"before: {load()}")
    results = {}
    grid = Grid.default()
    slices = list(grid.slices().values()) if grid.n_pixels == cfg.n_pixels else [slice(0, cfg.n_pixels)]
    factor = p.train.noise_augment
    noise = NoiseAugment(x[: args.n_train].numpy(), slices, factor, torch.device("cpu")) if factor > 0 else None
    for name, params, fwd in models:
        if not args.skip_train:
            for aug in (noise, None) if noise is not None and name == "starlabel" else (None,):
                s = time_epoch(params, fwd, x[: args.n_train], y[: args.n_train], p.train.batch_size,
                               p.train.learning_rate, args.repeats, aug)
                results[(name + "+noise" * (aug is not None), "epoch")] = s
                what = f"fresh noise ×{factor:g} (the preset's)" if aug is not None else "no noise augmentation"
                print(f"{name:10s} train: {s:6.2f} s/epoch over {args.n_train} spectra (batch {p.train.batch_size}, "
                      f"{what}) = {args.n_train / s:7.0f} spectra×epochs/s")
        for bs in [int(b) for b in args.batch_sizes.split(",")]:
            if name == "plain":
                r = time_inference(fwd, x[: args.n_infer], bs, args.repeats)
                results[(name, bs)] = r
                print(f"{name:10s} infer: batch {bs:5d}: {r:7.0f} spectra/s per model (intra-op threads)")
                continue
            for comp in (False, True) if args.compile else (False,):
                r, warm = time_predict(fwd, x[: args.n_infer], bs, args.repeats, args.threads, comp)
                results[(name + "+compile" * comp, bs)] = r
                print(f"{name + '+compile' * comp:18s} infer: batch {bs:5d}: {r:7.0f} spectra/s per model "
                      f"({args.threads} worker threads" + (f"; warm-up incl. compile {warm:.1f} s)" if comp else ")"))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    data_mb = x.numel() * 4 / 2**20
    print(f"peak RSS {rss:.0f} MiB (of which {data_mb:.0f} MiB are the random input spectra)")
    print(f"after: {load()}")
    return results


if __name__ == "__main__":
    main()
