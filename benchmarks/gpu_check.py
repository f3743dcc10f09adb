"""GPU check (issue 15 §4), run by `gpu_check.sh`: one paper-preset training run and inference on CUDA.

Writes a SETS.h5 of `--n` synthetic spectra on the default 8 669-pixel grid (absorption lines whose
depths follow five labels, 1 % noise; a timing check, not the mock survey: its accuracy means
nothing), trains ONE paper-preset run with `starlabel.model.train.train(device="cuda")` and times
it, then times `Ensemble.predict_each` on the GPU over `--n-infer` spectra (fused and per-network,
the bundle's network repeated `--members` times) and checks the GPU labels against the CPU's.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from astropy.table import Table

from starlabel.grid import Grid
from starlabel.io.dataset import write_dataset
from starlabel.model.ensemble import Ensemble
from starlabel.stages.train import train

LABELS = ("TEFF", "LOGG", "MG_FE", "AL_FE", "FE_H")


def synthetic_sets(path: Path, n: int, seed: int = 0) -> Path:
    grid = Grid.default()
    rng = np.random.default_rng(seed)
    lab = np.column_stack([rng.uniform(4000, 7000, n), rng.uniform(0.5, 5, n), rng.uniform(-0.2, 0.5, n),
                           rng.uniform(-0.3, 0.6, n), rng.uniform(-1.5, 0.5, n)])
    wave = grid.wavelength
    centres = rng.choice(wave[5:-5], 120, replace=False)
    which = rng.integers(0, 5, len(centres))
    scale = (lab - lab.mean(0)) / lab.std(0)
    flux = np.ones((n, len(wave)), np.float32)
    for c, j in zip(centres, which):
        depth = np.clip(0.3 + 0.1 * scale[:, j], 0.02, 0.9)[:, None]
        flux -= (depth * np.exp(-0.5 * ((wave - c) / 0.15) ** 2)).astype(np.float32)
    flux += rng.normal(0, 0.01, flux.shape).astype(np.float32)
    cat = Table({"CNAME": [f"GPU{i:06d}" for i in range(n)], **{k: lab[:, j] for j, k in enumerate(LABELS)},
                 "SET": np.full(n, "train")})
    write_dataset(path, grid, flux, np.zeros(flux.shape, "u1"), cat)
    return path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=14696, help="training spectra (the paper's 8 817 + 5 879)")
    ap.add_argument("--max-epochs", type=int, help="cap the paper preset's epochs (default: early stopping)")
    ap.add_argument("--n-infer", type=int, default=100_000)
    ap.add_argument("--members", type=int, default=8)
    ap.add_argument("--out", help="work directory (default: a temporary one)")
    ap.add_argument("--device", default="cuda", help="default cuda (cpu: a smoke test of this script)")
    args = ap.parse_args(argv)
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; torch {torch.__version__}; "
          f"{torch.cuda.get_device_name(dev) if cuda else dev}; load {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.out or tmp)
        work.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        sets = synthetic_sets(work / "SETS.h5", args.n)
        print(f"wrote {args.n} synthetic spectra in {time.perf_counter() - t:.1f} s")
        over = {"max_epochs": args.max_epochs} if args.max_epochs else {}
        t = time.perf_counter()
        model = train(sets, work / "model", labels=LABELS, runs=1, keep=1, preset="paper", device=dev,
                      progress=False, **over)
        wall = time.perf_counter() - t
        ens = Ensemble.load(model, device=dev)
        run = ens.manifest["runs"][0]
        print(f"trained one paper-preset run on {dev}: {run['epochs']} epochs in {wall:.1f} s "
              f"({wall / run['epochs']:.2f} s/epoch incl. test passes, refit and checkpoints); "
              f"best test loss {run['test_loss']:.4f}")
        ens.networks = ens.networks * args.members  # the same network M times: an M-member ensemble to time
        x = (1 + 0.02 * torch.randn(args.n_infer, ens.networks[0].config.n_pixels)).numpy()
        for fused in (True, False):
            ens.predict_each(x[:4096], fused=fused)
            sync()
            t = time.perf_counter()
            each = ens.predict_each(x, fused=fused)
            sync()
            dt = time.perf_counter() - t
            print(f"inference on {dev}, {'fused' if fused else 'per-network'}: {args.n_infer * args.members / dt:.0f} "
                  f"spectra/s per model ({args.members} networks, {args.n_infer} spectra, incl. host-device copies)")
        from starlabel.model import precision

        for mixed in ("bf16", "fp16"):  # issue 15 §4: mixed precision only where labels stay within 1 K / 0.001 dex
            err = precision.label_error(ens, x[:2000], mixed)
            ens.precision = mixed
            ens.predict_each(x[:4096])
            sync()
            t = time.perf_counter()
            ens.predict_each(x)
            sync()
            dt = time.perf_counter() - t
            ens.precision = "fp32"
            print(f"{mixed} (fused): {args.n_infer * args.members / dt:.0f} spectra/s per model; max |Δ| vs fp32: "
                  + ", ".join(f"{k} {e:.2g}" for k, e in err.items())
                  + ("  (passes the gate)" if all(e <= precision.tolerance(k) for k, e in err.items()) else
                     "  (fails the gate: predict would keep fp32)"))
        cpu = Ensemble.load(model, device="cpu")
        ref = cpu.predict_each(x[:2000])[0]
        diff = np.abs(each[0, :2000] - ref).max(0)
        print("max |GPU - CPU| label difference: " + ", ".join(f"{k} {d:.2g}" for k, d in zip(LABELS, diff)))


if __name__ == "__main__":
    main()
